package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTargetTypo: a -target that names no resource is an error with the
// closest address, not an empty "No changes" plan with exit 0.
func TestTargetTypo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	for _, cmd := range [][]string{
		{"plan", "-detailed-exitcode", "-target", "dns.exmaple.org"},
		{"apply", "-auto-approve", "-target", "dns.exmaple.org"},
	} {
		e, out, errb := testEnv(dir)
		if code := runCLI(t, e, cmd...); code != 1 {
			t.Errorf("%v = %d, want 1\n%s%s", cmd, code, out, errb)
		}
		if want := `-target dns.exmaple.org matches no resource of the configuration. Did you mean "dns.example.org"? Valid addresses: dkim.example.org, dns.example.org, server.mx1`; !strings.Contains(errb.String(), want) {
			t.Errorf("%v: stderr lacks %q:\n%s", cmd, want, errb)
		}
		if strings.Contains(out.String(), "No changes") {
			t.Errorf("%v planned with a typo:\n%s", cmd, out)
		}
	}
	// Valid targets: a domain, a record set, a server, everything under dns.
	for _, target := range []string{"dns.example.org", "dns.example.org._dmarc.TXT", "server.mx1", "dns", "dkim.example.org"} {
		e, out, errb := testEnv(dir)
		if code := runCLI(t, e, "plan", "-refresh=false", "-target", target); code != 0 {
			t.Errorf("plan -target %s = %d\n%s%s", target, code, out, errb)
		}
	}
}

// TestVerifyCheckTypo: a check that matches nothing is an error naming the
// valid checks, not "0 passed" with exit 0; verify -h lists the checks.
func TestVerifyCheckTypo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	tests := []struct{ arg, want string }{
		{"dns.spf", `"dns.spf" matches no check. Did you mean "spf"? Checks: dns.ns, dns.a,`},
		{"sfp", `"sfp" matches no check. Did you mean "spf"?`},
		{"exmaple.org", `"exmaple.org" matches no check. Did you mean "example.org"?`},
	}
	for _, tc := range tests {
		e, out, errb := testEnv(dir)
		if code := runCLI(t, e, "verify", "-servers=false", "-dnsbl=none", tc.arg); code != 1 {
			t.Errorf("verify %s = %d, want 1\n%s%s", tc.arg, code, out, errb)
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("verify %s: stderr lacks %q:\n%s", tc.arg, tc.want, errb)
		}
		if strings.Contains(out.String(), "passed") {
			t.Errorf("verify %s ran checks:\n%s", tc.arg, out)
		}
	}
	e, out, _ := testEnv(dir)
	if code := runCLI(t, e, "verify", "-h"); code != 0 || !strings.Contains(out.String(), "dns.ns dns.a dns.ptr dns.mx spf dkim dmarc") {
		t.Errorf("verify -h = %d:\n%s", code, out)
	}
}
