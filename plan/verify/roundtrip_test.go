package verify_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/server/auth"
	srvconfig "github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/dkim"
)

// rtLab is a real `mailctl serve` (daemon.Run in this process) for
// example.org whose DNS servers are a Knot serving the domain's records.
type rtLab struct {
	knot     *testenv.Knot
	status   *daemon.Status
	dataDir  string
	keys     []desired.DKIMKey
	records  []desired.RRSet
	opts     verify.Options
	stopped  chan error
	shutdown context.CancelFunc
}

// update replaces the RRsets of rrs (by name and type) in the lab's Knot.
func (l *rtLab) update(t *testing.T, rrs ...mdns.RR) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetUpdate("example.org.")
	var del []mdns.RR
	for _, rr := range rrs {
		h := rr.Header()
		del = append(del, &mdns.ANY{Hdr: mdns.RR_Header{Name: h.Name, Rrtype: h.Rrtype, Class: mdns.ClassANY}})
	}
	m.RemoveRRset(del)
	m.Insert(rrs)
	m.SetTsig(l.knot.TSIGName, mdns.Fqdn(l.knot.TSIGAlg), 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{l.knot.TSIGName: l.knot.TSIGSecret}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, l.knot.Addr)
	if err != nil || r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("update example.org: %v %v", err, r)
	}
}

// remove deletes the RRsets of name and types from the lab's Knot.
func (l *rtLab) remove(t *testing.T, name string, types ...uint16) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetUpdate("example.org.")
	var del []mdns.RR
	for _, typ := range types {
		del = append(del, &mdns.ANY{Hdr: mdns.RR_Header{Name: mdns.Fqdn(name), Rrtype: typ, Class: mdns.ClassANY}})
	}
	m.RemoveRRset(del)
	m.SetTsig(l.knot.TSIGName, mdns.Fqdn(l.knot.TSIGAlg), 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{l.knot.TSIGName: l.knot.TSIGSecret}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, l.knot.Addr)
	if err != nil || r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("update example.org: %v %v", err, r)
	}
}

// publish puts the planned records of example.org (with the server's DKIM
// keys) into the Knot.
func (l *rtLab) publish(t *testing.T) {
	t.Helper()
	var rrs []mdns.RR
	for _, s := range l.records {
		if zoneOf(s.Name) != "example.org" {
			continue
		}
		for _, v := range s.Values {
			rrs = append(rrs, newRR(t, s.Name, s.Type, v))
		}
	}
	l.update(t, rrs...)
}

// startRoundTripLab starts Knot, then the daemon using it, then publishes
// the records of baseHCL with the daemon's DKIM keys.
func startRoundTripLab(t *testing.T) *rtLab {
	t.Helper()
	l := &rtLab{knot: testenv.StartKnot(t, "example.org"), dataDir: t.TempDir()}
	pw, err := auth.HashPassword("x", auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &srvconfig.Config{
		FormatVersion: srvconfig.FormatVersion,
		Hostname:      host,
		DataDir:       l.dataDir,
		Listen: srvconfig.Listen{SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0",
			IMAP: "127.0.0.1:0", IMAPS: "127.0.0.1:0", HTTPS: "127.0.0.1:0", HTTP: "127.0.0.1:0"},
		TLS:     srvconfig.TLS{Mode: "self-signed"},
		Domains: []srvconfig.Domain{{Name: "example.org", DKIMSelectors: []string{"mx1"}}},
		Users: []srvconfig.User{
			{Address: "alice@example.org", PasswordHash: pw, Aliases: []string{"postmaster@example.org"}},
			{Address: "bob@example.org", PasswordHash: pw},
		},
		Outbound: &srvconfig.Outbound{DNSServers: []string{l.knot.Addr}},
		Inbound:  &srvconfig.Inbound{DNSBLZones: []string{}},
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
	l.shutdown, l.stopped = cancel, make(chan error, 1)
	go func() {
		l.stopped <- daemon.Run(ctx, daemon.Options{ConfigPath: path, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-l.stopped; err != nil {
			t.Errorf("daemon.Run: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := daemon.QueryStatus(ctx, filepath.Join(l.dataDir, "control.sock"))
		if err == nil {
			l.status = st
			break
		}
		select {
		case err := <-l.stopped:
			t.Fatalf("daemon stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range l.status.DKIM {
		l.keys = append(l.keys, desired.DKIMKey{Domain: k.Domain, Selector: k.Selector, Record: k.Record})
	}
	pcfg := loadConfig(t, baseHCL)
	l.records = desired.Records(pcfg, l.keys)
	l.publish(t)

	pem, err := os.ReadFile(filepath.Join(l.dataDir, "tls", "self-signed.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in self-signed.crt")
	}
	ls := l.status.Listeners
	l.opts = verify.Options{
		Resolver: &verify.DNSClient{Servers: []string{l.knot.Addr}},
		Addresses: map[string]string{
			host + ":465": ls["submissions"],
			host + ":587": ls["submission"],
			host + ":993": ls["imaps"],
			host + ":143": ls["imap"],
		},
		Roots:    pool,
		Timeout:  10 * time.Second,
		HeloName: "verify.example.net",
		Only:     []string{"roundtrip"},
	}
	return l
}

// TestRoundTrip submits probes to mailctl's own server, deployed for
// example.org with its DNS on a real Knot, and reads them back over IMAPS.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	l := startRoundTripLab(t)
	cfg := loadConfig(t, baseHCL)
	alice := &verify.Probe{User: "alice@example.org", Password: "x", Wait: 15 * time.Second, Poll: 100 * time.Millisecond}
	// Keys of another server: valid, but not the ones that sign.
	wrongKeys, err := dkim.Ensure(t.TempDir(), "example.org", []string{"mx1"})
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		probe *verify.Probe
		// before breaks something for the case. One that changes the DNS
		// gets a lab of its own (fresh: true): the server caches answers
		// for their TTL, as any resolver does, so a change in the shared
		// Knot would not be seen by the next cases in time.
		before func(t *testing.T, l *rtLab)
		fresh  bool
		status verify.Status
		detail []string
		fix    string
	}{
		{name: "pass", probe: alice, status: verify.Pass, detail: []string{"spf=pass dkim=pass dmarc=pass", "via " + host + ":465"}},
		{name: "to an alias", probe: &verify.Probe{User: alice.User, Password: "x", To: "postmaster@example.org", Wait: 15 * time.Second, Poll: 100 * time.Millisecond},
			status: verify.Pass, detail: []string{"postmaster@example.org", "spf=pass dkim=pass dmarc=pass"}},
		{name: "submissions port closed", probe: alice, before: func(t *testing.T, l *rtLab) {
			l.opts.Addresses[host+":465"] = "127.0.0.1:1"
		}, status: verify.Fail, detail: []string{"connect to " + host + ":465"}, fix: "listens on port 465"},
		{name: "wrong DKIM key published", probe: alice, fresh: true, before: func(t *testing.T, l *rtLab) {
			for _, k := range wrongKeys {
				l.update(t, txtRR(k.Selector+"._domainkey.example.org", k.Record))
			}
		}, status: verify.Fail, detail: []string{"dkim=fail"}, fix: "dkim=fail: the published DKIM key differs from the server's: run mailctl apply"},
		{name: "SPF without the server IP", probe: alice, fresh: true, before: func(t *testing.T, l *rtLab) {
			l.update(t, txtRR("example.org", "v=spf1 ip4:198.51.100.1 -all"))
		}, status: verify.Fail, detail: []string{"spf=fail"}, fix: "does not allow the server's sending IP: run mailctl apply"},
		{name: "SPF and DKIM both broken", probe: alice, fresh: true, before: func(t *testing.T, l *rtLab) {
			l.update(t, txtRR("example.org", "v=spf1 -all"))
			for _, k := range wrongKeys {
				l.update(t, txtRR(k.Selector+"._domainkey.example.org", k.Record))
			}
		}, status: verify.Fail, detail: []string{"spf=fail", "dkim=fail", "dmarc=fail"}},
		{name: "host name without address", probe: alice, fresh: true, before: func(t *testing.T, l *rtLab) {
			l.remove(t, host, mdns.TypeA, mdns.TypeAAAA)
		}, status: verify.Fail, detail: []string{"has no Authentication-Results field from " + host}, fix: "resolvers answer for its own host name"},
		{name: "mailbox read with another login", probe: &verify.Probe{User: alice.User, Password: "x", To: "bob@example.org",
			IMAPAddr: host + ":993", IMAPUser: "bob@example.org", IMAPPassword: "x", Wait: 15 * time.Second, Poll: 100 * time.Millisecond},
			status: verify.Pass, detail: []string{"read back from bob@example.org", "spf=pass dkim=pass dmarc=pass"}},
		{name: "probe never arrives", probe: &verify.Probe{User: alice.User, Password: "x", To: "bob@example.org",
			IMAPAddr: host + ":993", IMAPUser: "alice@example.org", IMAPPassword: "x", Wait: time.Second, Poll: 100 * time.Millisecond},
			status: verify.Fail, detail: []string{"the probe did not arrive in the INBOX of bob@example.org within 1s"}, fix: "mailctl serve queue"},
		{name: "wrong password", probe: &verify.Probe{User: alice.User, Password: "not-x"}, status: verify.Fail,
			detail: []string{"authentication failed for alice@example.org"}, fix: "password_hash"},
		{name: "no credentials", probe: nil, status: verify.Skip, detail: []string{"no probe credentials"}, fix: verify.FixProbeCredentials},
		{name: "password without user", probe: &verify.Probe{Password: "x"}, status: verify.Skip, fix: verify.FixProbeCredentials},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := l
			if tc.fresh {
				l = startRoundTripLab(t)
			}
			saved := l.opts.Addresses[host+":465"]
			defer func() { l.opts.Addresses[host+":465"] = saved }()
			if tc.before != nil {
				tc.before(t, l)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep := verify.RunAll(ctx, verify.Inputs{Config: cfg}, l.opts, tc.probe)
			if len(rep.Results) != 1 {
				t.Fatalf("results = %+v, want the round trip only", rep.Results)
			}
			r := rep.Results[0]
			t.Logf("%s %s %s: %s (fix: %s)", r.Check, r.Target, r.Status, r.Detail, r.Fix)
			if r.Check != "roundtrip" || r.Status != tc.status {
				t.Errorf("result = %s %s, want roundtrip %s", r.Check, r.Status, tc.status)
			}
			for _, d := range tc.detail {
				if !strings.Contains(r.Detail, d) {
					t.Errorf("detail %q lacks %q", r.Detail, d)
				}
			}
			if !strings.Contains(r.Fix, tc.fix) {
				t.Errorf("fix %q lacks %q", r.Fix, tc.fix)
			}
			if strings.Contains(r.Detail+r.Fix, "not-x") {
				t.Errorf("the password appears in the result: %+v", r)
			}
		})
	}

	// Every probe read was deleted: only the one that went to bob's
	// unread mailbox is left.
	t.Run("probes deleted", func(t *testing.T) {
		want := map[string]int{"alice@example.org": 0, "bob@example.org": 1}
		st, err := daemon.QueryStatus(context.Background(), filepath.Join(l.dataDir, "control.sock"))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range st.Users {
			if u.Messages != want[u.Address] {
				t.Errorf("%s has %d messages left, want %d", u.Address, u.Messages, want[u.Address])
			}
		}
	})
}
