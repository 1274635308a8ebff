package verify_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/plan/verify"
)

// closedAddr returns a 127.0.0.1 address where nothing listens (TCP and
// UDP).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// failures returns the failed results.
func failures(rep verify.Report) []verify.Result {
	var out []verify.Result
	for _, r := range rep.Results {
		if r.Status == verify.Fail {
			out = append(out, r)
		}
	}
	return out
}

// TestRootCauses: with the resolver unreachable, verify reports one
// failure naming it and the checks that need DNS as skipped because of
// it; with the server down, one "server" failure and its port checks
// skipped. The checks that do not depend on the cause still run.
func TestRootCauses(t *testing.T) {
	base := newLab(t)

	t.Run("resolver unreachable", func(t *testing.T) {
		t.Parallel()
		l := base.clone()
		dead := closedAddr(t)
		l.opts.Resolver = &verify.DNSClient{Servers: []string{dead}, Timeout: 500 * time.Millisecond}
		rep := l.run(t)
		fails := failures(rep)
		if len(fails) != 1 || fails[0].Check != "resolver" || fails[0].Target != dead || !strings.Contains(fails[0].Detail, "does not answer") {
			t.Fatalf("failures = %+v, want one naming the resolver\n%s", fails, table(rep))
		}
		for _, name := range []string{"dns.ns", "dns.a", "dns.ptr", "dns.mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt"} {
			rs := rep.Find(name, "")
			if len(rs) == 0 {
				t.Errorf("no %s result", name)
			}
			for _, r := range rs {
				if r.Status != verify.Skip || !strings.Contains(r.Detail, "the DNS resolver does not answer") {
					t.Errorf("%s %s = %s %q, want skipped because of the resolver", r.Check, r.Target, r.Status, r.Detail)
				}
			}
		}
		// The server's ports do not need the resolver: still checked.
		for _, r := range rep.Find("tls", "") {
			if r.Status != verify.Pass {
				t.Errorf("tls %s = %s %q, want pass", r.Target, r.Status, r.Detail)
			}
		}
	})

	t.Run("server down", func(t *testing.T) {
		t.Parallel()
		l := base.clone()
		for _, p := range []string{"25", "587", "465", "143", "993", "443"} {
			l.opts.Addresses[host+":"+p] = closedAddr(t)
		}
		rep := l.run(t)
		fails := failures(rep)
		if len(fails) != 1 || fails[0].Check != "server" || fails[0].Target != "server.mx1" || !strings.Contains(fails[0].Detail, "does not answer on any of its ports") {
			t.Fatalf("failures = %+v, want one: server.mx1 not running\n%s", fails, table(rep))
		}
		n := 0
		for _, name := range []string{"tls", "smtp.banner", "relay", "smtp.auth"} {
			for _, r := range rep.Find(name, "") {
				if !strings.HasPrefix(r.Target, host+":") {
					continue
				}
				n++
				if r.Status != verify.Skip || !strings.Contains(r.Detail, "server.mx1 does not answer") {
					t.Errorf("%s %s = %s %q, want skipped because the server is down", r.Check, r.Target, r.Status, r.Detail)
				}
			}
		}
		if n < 8 {
			t.Errorf("%d port checks of the server, want them all reported as skipped\n%s", n, table(rep))
		}
		// DNS still checked.
		if rs := rep.Find("dns.mx", "example.org"); len(rs) != 1 || rs[0].Status != verify.Pass {
			t.Errorf("dns.mx = %+v, want pass", rs)
		}
	})
}
