package verify_test

import (
	"context"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/verify"
)

// TestVerifyNodes: for a domain of two servers, the MX check wants an MX
// for each server and names the server whose MX is missing, and the SPF
// check wants a pass for each server's addresses and names the server
// that fails.
func TestVerifyNodes(t *testing.T) {
	base := newLab(t)
	nodes := func(t *testing.T) *lab {
		l := base.clone()
		cfg := *l.cfg
		dom := *cfg.Domains[0]
		b := &config.Server{Name: "b", Hostname: "mx2.example.org", IPv4: netip.MustParseAddr("203.0.113.20"), Ports: config.DefaultPorts}
		dom.Servers = []*config.Server{dom.Server, b}
		cfg.Domains = []*config.Domain{&dom}
		l.cfg = &cfg
		l.opts.Only = []string{"dns.mx", "spf"}
		return l
	}
	t.Run("one MX and SPF missing", func(t *testing.T) {
		t.Parallel()
		l := nodes(t)
		l.set(t, "example.org", "MX", "10 mx1.example.org.")
		l.set(t, "example.org", "TXT", "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 -all")
		rep := l.run(t)
		expect{"dns.mx", "example.org", verify.Fail, "none for mx2.example.org (server.b)", "10 mx1.example.org., 10 mx2.example.org."}.assert(t, rep)
		expect{"spf", "example.org", verify.Fail, "for 203.0.113.20 (server.b)", ""}.assert(t, rep)
	})
	t.Run("every node published", func(t *testing.T) {
		t.Parallel()
		l := nodes(t)
		l.set(t, "example.org", "MX", "10 mx1.example.org.", "10 mx2.example.org.")
		l.set(t, "example.org", "TXT", "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ip4:203.0.113.20 -all")
		rep := l.run(t)
		expect{"dns.mx", "example.org", verify.Pass, "MX 10 mx1.example.org, 10 mx2.example.org", ""}.assert(t, rep)
		expect{"spf", "example.org", verify.Pass, "pass for 203.0.113.10, 2001:db8::10, 203.0.113.20", ""}.assert(t, rep)
	})
}

// TestVerifyNodeLogins: with a probe user on a domain of two servers,
// verify logs in over IMAP on each server and names the one that fails
// (here b, whose IMAPS port is closed); the first server passes against
// a real `mailctl serve`.
func TestVerifyNodeLogins(t *testing.T) {
	t.Parallel()
	l := startRoundTripLab(t)
	cfg := *loadConfig(t, baseHCL)
	dom := *cfg.Domains[0]
	b := &config.Server{Name: "b", Hostname: "mx2.example.org", IPv4: netip.MustParseAddr("203.0.113.20"), Ports: config.DefaultPorts}
	dom.Servers = []*config.Server{dom.Server, b}
	cfg.Domains = []*config.Domain{&dom}
	opts := l.opts
	opts.Addresses = maps.Clone(l.opts.Addresses)
	opts.Addresses["mx2.example.org:993"] = "127.0.0.1:1"
	opts.Only = []string{verify.NodeLoginCheck}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep := verify.RunRoundTrip(ctx, verify.Inputs{Config: &cfg}, opts, &verify.Probe{User: "alice@example.org", Password: "x"})
	if len(rep.Results) != 2 {
		t.Fatalf("results = %+v, want an IMAP login per server", rep.Results)
	}
	expect{verify.NodeLoginCheck, host + ":993", verify.Pass, "alice@example.org logged in on server.mx1", ""}.assert(t, rep)
	expect{verify.NodeLoginCheck, "mx2.example.org:993", verify.Fail, "(server.b)", "listens on port 993"}.assert(t, rep)
}

// TestVerifyNamesServers: with several servers, the results of the checks
// of a server (its host records here) name it.
func TestVerifyNamesServers(t *testing.T) {
	t.Parallel()
	l := newLab(t).clone()
	cfg := *l.cfg
	b := &config.Server{Name: "b", Hostname: "mx2.example.org", IPv4: netip.MustParseAddr("203.0.113.20"), Ports: config.DefaultPorts}
	cfg.Servers = append([]*config.Server{}, append(l.cfg.Servers, b)...)
	l.cfg = &cfg
	l.opts.Only = []string{"dns.a"}
	rep := l.run(t)
	expect{"dns.a", host + " A", verify.Pass, "A 203.0.113.10 (server.mx1)", ""}.assert(t, rep)
	expect{"dns.a", "mx2.example.org A", verify.Fail, "(server.b)", ""}.assert(t, rep)
}
