package main

import (
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
// timeout, with an error naming the provider, instead of hanging.
func TestPlanHangingProvider(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := silentListener(t)
	writeFile(t, filepath.Join(dir, "mail.hcl"), `
provider "cloudflare" "main" {
  api_token = "test-token"
  endpoint  = "http://`+addr+`/client/v4"
  timeout   = "1s"
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
	if !strings.Contains(msg, "provider.cloudflare.main") || !strings.Contains(msg, "no answer within 1s") {
		t.Errorf("stderr = %q, want the provider named and the timeout", msg)
	}
	if elapsed > 5*time.Second {
		t.Errorf("plan took %v, want about the 1s timeout", elapsed)
	}
}
