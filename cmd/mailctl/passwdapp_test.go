package main

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/server/auth"
)

// TestPasswdApp: passwd -app shows a grouped random password on stderr
// and prints on stdout an app_password block, without the password, that
// the configuration accepts and that logs the password in.
func TestPasswdApp(t *testing.T) {
	t.Parallel()
	e, stdout, stderr := testEnv(t.TempDir())
	e.Stdin = strings.NewReader("must not be read\n")
	if code := runCLI(t, e, "passwd", "-app", "phone", "-scopes", "imap"); code != exitOK {
		t.Fatalf("passwd -app = %d: %s", code, stderr)
	}
	m := regexp.MustCompile(`App password for phone: ([a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4})\n`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr = %q, want the grouped app password", stderr)
	}
	pw := m[1]
	block := stdout.String()
	if strings.Contains(block, pw) || strings.Contains(block, strings.ReplaceAll(pw, " ", "")) {
		t.Errorf("stdout holds the password: %q", block)
	}
	if !strings.HasPrefix(block, `app_password "phone" {`) || !strings.Contains(block, `scopes = ["imap"]`) {
		t.Errorf("stdout = %q, want an app_password block with scopes [\"imap\"]", block)
	}
	hash, err := auth.HashPassword("main-pw", auth.AppParams)
	if err != nil {
		t.Fatal(err)
	}
	src := `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls { acme_email = "a@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
user "a@example.org" {
  password_hash = "` + hash + `"
` + block + `}
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{})
	if len(diags) > 0 {
		t.Fatalf("the printed block in a user: %v", diags)
	}
	u := cfg.Users[0]
	if len(u.AppPasswords) != 1 {
		t.Fatalf("app passwords = %+v", u.AppPasswords)
	}
	ap := u.AppPasswords[0]
	a, err := auth.NewAuthenticator([]auth.User{{Address: u.Address, PasswordHash: u.PasswordHash.Str,
		AppPasswords: []auth.AppPassword{{Name: ap.Name, Hash: ap.Hash.Str, Scopes: ap.Scopes}}}}, auth.AuthenticatorOptions{FailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	from := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}
	if _, err := a.For(auth.ScopeIMAP).Authenticate(context.Background(), "a@example.org", pw, from); err != nil {
		t.Errorf("IMAP login with the printed app password = %v", err)
	}
	if _, err := a.For(auth.ScopeSMTP).Authenticate(context.Background(), "a@example.org", pw, from); err == nil {
		t.Errorf("SMTP login with an imap-only app password succeeded")
	}

	// Two runs draw different passwords.
	e2, _, stderr2 := testEnv(t.TempDir())
	if code := runCLI(t, e2, "passwd", "-app", "laptop"); code != exitOK || strings.Contains(stderr2.String(), pw) {
		t.Errorf("second passwd -app = %d, stderr %q", code, stderr2)
	}
}

func TestPasswdAppErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-app", "my phone"}, `app password name "my phone"`},
		{[]string{"-app", "phone", "-scopes", "imap,pop3"}, `scope "pop3"`},
		{[]string{"-scopes", "imap"}, "-scopes needs -app NAME"},
		{[]string{"-app", "phone", "extra"}, "takes no arguments"},
	} {
		e, stdout, stderr := testEnv(t.TempDir())
		code := runCLI(t, e, append([]string{"passwd"}, tt.args...)...)
		if code != exitError || stdout.Len() != 0 || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("passwd %q = %d, stdout %q, stderr %q; want one error line with %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}
