package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// googleZone is example.org as it is before the move: mail at Google.
const googleZone = `$ORIGIN example.org.
@ 3600 IN SOA ns1.example.org. hostmaster.example.org. 2026120701 3600 600 604800 300
@ 3600 IN NS ns1.example.org.
@ 3600 IN MX 1 aspmx.l.google.com.
@ 3600 IN MX 5 alt1.aspmx.l.google.com.
`

// TestMXTakeoverGuardrail: with the live MX at Google and no migration
// block, plan shows a warning about incoming mail and apply refuses
// (leaving the zone alone) unless -allow-mx-takeover; a migration block
// in its first phase keeps the MX at Google, with no warning.
func TestMXTakeoverGuardrail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	zone := filepath.Join(dir, "zones", "example.org.zone")
	if err := os.MkdirAll(filepath.Dir(zone), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, zone, googleZone, 0o644)
	dnsOnly := "-target=dns.example.org"

	e, out, errb := testEnv(dir)
	if code := runCLI(t, e, "plan", dnsOnly); code != 0 {
		t.Fatalf("plan = %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{
		"Warning: mail for example.org is taken away from Google Workspace",
		"its MX point to aspmx.l.google.com, alt1.aspmx.l.google.com.",
		"This plan points them to mx1.example.org.",
		"apply -allow-mx-takeover",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "plan", "-json", dnsOnly); code != 0 || !strings.Contains(out.String(), `"service": "Google Workspace"`) {
		t.Errorf("plan -json = %d, lacks mx_takeovers:\n%s", code, out)
	}

	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "apply", "-auto-approve", "-verify=false", "-wait=0", dnsOnly); code != 1 {
		t.Fatalf("apply without -allow-mx-takeover = %d, want 1\n%s%s", code, out, errb)
	}
	if !strings.Contains(errb.String(), "not applying: this plan takes the incoming mail of example.org away") {
		t.Errorf("apply stderr:\n%s", errb)
	}
	if got := readFile(t, zone); got != googleZone {
		t.Fatalf("the refused apply changed the zone:\n%s", got)
	}

	// A saved plan is refused the same way.
	planFile := filepath.Join(dir, "p.mailplan")
	e, _, _ = testEnv(dir)
	if code := runCLI(t, e, "plan", "-out", planFile, dnsOnly); code != 0 {
		t.Fatalf("plan -out = %d", code)
	}
	e, _, errb = testEnv(dir)
	if code := runCLI(t, e, "apply", "-verify=false", "-wait=0", planFile); code != 1 || !strings.Contains(errb.String(), "-allow-mx-takeover") {
		t.Errorf("apply of a saved takeover plan = %d\n%s", code, errb)
	}

	// A migration block in its first phase: the MX stay at Google.
	migr := labConfig + `user "alice@example.org" {
  password_hash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ"
}
migration "google" {
  user "alice@example.org" {
    password        = "app-password"
    target_password = "new-password"
  }
}
`
	writeFile(t, filepath.Join(dir, "mail.hcl"), migr, 0o644)
	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "plan", dnsOnly); code != 0 || strings.Contains(out.String(), "taken away") || strings.Contains(out.String(), "aspmx.l.google.com") && strings.Contains(out.String(), "- 1 aspmx") {
		t.Errorf("plan with a migration block = %d:\n%s%s", code, out, errb)
	}

	// Allowed: the MX move to this server.
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "apply", "-auto-approve", "-verify=false", "-wait=0", "-allow-mx-takeover", dnsOnly); code != 0 {
		t.Fatalf("apply -allow-mx-takeover = %d\n%s%s", code, out, errb)
	}
	if got := readFile(t, zone); strings.Contains(got, "google") || !strings.Contains(got, "mx1.example.org.") {
		t.Errorf("zone after the allowed takeover:\n%s", got)
	}
}
