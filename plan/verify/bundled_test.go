package verify_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/store"
)

// startBundled runs mailctl's own SMTP services (server/smtp) for the lab
// domain and returns their addresses by mode.
func startBundled(t *testing.T, cert tls.Certificate) map[smtp.Mode]string {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	st, err := store.Open(ctx, t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	users := []auth.User{{Address: "alice@example.org", PasswordHash: hash, Aliases: []string{"postmaster@example.org"}}}
	aliases := []auth.Alias{{Address: "abuse@example.org", To: []string{"alice@example.org"}}}
	dir, err := auth.NewDirectory([]string{"example.org"}, users, aliases)
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.NewAuthenticator(users, auth.AuthenticatorOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	out := map[smtp.Mode]string{}
	for _, mode := range []smtp.Mode{smtp.ModeMX, smtp.ModeSubmission, smtp.ModeSubmissions} {
		srv, err := smtp.New(smtp.Options{Mode: mode, Hostname: host, TLSConfig: tc, Store: st, Directory: dir, Auth: authn,
			SpoolDir: t.TempDir(), Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out[mode] = ln.Addr().String()
		go srv.Serve(ln)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	return out
}

// TestBundledServer runs the SMTP checks against mailctl's own server: what
// `mailctl serve` deploys must pass them.
func TestBundledServer(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	cert := ca.leaf(t, host)
	addrs := startBundled(t, cert)
	opts := verify.Options{
		Addresses: map[string]string{
			host + ":25":  addrs[smtp.ModeMX],
			host + ":587": addrs[smtp.ModeSubmission],
			host + ":465": addrs[smtp.ModeSubmissions],
		},
		Roots:    ca.Pool,
		Timeout:  10 * time.Second,
		HeloName: "verify.example.net",
		Only:     []string{host + ":25", host + ":587", host + ":465"},
		// Not used by these checks, but Run must not fall back to the
		// system resolver.
		Resolver: &verify.DNSClient{Servers: []string{"127.0.0.1:1"}},
	}
	rep := verify.Run(context.Background(), verify.Inputs{Config: loadConfig(t, baseHCL)}, opts)
	want := map[string]bool{
		"tls " + host + ":25": true, "tls " + host + ":587": true, "tls " + host + ":465": true,
		"smtp.banner " + host + ":25": true, "relay " + host + ":25": true,
		"smtp.auth " + host + ":587": true, "smtp.auth " + host + ":465": true,
	}
	for _, r := range rep.Results {
		if !want[r.Check+" "+r.Target] {
			t.Errorf("unexpected result %s %s", r.Check, r.Target)
		}
		delete(want, r.Check+" "+r.Target)
		if r.Status != verify.Pass {
			t.Errorf("%s %s = %s %q, want pass", r.Check, r.Target, r.Status, r.Detail)
		}
	}
	for k := range want {
		t.Errorf("no result for %s", k)
	}
	if testing.Verbose() {
		t.Log("\n" + table(rep))
	}
}
