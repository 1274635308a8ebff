package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/auth"
)

// TestMigrateCommandOAuth2 runs `mailctl migrate` from a configuration
// whose user logs in to the source (a real Dovecot with its oauth2 passdb)
// with XOAUTH2, the token printed by oauth2_token_command: a valid token
// copies the mailbox; once the token is revoked the run exits 1 saying
// the token was refused, without showing it.
func TestMigrateCommandOAuth2(t *testing.T) {
	const token = "ya29.a0-cli-test-token"
	d := testenv.StartDovecotWith(t, testenv.DovecotOptions{
		Users:  []testenv.DovecotUser{{Name: "alice@gmail.example", Password: "app-pw"}},
		OAuth2: true,
		Tokens: map[string]testenv.OAuth2Token{token: {User: "alice@gmail.example", Active: true}},
	})
	fx := d.FillGmailLike(t, "alice@gmail.example", testenv.GmailOptions{Messages: 30, Seed: 5})
	addr, caFile, st := startMigrationTarget(t, "alice@example.org", "target-pw")
	hash, err := auth.HashPassword("target-pw", auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "google-token.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho "+token+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hcl := fmt.Sprintf(migrateHCL, hash, d.TLSAddr, d.CAFile, addr, caFile)
	login := `password        = env("ALICE_GOOGLE_APP_PASSWORD")`
	if !strings.Contains(hcl, login) {
		t.Fatalf("migrateHCL has no line %q to replace", login)
	}
	// Relative to the configuration directory, not to the working one.
	hcl = strings.Replace(hcl, login, `oauth2_token_command = "./google-token.sh"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		e := &env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: dir,
			Getenv: func(k string) string { return map[string]string{"ALICE_PASSWORD": "target-pw"}[k] }}
		code := run(context.Background(), append([]string{"-chdir", dir, "migrate"}, args...), e)
		return code, out.String(), errb.String()
	}
	messages := func() int {
		_, n, err := st.Usage(context.Background(), "alice@example.org")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := len(fx.Messages)

	t.Run("valid token", func(t *testing.T) {
		before := d.Introspections()
		code, out, errOut := cli()
		if code != 0 || !strings.Contains(out, fmt.Sprintf("alice@example.org: copied %d messages", n)) {
			t.Errorf("exit code = %d, want 0 and %d messages copied\nstdout:\n%s\nstderr:\n%s", code, n, out, errOut)
		}
		if got := messages(); got != n {
			t.Errorf("target holds %d messages, want %d", got, n)
		}
		if d.Introspections() == before {
			t.Error("Dovecot never asked the introspection endpoint: the login was not XOAUTH2")
		}
	})

	t.Run("revoked token", func(t *testing.T) {
		d.SetToken(token, testenv.OAuth2Token{User: "alice@gmail.example", Active: false})
		code, out, errOut := cli()
		if code != 1 || !strings.Contains(out, "(XOAUTH2): the server refused the access token") {
			t.Errorf("exit code = %d, want 1 and the refused token\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if strings.Contains(out+errOut, token) {
			t.Errorf("the token appears in the output:\nstdout:\n%s\nstderr:\n%s", out, errOut)
		}
		if got := messages(); got != n {
			t.Errorf("target holds %d messages, want %d", got, n)
		}
	})
}
