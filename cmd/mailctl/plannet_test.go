package main

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// silentListener accepts connections and never answers on them.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().String()
}

// TestPlanHangingProvider: a Cloudflare endpoint that accepts the
// connection and never answers fails the plan within the provider's
// timeout, with an error naming the provider, instead of hanging; after 2
// s a progress line says what is being waited for.
func TestPlanHangingProvider(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := silentListener(t)
	writeFile(t, filepath.Join(dir, "mail.hcl"), `
provider "cloudflare" "main" {
  api_token = "test-token"
  endpoint  = "http://`+addr+`/client/v4"
  timeout   = "3s"
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls {
    acme_email = "admin@example.org"
  }
}
domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mx1
}
`, 0o644)
	e, out, errb := testEnv(dir)
	start := time.Now()
	code := runCLI(t, e, "plan", "-target=dns.example.org")
	elapsed := time.Since(start)
	if code != 1 {
		t.Fatalf("plan against a silent endpoint = %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errb)
	}
	msg := errb.String()
	if !strings.Contains(msg, "Error: list zones of provider.cloudflare.main") || !strings.Contains(msg, "no answer within 3s") {
		t.Errorf("stderr = %q, want the provider named and the timeout", msg)
	}
	if !strings.Contains(msg, "provider.cloudflare.main: Still listing zones... [2s elapsed]") {
		t.Errorf("stderr = %q, want a progress line after 2s", msg)
	}
	if elapsed > 7*time.Second {
		t.Errorf("plan took %v, want about the 3s timeout", elapsed)
	}
}

// TestPlanReportsEveryFailedRead: a server that cannot be reached over
// SSH and a DNS provider that does not answer are both reported, each on
// its own Error line, not only the first.
func TestPlanReportsEveryFailedRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := silentListener(t)
	sshPort := freePorts(t, 1)[0] // nothing listens: the connection is refused
	writeFile(t, filepath.Join(dir, "known_hosts"), "", 0o600)
	writeFile(t, filepath.Join(dir, "mail.hcl"), fmt.Sprintf(`
provider "cloudflare" "main" {
  api_token = "test-token"
  endpoint  = "http://%s/client/v4"
  timeout   = "1s"
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  ssh {
    address     = "127.0.0.1:%d"
    known_hosts = "known_hosts"
  }
  tls {
    acme_email = "admin@example.org"
  }
}
domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mx1
}
`, addr, sshPort), 0o644)
	e, out, errb := testEnv(dir)
	if code := runCLI(t, e, "plan"); code != 1 {
		t.Fatalf("plan = %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errb)
	}
	var lines []string
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.HasPrefix(l, "Error: ") {
			lines = append(lines, l)
		}
	}
	ssh, dnsErr := false, false
	for _, l := range lines {
		ssh = ssh || strings.Contains(l, "server.mx1") && strings.Contains(l, fmt.Sprint(sshPort))
		dnsErr = dnsErr || strings.Contains(l, "provider.cloudflare.main") && strings.Contains(l, "no answer within 1s")
	}
	if !ssh || !dnsErr {
		t.Errorf("stderr does not report both the SSH and the DNS failure:\n%s", errb)
	}
}

// TestSavedPlanSurvivesCommentEdit: a comment-only edit of mail.hcl after
// `plan -out` leaves the saved plan valid; a value change still makes it
// stale.
func TestSavedPlanSurvivesCommentEdit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	planFile := filepath.Join(dir, "out.mailplan")
	target := "-target=dns.example.org._dmarc.TXT"
	e, out, errb := testEnv(dir)
	if code := runCLI(t, e, "plan", "-out", planFile, target); code != 0 {
		t.Fatalf("plan -out = %d\n%s%s", code, out, errb)
	}
	commented := "# Mail of example.org.\n\n" + strings.Replace(labConfig, "  server = server.mx1\n", "  server = server.mx1 # the VPS\n\n  // DMARC: the default policy\n", 1)
	writeFile(t, filepath.Join(dir, "mail.hcl"), commented, 0o644)
	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "apply", planFile); code != 0 || !strings.Contains(out.String(), "Apply complete! Resources: 1 added") {
		t.Fatalf("apply of the saved plan after a comment-only edit = %d\n%s%s", code, out, errb)
	}

	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "plan", "-out", planFile, "-target=dns.example.org.MX"); code != 0 {
		t.Fatalf("plan -out = %d\n%s%s", code, out, errb)
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), strings.Replace(commented, "203.0.113.10", "203.0.113.11", 1), 0o644)
	e, _, errb = testEnv(dir)
	if code := runCLI(t, e, "apply", planFile); code != 1 || !strings.Contains(errb.String(), "configuration changed") {
		t.Fatalf("apply after a value change = %d, stderr %q; want 1 and stale", code, errb)
	}
}

// TestPlanTargetWarning: a plan limited by -target says so, as Terraform
// does, in the text and in the JSON; a plan without targets does not.
func TestPlanTargetWarning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), labConfig, 0o644)
	e, out, _ := testEnv(dir)
	if code := runCLI(t, e, "plan", "-target=dns.example.org._dmarc.TXT"); code != 0 {
		t.Fatalf("plan -target = %d\n%s", code, out)
	}
	if !strings.Contains(out.String(), "Warning: Resource targeting is in effect (-target dns.example.org._dmarc.TXT)") {
		t.Errorf("plan -target lacks the targeting warning:\n%s", out)
	}
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "plan", "-json", "-target=dns.example.org._dmarc.TXT"); code != 0 {
		t.Fatalf("plan -json -target = %d\n%s", code, out)
	}
	var doc struct {
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Warnings) != 1 || !strings.HasPrefix(doc.Warnings[0], "Resource targeting is in effect") {
		t.Errorf("plan -json -target warnings = %q (%v)", doc.Warnings, err)
	}
	e, out, _ = testEnv(dir)
	runCLI(t, e, "plan", "-refresh=false")
	if strings.Contains(out.String(), "targeting") {
		t.Errorf("plan without -target warns about targeting:\n%s", out)
	}
}
