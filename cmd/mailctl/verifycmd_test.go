package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// verifyHCL is one server on a zone file; its services are dialled on a
// closed loopback port.
const verifyHCL = `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  local {}
  tls { self_signed = true }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
user "alice@example.org" {
  password_hash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ"
}
`

// TestVerifyProbeFlags runs verify's round trip with credentials from
// flags or the environment: without them it is skipped, with them it
// tries the submission port (closed here), and the password never shows.
func TestVerifyProbeFlags(t *testing.T) {
	const secret = "probe-secret-Zq9"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), verifyHCL, 0o644)
	pwFile := filepath.Join(t.TempDir(), "pw")
	writeFile(t, pwFile, secret+"\n", 0o600)
	base := []string{"-chdir", dir, "verify", "-json", "-resolver", "127.0.0.1:1", "-connect", "mx1.example.org:465=127.0.0.1:1"}
	cases := []struct {
		name     string
		env      map[string]string
		args     []string
		code     int
		status   string
		detail   string
		errorOut string
	}{
		{name: "no credentials", code: 0, status: "skip", detail: "no probe credentials"},
		{name: "flags", args: []string{"-probe-user", "alice@example.org", "-probe-password-file", pwFile}, code: 2, status: "fail", detail: "connect to mx1.example.org:465"},
		{name: "environment", env: map[string]string{"MAILCTL_PROBE_USER": "alice@example.org", "MAILCTL_PROBE_PASSWORD": secret}, code: 2, status: "fail", detail: "connect to mx1.example.org:465"},
		{name: "user without password", args: []string{"-probe-user", "alice@example.org"}, code: 0, status: "skip"},
		{name: "recipient without credentials", args: []string{"-probe-to", "bob@example.org"}, code: 1, errorOut: "the round trip needs -probe-user"},
		{name: "missing password file", args: []string{"-probe-user", "alice@example.org", "-probe-password-file", filepath.Join(dir, "nope")}, code: 1, errorOut: "read the probe password"},
		{name: "outside mailbox without its password", env: map[string]string{"MAILCTL_PROBE_USER": "alice@example.org", "MAILCTL_PROBE_PASSWORD": secret},
			args: []string{"-probe-to", "someone@example.net", "-probe-imap", "imap.example.net:993"}, code: 1, errorOut: "MAILCTL_PROBE_IMAP_PASSWORD"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, stdout, stderr := testEnv(dir)
			e.Getenv = func(k string) string { return tc.env[k] }
			args := append(append(append([]string{}, base...), tc.args...), "roundtrip")
			code := runCLI(t, e, args...)
			if code != tc.code {
				t.Fatalf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			if strings.Contains(stdout.String()+stderr.String(), secret) {
				t.Errorf("the probe password is printed:\n%s%s", stdout, stderr)
			}
			if tc.errorOut != "" {
				if !strings.Contains(stderr.String(), tc.errorOut) {
					t.Errorf("stderr = %q, want %q", stderr, tc.errorOut)
				}
				return
			}
			var rep struct {
				Results []struct{ Check, Target, Status, Detail, Fix string }
			}
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("JSON output: %v\n%s", err, stdout)
			}
			if len(rep.Results) != 1 || rep.Results[0].Check != "roundtrip" {
				t.Fatalf("results = %+v, want the round trip only", rep.Results)
			}
			r := rep.Results[0]
			if r.Status != tc.status || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("round trip = %s %q, want %s %q", r.Status, r.Detail, tc.status, tc.detail)
			}
			if r.Status == "skip" && !strings.Contains(r.Fix, "MAILCTL_PROBE_USER") {
				t.Errorf("skip fix = %q, want how to give credentials", r.Fix)
			}
		})
	}
}
