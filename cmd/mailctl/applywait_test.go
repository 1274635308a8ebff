package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
)

// syncBuffer is an output buffer read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestApplyWaitsForNameServers: apply to a Knot primary whose secondary
// lags fails at the -wait bound naming the secondary and the fix; a later
// apply waits while the secondary lags and completes once it transferred
// the zone.
func TestApplyWaitsForNameServers(t *testing.T) {
	t.Parallel()
	primary := testenv.StartKnot(t, "example.org")
	secondary := testenv.StartKnotSecondary(t, primary, "example.org")
	dir := t.TempDir()
	conf := func(policy string) string {
		return fmt.Sprintf(`
provider "rfc2136" "knot" {
  server    = %q
  tsig_name = %q
  tsig_key  = env("TSIG_SECRET")
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls {
    acme_email = "admin@example.org"
  }
}
domain "example.org" {
  dns    = provider.rfc2136.knot
  server = server.mx1
  dmarc {
    policy = %q
  }
}
`, primary.Addr, primary.TSIGName, policy)
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf("none"), 0o644)
	endpoints := []string{"-resolver", primary.Addr,
		"-connect", "ns1.example.org:53=" + primary.Addr, "-connect", "NS2.example.org:53=" + secondary.Addr}
	newEnv := func() (*env, *syncBuffer, *syncBuffer) {
		var out, errb syncBuffer
		e := &env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: dir,
			Getenv: func(k string) string {
				if k == "TSIG_SECRET" {
					return primary.TSIGSecret
				}
				return ""
			}}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", &out, &errb)
			}
		})
		return e, &out, &errb
	}

	e, out, errb := newEnv()
	args := append([]string{"apply", "-auto-approve", "-target=dns", "-wait=1s"}, endpoints...)
	if code := runCLI(t, e, args...); code != 1 {
		t.Fatalf("apply while the secondary lags = %d, want 1", code)
	}
	for _, want := range []string{
		"Error: DNS propagation not complete after 1s: 1/2 name servers serve the new records",
		"Error: ns2.example.org (zone example.org): serial ",
		"example.org MX missing",
		"-wait=0 to skip the wait",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if !strings.Contains(out.String(), "Waiting for DNS propagation: 1/2 name servers serve the new records (ns2.example.org: serial ") ||
		!strings.Contains(out.String(), "Apply failed.") {
		t.Errorf("stdout lacks the progress line or the failure")
	}

	// The records are at the primary: a new apply only changes DMARC, and
	// waits for the secondary until it is refreshed.
	secondary.Refresh(t, "example.org")
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf("quarantine"), 0o644)
	e, out, _ = newEnv()
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), append([]string{"apply", "-auto-approve", "-target=dns", "-wait=1m"}, endpoints...), e)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "_dmarc.example.org TXT old") {
		select {
		case code := <-done:
			t.Fatalf("apply = %d before the secondary was refreshed", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("apply does not say that the secondary lags")
		}
		time.Sleep(20 * time.Millisecond)
	}
	secondary.Refresh(t, "example.org")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("apply after the refresh = %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("apply did not return after the refresh")
	}
	o := out.String()
	if !strings.Contains(o, "DNS propagation complete: 2/2 name servers serve the new records") ||
		strings.Index(o, "DNS propagation complete") > strings.Index(o, "Apply complete!") {
		t.Errorf("apply output lacks the wait before the end")
	}
}
