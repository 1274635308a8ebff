package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

// migrationServer is the bundled IMAP server as a migration target, on a
// loopback implicit-TLS port, with a certificate for 127.0.0.1 and
// mx1.example.org.
type migrationServer struct {
	addr, caFile string
	st           *store.Store
}

func startMigrationServer(t *testing.T, password string, users ...string) *migrationServer {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := auth.HashPassword(password, auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	var accounts []auth.User
	for _, u := range users {
		if err := st.EnsureUser(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, auth.User{Address: u, PasswordHash: h})
	}
	authn, err := auth.NewAuthenticator(accounts, auth.AuthenticatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t)
	s := &migrationServer{st: st, caFile: filepath.Join(t.TempDir(), "target-ca.pem")}
	if err := os.WriteFile(s.caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := imap.New(st, authn, imap.Options{ImplicitTLS: true, Logger: slog.New(slog.DiscardHandler),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, "127.0.0.1", "mx1.example.org")}}})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	return s
}

func (s *migrationServer) messages(t *testing.T, user string) int {
	t.Helper()
	_, n, err := s.st.Usage(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// migrateTwoUsersHCL migrates alice then bob; %s is the target block, or
// nothing for each user's server (mx1.example.org:993).
const migrateTwoUsersHCL = `
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
user "alice@example.org" {
  password_hash = %[1]q
}
user "bob@example.org" {
  password_hash = %[1]q
}
migration "google" {
  source {
    address = %[2]q
    ca_file = %[3]q
  }
  %[4]s
  user "alice@example.org" {
    login           = "alice@gmail.example"
    password        = env("ALICE_GOOGLE_APP_PASSWORD")
    target_password = env("ALICE_PASSWORD")
  }
  user "bob@example.org" {
    login           = "bob@gmail.example"
    password        = env("BOB_GOOGLE_APP_PASSWORD")
    target_password = env("BOB_PASSWORD")
  }
}
`

// TestMigrateCommandFixes runs `mailctl migrate` with two users (a
// Dovecot source, the bundled server as target) through the problems
// found trying it on a Gmail-like source: -user X runs X alone; the dry
// run shows the folder mapping and the exclusions; plan and destroy do not
// need the migration's secrets, and migrate names the missing one; an
// interruption says what was interrupted and that a new run resumes;
// -connect and -ca-file reach a target not in the DNS; a target set up
// again empty gets everything again.
func TestMigrateCommandFixes(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: "alice@gmail.example", Password: "app-pw"},
		testenv.DovecotUser{Name: "bob@gmail.example", Password: "bob-app-pw"})
	fx := d.FillGmailLike(t, "alice@gmail.example", testenv.GmailOptions{Messages: 600, Seed: 29})
	n := len(fx.Messages)
	tg := startMigrationServer(t, "target-pw", "alice@example.org", "bob@example.org")
	hash, err := auth.HashPassword("target-pw", auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeConfig := func(targetBlock string) {
		hcl := fmt.Sprintf(migrateTwoUsersHCL, hash, d.TLSAddr, d.CAFile, targetBlock)
		if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(hcl), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(fmt.Sprintf("target {\n    address = %q\n    ca_file = %q\n  }", tg.addr, tg.caFile))
	secrets := map[string]string{"ALICE_GOOGLE_APP_PASSWORD": "app-pw", "ALICE_PASSWORD": "target-pw",
		"BOB_GOOGLE_APP_PASSWORD": "bob-app-pw", "BOB_PASSWORD": "target-pw"}
	cliCtx := func(ctx context.Context, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		e := &env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: dir,
			Getenv: func(k string) string { return secrets[k] }}
		code := run(ctx, append([]string{"-chdir", dir}, args...), e)
		return code, out.String(), errb.String()
	}
	cli := func(args ...string) (int, string, string) { return cliCtx(context.Background(), args...) }

	t.Run("one user, folders in the dry run", func(t *testing.T) {
		code, out, errOut := cli("migrate", "-dry-run", "-user", "alice@example.org")
		if code != 0 || !strings.Contains(out, fmt.Sprintf("alice@example.org: would copy %d messages", n)) {
			t.Fatalf("exit %d, want 0 and alice's count\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if strings.Contains(out, "bob@example.org") {
			t.Errorf("-user alice@example.org also ran bob@example.org:\n%s", out)
		}
		for _, s := range []string{`"INBOX" -> "INBOX": `, `"[Gmail]/Sent Mail" -> "Sent": `, `"[Gmail]/All Mail" -> "Archive": `,
			`"[Gmail]/Starred" not copied: excluded by default (its messages are in other folders)`,
			`"[Gmail]/Important" not copied: excluded by default`} {
			if !strings.Contains(out, s) {
				t.Errorf("dry run output does not contain %q:\n%s", s, out)
			}
		}
	})

	t.Run("secrets only for migrate", func(t *testing.T) {
		delete(secrets, "BOB_GOOGLE_APP_PASSWORD")
		defer func() { secrets["BOB_GOOGLE_APP_PASSWORD"] = "bob-app-pw" }()
		for _, args := range [][]string{
			{"plan", "-target=dns.example.org._dmarc.TXT"},
			{"destroy", "-target=dns.example.org._dmarc.TXT"},
		} {
			code, out, errOut := cli(args...)
			if code != 0 && code != 2 || strings.Contains(errOut, "BOB_GOOGLE_APP_PASSWORD") {
				t.Errorf("%s without the migration's secrets: exit %d\nstdout:\n%s\nstderr:\n%s", args[0], code, out, errOut)
			}
		}
		if code, _, errOut := cli("migrate", "-dry-run", "-user", "alice@example.org"); code != 0 {
			t.Errorf("migrate of alice without bob's secret: exit %d\n%s", code, errOut)
		}
		code, _, errOut := cli("migrate", "-dry-run")
		if code != 1 || !strings.Contains(errOut, "BOB_GOOGLE_APP_PASSWORD is not set") {
			t.Errorf("migrate of bob without his secret: exit %d, want 1 naming the variable\n%s", code, errOut)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			defer cancel()
			for ctx.Err() == nil && tg.messages(t, "alice@example.org") < 100 {
				time.Sleep(2 * time.Millisecond)
			}
		}()
		code, out, errOut := cliCtx(ctx, "migrate", "-user", "alice@example.org")
		cancel()
		got := tg.messages(t, "alice@example.org")
		if got >= n {
			t.Skipf("the copy of %d messages ended before the interruption", n)
		}
		if code != 1 || !strings.Contains(errOut, `migration "google" interrupted with 0 of 1 users done: run the same command again to resume`) ||
			!strings.Contains(out, "interrupted: ") || strings.Contains(out+errOut, "context canceled") {
			t.Errorf("interrupted run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})

	// The target is now the user's server, mx1.example.org:993 (not in
	// the DNS): -connect gives its address, -ca-file its CA.
	writeConfig("")
	connect := []string{"-connect", "mx1.example.org:993=" + tg.addr, "-ca-file", tg.caFile}
	t.Run("connect", func(t *testing.T) {
		code, out, errOut := cli(append([]string{"migrate", "-user", "alice@example.org"}, connect...)...)
		if code != 0 || tg.messages(t, "alice@example.org") != n {
			t.Errorf("exit %d, target holds %d messages, want 0 and %d\nstdout:\n%s\nstderr:\n%s", code, tg.messages(t, "alice@example.org"), n, out, errOut)
		}
		code, _, errOut = cli("migrate", "-user", "alice@example.org", "-connect", "mx2.example.org:993="+tg.addr)
		if code != 1 || !strings.Contains(errOut, "-connect mx2.example.org:993: not the address of a source or target") {
			t.Errorf("-connect of an unknown address: exit %d\n%s", code, errOut)
		}
	})

	t.Run("wiped target", func(t *testing.T) {
		// destroy -purge-data and apply: the same server, empty.
		fresh := startMigrationServer(t, "target-pw", "alice@example.org", "bob@example.org")
		args := []string{"migrate", "-user", "alice@example.org", "-connect", "mx1.example.org:993=" + fresh.addr, "-ca-file", fresh.caFile}
		code, out, errOut := cli(args...)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("alice@example.org: copied %d messages", n)) || fresh.messages(t, "alice@example.org") != n {
			t.Errorf("exit %d, target holds %d messages; want 0 and %d\nstdout:\n%s\nstderr:\n%s", code, fresh.messages(t, "alice@example.org"), n, out, errOut)
		}
	})
}
