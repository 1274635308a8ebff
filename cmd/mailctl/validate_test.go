package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
)

// secretsConfig uses env() secrets for the DNS provider and the relay.
const secretsConfig = `
provider "cloudflare" "main" {
  api_token = env("CF_TOKEN")
  endpoint  = "ENDPOINT"
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  ssh {
    address  = "SSHADDR"
    host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
  }
  tls {
    acme_email = "admin@example.org"
  }
  relay {
    address  = "smtp.example.net:587"
    username = env("RELAY_USER")
    password = env("RELAY_PASSWORD")
  }
}
domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mx1
}
`

// TestValidateWithoutSecrets: validate needs no secret (an unset env() is
// fine there, as terraform validate needs no credentials), plan does;
// plan -refresh=false contacts neither the DNS API nor the server.
func TestValidateWithoutSecrets(t *testing.T) {
	t.Parallel()
	var apiCalls, sshConns atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiCalls.Add(1)
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer api.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sshConns.Add(1)
			c.Close()
		}
	}()
	dir := t.TempDir()
	conf := strings.NewReplacer("ENDPOINT", api.URL, "SSHADDR", ln.Addr().String()).Replace(secretsConfig)
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf, 0o644)

	e, out, errb := testEnv(dir)
	if code := runCLI(t, e, "validate"); code != 0 || !strings.Contains(out.String(), "Success!") || errb.Len() > 0 {
		t.Errorf("validate without secrets = %d\n%s%s", code, out, errb)
	}
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "validate", "-json"); code != 0 || !strings.Contains(out.String(), `"valid": true`) {
		t.Errorf("validate -json without secrets = %d\n%s", code, out)
	}
	// plan needs them: the error names the variable.
	e, _, errb = testEnv(dir)
	if code := runCLI(t, e, "plan", "-refresh=false"); code != 1 || !strings.Contains(errb.String(), "environment variable CF_TOKEN is not set") {
		t.Errorf("plan without secrets = %d\n%s", code, errb)
	}
	// With them, -refresh=false plans without a single network call.
	e, out, errb = testEnv(dir)
	e.Getenv = func(name string) string { return "secret-" + name }
	if code := runCLI(t, e, "plan", "-refresh=false"); code != 0 || !strings.Contains(out.String(), "to add") {
		t.Errorf("plan -refresh=false = %d\n%s%s", code, out, errb)
	}
	if n, m := apiCalls.Load(), sshConns.Load(); n != 0 || m != 0 {
		t.Errorf("plan -refresh=false made %d API request(s) and %d SSH connection(s), want none", n, m)
	}
}

// TestValidateWarnings: the placeholder hash init writes, a private IPv4
// on a server reached over SSH and a lab on a non-loopback address are
// warnings: validate succeeds and says why.
func TestValidateWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, repl, with, want string
	}{
		{"private IPv4", `"203.0.113.10"`, `"192.168.1.10"`, `Warning: Private IPv4 address: 192.168.1.10 is not a public address`},
		{"placeholder hash", `HASH`, config.PlaceholderPasswordHash, `Warning: Placeholder password hash: alice@example.org has the placeholder hash that mailctl init wrote`},
		{"local lab off loopback", "  tls {", "  local {}\n  tls {", `Warning: Local server on a non-loopback address`},
	}
	base := labConfig + `user "alice@example.org" { password_hash = "HASH" }` + "\n"
	for _, tc := range tests {
		dir := t.TempDir()
		conf := strings.Replace(base, tc.repl, tc.with, 1)
		conf = strings.Replace(conf, "HASH", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ", 1)
		writeFile(t, filepath.Join(dir, "mail.hcl"), conf, 0o644)
		e, out, errb := testEnv(dir)
		if code := runCLI(t, e, "validate"); code != 0 || !strings.Contains(errb.String(), tc.want) || !strings.Contains(out.String(), "Success!") {
			t.Errorf("%s: validate = %d, want 0 and %q\nstdout: %s\nstderr: %s", tc.name, code, tc.want, out, errb)
		}
	}
	// No warning for a correct configuration.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), strings.Replace(base, "HASH", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ", 1), 0o644)
	e, _, errb := testEnv(dir)
	if code := runCLI(t, e, "validate"); code != 0 || errb.Len() > 0 {
		t.Errorf("validate of a clean configuration = %d:\n%s", code, errb)
	}
}
