package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const labConfig = `
provider "zonefile" "z" {
  dir = "zones"
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls {
    acme_email = "admin@example.org"
  }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
`

func TestPlanApplyExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	target := "-target=dns.example.org._dmarc.TXT"

	e, out, _ := testEnv(dir)
	if code := runCLI(t, e, "plan", "-detailed-exitcode", target); code != 2 {
		t.Fatalf("plan -detailed-exitcode with changes = %d, want 2\n%s", code, out)
	}
	if !strings.Contains(out.String(), `+ "v=DMARC1; p=none"`) || !strings.Contains(out.String(), "Plan: 1 to add, 0 to change, 0 to destroy.") {
		t.Errorf("plan output:\n%s", out)
	}

	e, _, errb := testEnv(dir)
	if code := runCLI(t, e, "apply", target); code != 1 || !strings.Contains(errb.String(), "-auto-approve") {
		t.Fatalf("apply without a terminal = %d, stderr %q; want 1 and a hint for -auto-approve", code, errb)
	}

	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "apply", "-auto-approve", target); code != 0 {
		t.Fatalf("apply = %d\n%s", code, out)
	}
	if !strings.Contains(out.String(), "Apply complete! Resources: 1 added, 0 changed, 0 destroyed.") {
		t.Errorf("apply output:\n%s", out)
	}
	zone, err := os.ReadFile(filepath.Join(dir, "zones", "example.org.zone"))
	if err != nil || !strings.Contains(string(zone), `"v=DMARC1; p=none"`) {
		t.Fatalf("zone file after apply: %v\n%s", err, zone)
	}

	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "plan", "-detailed-exitcode", target); code != 0 {
		t.Fatalf("second plan -detailed-exitcode = %d, want 0\n%s", code, out)
	}
	if !strings.Contains(out.String(), "No changes. Your mail setup matches the configuration.") {
		t.Errorf("second plan output:\n%s", out)
	}

	e, _, errb = testEnv(filepath.Join(dir, "missing"))
	if code := runCLI(t, e, "plan", "-detailed-exitcode"); code != 1 {
		t.Errorf("plan of a missing directory = %d, want 1 (%s)", code, errb)
	}
}

// TestDNSPlanReadsNoBinary: a plan that contacts no server does not read
// (hash) the executable it would deploy; a server plan does.
func TestDNSPlanReadsNoBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	missing := filepath.Join(dir, "no-such-binary")
	e, out, errb := testEnv(dir)
	if code := runCLI(t, e, "plan", "-target=dns", "-server-binary", missing); code != 0 || !strings.Contains(out.String(), "Plan: ") {
		t.Fatalf("DNS-only plan with a missing -server-binary = %d\n%s%s", code, out, errb)
	}
	e, _, errb = testEnv(dir)
	if code := runCLI(t, e, "plan", "-server-binary", missing); code != 1 || !strings.Contains(errb.String(), "server binary") {
		t.Errorf("server plan with a missing -server-binary = %d, stderr %q; want 1 naming the binary", code, errb)
	}
}

func TestStalePlan(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	planFile := filepath.Join(dir, "out.mailplan")
	target := "-target=dns.example.org.MX"

	// Create the zone file first, so that a later change to it is a change
	// of state.
	e, out, _ := testEnv(dir)
	if code := runCLI(t, e, "apply", "-auto-approve", "-target=dns.example.org._dmarc.TXT"); code != 0 {
		t.Fatalf("apply: %d\n%s", code, out)
	}
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "plan", "-out", planFile, target); code != 0 {
		t.Fatalf("plan -out: %d\n%s", code, out)
	}
	if fi, err := os.Stat(planFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("plan file: %v %v, want mode 0600", fi, err)
	}

	// show prints it; show -json carries format_version.
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "show", "-json", planFile); code != 0 {
		t.Fatalf("show: %d", code)
	}
	var doc struct {
		FormatVersion string `json:"format_version"`
		Changes       []struct {
			Address string   `json:"address"`
			Actions []string `json:"actions"`
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.FormatVersion != "1.0" || len(doc.Changes) != 1 || doc.Changes[0].Actions[0] != "create" {
		t.Fatalf("show -json = %s (%v)", out, err)
	}

	// Someone changes the zone behind our back: the plan is stale.
	zf := filepath.Join(dir, "zones", "example.org.zone")
	b, _ := os.ReadFile(zf)
	writeFile(t, zf, string(b)+"www 300 IN A 192.0.2.1\n", 0o644)
	e, _, errb := testEnv(dir)
	if code := runCLI(t, e, "apply", planFile); code != 1 || !strings.Contains(errb.String(), "stale") || !strings.Contains(errb.String(), "example.org") {
		t.Fatalf("apply of a stale plan = %d, stderr %q; want 1 and 'stale'", code, errb)
	}

	// A fresh plan applies; a config change makes it stale again.
	e, _, _ = testEnv(dir)
	runCLI(t, e, "plan", "-out", planFile, target)
	writeFile(t, filepath.Join(dir, "mail.hcl"), strings.Replace(labConfig, "203.0.113.10", "203.0.113.11", 1), 0o644)
	e, _, errb = testEnv(dir)
	if code := runCLI(t, e, "apply", planFile); code != 1 || !strings.Contains(errb.String(), "configuration changed") {
		t.Fatalf("apply after a config change = %d, stderr %q", code, errb)
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "apply", planFile); code != 0 {
		t.Fatalf("apply of a fresh plan = %d\n%s", code, out)
	}
	zone, _ := os.ReadFile(zf)
	if !strings.Contains(string(zone), "MX\t10 mx1.example.org.") || !strings.Contains(string(zone), "192.0.2.1") {
		t.Errorf("zone after apply:\n%s", zone)
	}
}

// TestApplyConfirmation: on a terminal, apply asks and only "yes" goes on.
func TestApplyConfirmation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	target := "-target=dns.example.org._dmarc.TXT"

	e, out, _ := testEnv(dir)
	e.IsTerminal, e.Stdin = true, strings.NewReader("no\n")
	if code := runCLI(t, e, "apply", target); code != 1 || !strings.Contains(out.String(), "Apply cancelled.") {
		t.Fatalf("apply answered no = %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "zones", "example.org.zone")); err == nil {
		t.Fatalf("a cancelled apply wrote the zone")
	}
	e, out, _ = testEnv(dir)
	e.IsTerminal, e.Stdin = true, strings.NewReader("yes\n")
	if code := runCLI(t, e, "apply", target); code != 0 || !strings.Contains(out.String(), "Only 'yes' will be accepted") || !strings.Contains(out.String(), "Apply complete!") {
		t.Fatalf("apply answered yes = %d:\n%s", code, out)
	}
}
