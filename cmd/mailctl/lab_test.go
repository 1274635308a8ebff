package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildBinary builds mailctl into a temporary directory once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailctl")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func mailctl(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mailctl %v: %v", args, err)
	}
	return out.String(), code
}

// TestLocalLab is the README's main command from a clean directory: the lab
// comes up, takes mail over SMTP, serves it over IMAP, verifies, plans no
// changes, applies idempotently and is destroyed.
func TestLocalLab(t *testing.T) {
	for _, port := range []string{"2525", "2587", "2465", "2143", "2993", "2443"} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			c.Close()
			t.Fatalf("port %s is taken: is a lab already running? (mailctl -chdir examples/local destroy -auto-approve)", port)
		}
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	src, err := os.ReadFile("../../examples/local/mail.hcl")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), string(src), 0o644)
	t.Cleanup(func() { mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve") })

	out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve")
	if code != 0 || !strings.Contains(out, "Apply complete!") || !strings.Contains(out, "IMAP  127.0.0.1 port 2993") {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	// apply ends with verify: the lab's checks all pass.
	if !strings.Contains(out, "Verifying...") || !regexp.MustCompile(`\n\d+ passed, 0 warnings, 0 failed, 0 skipped\.`).MatchString(out) {
		t.Errorf("apply does not end with an all-pass verify:\n%s", out)
	}
	zone, _ := os.ReadFile(filepath.Join(dir, ".mailctl", "zones", "example.test.zone"))
	if !strings.Contains(string(zone), "mailctl-ed25519._domainkey") || !strings.Contains(string(zone), "10 mail.example.test.") {
		t.Errorf("zone file after apply:\n%s", zone)
	}

	// Mail in over SMTP (swaks), out over IMAPS (Python imaplib).
	token := "lab-" + time.Now().Format("150405.000000")
	swaks := exec.Command("swaks", "--server", "127.0.0.1:2525", "--from", "someone@example.net",
		"--to", "postmaster@example.test", "--header", "Subject: "+token, "--body", "hello lab")
	if b, err := swaks.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, b)
	}
	py := `
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False  # 127.0.0.1 is not a name of the lab's certificate; the chain is still verified
m = imaplib.IMAP4_SSL("127.0.0.1", 2993, ssl_context=ctx)
m.login("alice@example.test", "lab-alice-password")
m.select("INBOX")
typ, data = m.search(None, "SUBJECT", sys.argv[2])
print("found", len(data[0].split()))
`
	imap := exec.Command("python3", "-c", py, filepath.Join(dir, ".mailctl", "data", "tls", "self-signed.crt"), token)
	if b, err := imap.CombinedOutput(); err != nil || !strings.Contains(string(b), "found 1") {
		t.Fatalf("IMAP read of the message: %v\n%s", err, b)
	}

	if out, code := mailctl(t, bin, "-chdir", dir, "verify"); code != 0 || !strings.Contains(out, " 0 warnings, 0 failed") {
		t.Errorf("verify = %d:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("plan after apply = %d:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("second apply = %d:\n%s", code, out)
	}

	// A listen address: the running server cannot reload it, so plan says
	// restart and apply restarts it on the new port.
	moved := strings.Replace(string(src), "https       = 2443", "https       = 2444", 1)
	if moved == string(src) {
		t.Fatal("examples/local/mail.hcl: no https = 2443 line to change")
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), moved, 0o644)
	if out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 2 || !strings.Contains(out, "(restart: listen changed, a reload does not apply it)") {
		t.Errorf("plan after moving https to 2444 = %d, want 2 and a restart:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 || !strings.Contains(out, "restart") {
		t.Errorf("apply after moving https to 2444 = %d, want a restart:\n%s", code, out)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:2444", time.Second); err != nil {
		t.Errorf("nothing listens on the new https port 2444: %v", err)
	} else {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:2443", time.Second); err == nil {
		c.Close()
		t.Errorf("the old https port 2443 still answers after the restart")
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("plan after the restart = %d:\n%s", code, out)
	}

	out, code = mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve")
	if code != 0 || !strings.Contains(out, "Destroy complete!") {
		t.Fatalf("destroy = %d:\n%s", code, out)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:2525", time.Second); err == nil {
		c.Close()
		t.Errorf("the lab still answers on 2525 after destroy")
	}
	if _, err := os.Stat(filepath.Join(dir, ".mailctl", "data")); err != nil {
		t.Errorf("destroy removed the mail data (it must keep it without -purge-data): %v", err)
	}
}
