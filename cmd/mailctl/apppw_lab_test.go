package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
)

// TestLabAppPasswordRevocation: in a lab, an app password from an
// app_password block logs in over IMAP (Python imaplib) and SMTP AUTH
// (swaks); once the block is deleted, plan shows the user's app password
// revoked without any hash, and apply (a reload) makes it fail on both.
func TestLabAppPasswordRevocation(t *testing.T) {
	const host = "127.0.0.57" // beside a lab on 127.0.0.1
	for _, port := range []string{"2525", "2587", "2465", "2143", "2993", "2443"} {
		if c, err := net.DialTimeout("tcp", host+":"+port, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s:%s is taken: is a lab already running there?", host, port)
		}
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	src, err := os.ReadFile("../../examples/local/mail.hcl")
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(string(src), `ipv4     = "127.0.0.1"`, `ipv4     = "`+host+`"`, 1)
	pw, hash, err := auth.GenerateAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	block := `  password_scopes = ["imap"]
  app_password "phone" {
    hash   = "` + hash + `"
    scopes = ["imap", "smtp"]
  }
`
	withApp := strings.Replace(base, `  name          = "Alice (lab)"
`, `  name          = "Alice (lab)"
`+block, 1)
	if withApp == base || base == string(src) {
		t.Fatal("examples/local/mail.hcl: no ipv4 line or Alice block to change")
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), withApp, 0o644)
	t.Cleanup(func() { mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve") })
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false"); code != 0 || !strings.Contains(out, "Apply complete!") {
		t.Fatalf("apply = %d:\n%s", code, out)
	}

	imapLogin := func() string {
		py := `
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
m = imaplib.IMAP4_SSL(sys.argv[2], 2993, ssl_context=ctx)
try:
    m.login("alice@example.test", sys.argv[3])
    print("login ok")
except imaplib.IMAP4.error as e:
    print("login refused:", e)
`
		b, err := exec.Command("python3", "-c", py, filepath.Join(dir, ".mailctl", "data", "tls", "self-signed.crt"), host, pw).CombinedOutput()
		if err != nil {
			t.Fatalf("python3 imaplib: %v\n%s", err, b)
		}
		return string(b)
	}
	smtpAuth := func() (string, error) {
		b, err := exec.Command("swaks", "--server", host+":2465", "--tls-on-connect", "--auth", "PLAIN",
			"--auth-user", "alice@example.test", "--auth-password", pw,
			"--from", "alice@example.test", "--to", "alice@example.test", "--quit-after", "AUTH").CombinedOutput()
		return string(b), err
	}
	if out := imapLogin(); !strings.Contains(out, "login ok") {
		t.Errorf("IMAP login with the app password: %s", out)
	}
	if out, err := smtpAuth(); err != nil || !strings.Contains(out, "235 ") {
		t.Errorf("SMTP AUTH with the app password: %v\n%s", err, out)
	}

	// Revoke: delete the block.
	writeFile(t, filepath.Join(dir, "mail.hcl"), base, 0o644)
	out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode")
	if code != 2 || !strings.Contains(out, "user.alice@example.test") || !strings.Contains(out, "app password phone revoked") ||
		!strings.Contains(out, "password or password_scopes changed") {
		t.Errorf("plan after deleting the app_password block = %d, want 2 and alice's app password phone revoked:\n%s", code, out)
	}
	if strings.Contains(out, "$argon2id") || strings.Contains(out, hash[strings.LastIndexByte(hash, '$')+1:]) {
		t.Errorf("plan prints a hash:\n%s", out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false"); code != 0 || !strings.Contains(out, "Apply complete!") || strings.Contains(out, "restart") {
		t.Fatalf("apply of the revocation = %d, want a reload, no restart:\n%s", code, out)
	}
	if out := imapLogin(); !strings.Contains(out, "login refused") || !strings.Contains(out, "AUTHENTICATIONFAILED") {
		t.Errorf("IMAP login with the revoked app password: %s", out)
	}
	if out, err := smtpAuth(); err == nil || !strings.Contains(out, "535 ") {
		t.Errorf("SMTP AUTH with the revoked app password: %v, want 535\n%s", err, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 0 {
		t.Errorf("plan after the revocation = %d, want no changes:\n%s", code, out)
	}
}
