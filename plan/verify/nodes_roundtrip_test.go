package verify_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/server/auth"
	srvconfig "github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/pgstore"
)

// nodesRoundTripHCL is baseHCL's domain served by two servers on one
// PostgreSQL store.
const nodesRoundTripHCL = `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  local {}
  tls { self_signed = true }
  store { postgres = env("PG_URL") }
}
server "mx2" {
  hostname = "mx2.example.org"
  ipv4     = "203.0.113.20"
  local {}
  tls { self_signed = true }
  store { postgres = env("PG_URL") }
}
domain "example.org" {
  dns     = provider.zonefile.z
  servers = [server.mx1, server.mx2]
  dkim    { selector = "mx1" }
  spf     { all = "-all" }
  dmarc   { policy = "reject" }
}
user "alice@example.org" { password_hash = "` + hash + `" }
`

// rtNode is one `mailctl serve` node (daemon.Run in this process).
type rtNode struct {
	dataDir string
	status  *daemon.Status
	stop    func()
}

// startRTNode starts node hostname on the store of urlFile, with DNS from
// knot; keysFrom, when set, is the data directory of a node whose DKIM
// keys it gets first (what apply does for the second server of a domain).
func startRTNode(t *testing.T, hostname, urlFile, dns, keysFrom string) *rtNode {
	t.Helper()
	n := &rtNode{dataDir: t.TempDir()}
	if keysFrom != "" {
		if err := os.CopyFS(filepath.Join(n.dataDir, "dkim"), os.DirFS(filepath.Join(keysFrom, "dkim"))); err != nil {
			t.Fatalf("copy the DKIM keys: %v", err)
		}
	}
	pw, err := auth.HashPassword("x", auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &srvconfig.Config{
		FormatVersion: srvconfig.FormatVersion,
		Hostname:      hostname,
		DataDir:       n.dataDir,
		Listen: srvconfig.Listen{SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0",
			IMAP: "127.0.0.1:0", IMAPS: "127.0.0.1:0", HTTPS: "127.0.0.1:0", HTTP: "127.0.0.1:0"},
		TLS:      srvconfig.TLS{Mode: "self-signed"},
		Domains:  []srvconfig.Domain{{Name: "example.org", DKIMSelectors: []string{"mx1"}}},
		Users:    []srvconfig.User{{Address: "alice@example.org", PasswordHash: pw}},
		Outbound: &srvconfig.Outbound{DNSServers: []string{dns}},
		Inbound:  &srvconfig.Inbound{DNSBLZones: []string{}},
		Store:    &srvconfig.Store{PostgresURLFile: urlFile, Node: strings.Split(hostname, ".")[0]},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "server.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- daemon.Run(ctx, daemon.Options{ConfigPath: path, Logger: slog.New(slog.DiscardHandler)})
	}()
	var once bool
	n.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("daemon.Run of %s: %v", hostname, err)
		}
	}
	t.Cleanup(n.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := daemon.QueryStatus(ctx, filepath.Join(n.dataDir, "control.sock"))
		if err == nil {
			n.status = st
			return n
		}
		select {
		case err := <-stopped:
			t.Fatalf("daemon %s stopped: %v", hostname, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon %s does not answer: %v", hostname, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addresses maps the node's host name and ports to its listeners.
func (n *rtNode) addresses(m map[string]string, hostname string) {
	ls := n.status.Listeners
	m[hostname+":465"], m[hostname+":587"] = ls["submissions"], ls["submission"]
	m[hostname+":993"], m[hostname+":143"] = ls["imaps"], ls["imap"]
}

// TestVerifyNodeRoundTrips (issue 20): for a domain of two servers on one
// PostgreSQL store, verify sends a probe through each server and reads it
// back through the same server: with the first server's DKIM keys copied
// to the second (as apply does), both pass SPF, DKIM and DMARC; a second
// server signing with keys of its own fails its round trip, named, with
// dkim=fail, while the first server's still passes.
func TestVerifyNodeRoundTrips(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Knot and PostgreSQL from Debian: Linux only")
	}
	prev := config.PostgresStoreAvailable
	config.PostgresStoreAvailable = func() bool { return true }
	t.Cleanup(func() { config.PostgresStoreAvailable = prev })

	knot := testenv.StartKnot(t, "example.org")
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	urlFile := filepath.Join(t.TempDir(), "postgres-url")
	if err := os.WriteFile(urlFile, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(nodesRoundTripHCL)},
		config.LoadOptions{Getenv: func(n string) string { return map[string]string{"PG_URL": url}[n] }})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}

	mx1 := startRTNode(t, "mx1.example.org", urlFile, knot.Addr, "")
	var keys []desired.DKIMKey
	for _, k := range mx1.status.DKIM {
		keys = append(keys, desired.DKIMKey{Domain: k.Domain, Selector: k.Selector, Record: k.Record})
	}
	l := &rtLab{knot: knot, records: desired.Records(cfg, keys)}
	l.publish(t)

	run := func(t *testing.T, mx2 *rtNode) verify.Report {
		t.Helper()
		pool := x509.NewCertPool()
		for _, n := range []*rtNode{mx1, mx2} {
			pem, err := os.ReadFile(filepath.Join(n.dataDir, "tls", "self-signed.crt"))
			if err != nil || !pool.AppendCertsFromPEM(pem) {
				t.Fatalf("self-signed.crt of %s: %v", n.dataDir, err)
			}
		}
		opts := verify.Options{
			Resolver:  &verify.DNSClient{Servers: []string{knot.Addr}},
			Addresses: map[string]string{},
			Roots:     pool,
			Timeout:   10 * time.Second,
			HeloName:  "verify.example.net",
			Only:      []string{verify.RoundTripCheck},
		}
		mx1.addresses(opts.Addresses, "mx1.example.org")
		mx2.addresses(opts.Addresses, "mx2.example.org")
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		return verify.RunRoundTrip(ctx, verify.Inputs{Config: cfg}, opts,
			&verify.Probe{User: "alice@example.org", Password: "x", Wait: 20 * time.Second, Poll: 100 * time.Millisecond})
	}

	// A second server that made keys of its own signs with a key nobody
	// published.
	own := startRTNode(t, "mx2.example.org", urlFile, knot.Addr, "")
	rep := run(t, own)
	if len(rep.Results) != 2 {
		t.Fatalf("results = %+v, want a round trip per server", rep.Results)
	}
	expect{verify.RoundTripCheck, "alice@example.org", verify.Pass, "spf=pass dkim=pass dmarc=pass", ""}.assert(t, rep)
	expect{verify.RoundTripCheck, "alice@example.org via server.mx2", verify.Fail, "dkim=fail", "published DKIM key differs"}.assert(t, rep)
	for _, r := range rep.Results {
		if r.Target == "alice@example.org via server.mx2" && (!strings.Contains(r.Detail, "(server.mx2)") || !strings.Contains(r.Detail, "via mx2.example.org:465")) {
			t.Errorf("the round trip through mx2 does not name it: %q", r.Detail)
		}
	}
	own.stop()

	// With the first server's keys, as apply copies them.
	copied := startRTNode(t, "mx2.example.org", urlFile, knot.Addr, mx1.dataDir)
	rep = run(t, copied)
	expect{verify.RoundTripCheck, "alice@example.org", verify.Pass, "spf=pass dkim=pass dmarc=pass", ""}.assert(t, rep)
	expect{verify.RoundTripCheck, "alice@example.org via server.mx2", verify.Pass, "spf=pass dkim=pass dmarc=pass", ""}.assert(t, rep)
}
