package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
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

// startMigrationTarget runs the bundled IMAP server (server/store and
// server/imap) on a loopback implicit-TLS port for user/password and
// returns its address, the PEM file of its certificate and its store.
func startMigrationTarget(t *testing.T, user, password string) (string, string, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.EnsureUser(ctx, user, 0); err != nil {
		t.Fatal(err)
	}
	h, err := auth.HashPassword(password, auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.NewAuthenticator([]auth.User{{Address: user, PasswordHash: h}}, auth.AuthenticatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "target-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := imap.New(st, authn, imap.Options{ImplicitTLS: true, Logger: slog.New(slog.DiscardHandler),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	return ln.Addr().String(), caFile, st
}

const migrateHCL = `
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
  password_hash = %q
}
migration "google" {
  source {
    address = %q
    ca_file = %q
  }
  target {
    address = %q
    ca_file = %q
  }
  user "alice@example.org" {
    login           = "alice@gmail.example"
    password        = env("ALICE_GOOGLE_APP_PASSWORD")
    target_password = env("ALICE_PASSWORD")
  }
}
`

// TestMigrateCommand runs `mailctl migrate` from a configuration whose
// migration block reads a Dovecot source and writes the bundled server:
// -dry-run writes nothing, a run copies everything and records its state
// under .mailctl/migrate, a second run copies 0, and wrong input exits 1.
func TestMigrateCommand(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: "alice@gmail.example", Password: "app-pw"})
	fx := d.FillGmailLike(t, "alice@gmail.example", testenv.GmailOptions{Messages: 300, Seed: 2})
	addr, caFile, st := startMigrationTarget(t, "alice@example.org", "target-pw")
	hash, err := auth.HashPassword("target-pw", auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hcl := fmt.Sprintf(migrateHCL, hash, d.TLSAddr, d.CAFile, addr, caFile)
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"ALICE_GOOGLE_APP_PASSWORD": "app-pw", "ALICE_PASSWORD": "target-pw"}
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		e := &env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: dir,
			Getenv: func(k string) string { return secrets[k] }}
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

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   []string
		stderr   string
		messages int
	}{
		{"dry run", []string{"-dry-run"}, 0, []string{`Migration "google", phase presync: full copy`, fmt.Sprintf("alice@example.org: would copy %d messages", n)}, "alice@example.org: INBOX", 0},
		{"copy", nil, 0, []string{fmt.Sprintf("alice@example.org: copied %d messages", n)}, "", n},
		{"second run", []string{"-user", "alice@example.org"}, 0, []string{"alice@example.org: copied 0 messages"}, "", n},
		{"unknown user", []string{"-user", "bob@example.org"}, 1, nil, "not a user of migration", n},
		{"unknown migration", []string{"-name", "other"}, 1, nil, `no migration "other"`, n},
		{"bad parallel", []string{"-parallel", "0"}, 1, nil, "want at least 1", n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, out)
				}
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.stderr, errOut)
			}
			if got := messages(); got != tc.messages {
				t.Errorf("target holds %d messages, want %d", got, tc.messages)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, ".mailctl", "migrate", "google.db")); err != nil {
		t.Errorf("state file: %v", err)
	}

	t.Run("wrong source password", func(t *testing.T) {
		secrets["ALICE_GOOGLE_APP_PASSWORD"] = "wrong"
		code, out, _ := cli()
		if code != 1 || !strings.Contains(out, "log in to") {
			t.Errorf("exit code = %d, stdout:\n%s\nwant 1 and the login failure", code, out)
		}
		if strings.Contains(out, "wrong") {
			t.Errorf("the password appears in the output:\n%s", out)
		}
	})
}
