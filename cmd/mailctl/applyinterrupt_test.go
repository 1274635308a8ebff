package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/emulator"
	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
)

// TestApplyInterrupted: Ctrl-C during an apply whose API call hangs ends
// it promptly and says what was applied and what was not.
func TestApplyInterrupted(t *testing.T) {
	t.Parallel()
	cf := cfemu.New(t)
	var b strings.Builder
	fmt.Fprintf(&b, `provider "cloudflare" "main" {
  api_token = %q
  endpoint  = %q
}
server "mx1" {
  hostname = "mx1.example.net"
  ipv4     = "203.0.113.10"
  tls {
    acme_email = "admin@example.net"
  }
}
`, cf.Token, cf.URL)
	args := []string{"apply", "-auto-approve", "-parallelism=1", "-wait=0", "-verify=false"}
	for i := range 3 {
		d := fmt.Sprintf("d%d.example", i)
		cf.AddZone(d)
		fmt.Fprintf(&b, "domain %q {\n  dns = provider.cloudflare.main\n  server = server.mx1\n}\n", d)
		args = append(args, "-target=dns."+d+"._dmarc.TXT")
	}
	// d0's DMARC is changed in place (a batch with one patch); d1's batch
	// (zones one at a time: -parallelism=1) hangs.
	const batch = "POST /client/v4/zones/{zone}/dns_records/batch"
	cf.Seed("d0.example", cfemu.Record{Name: "_dmarc", Type: "TXT", Content: `"v=DMARC1; p=reject"`, TTL: 3600})
	cf.Inject(emulator.Fault{Pattern: batch, Hang: true, Skip: 1})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), b.String(), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for cf.Count(batch) < 2 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		cancel() // Ctrl-C
	}()
	e, out, errb := testEnv(dir)
	done := make(chan int)
	go func() { done <- run(ctx, args, e) }()
	var code int
	select {
	case code = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("apply still runs 20s after Ctrl-C")
	}
	if code != 1 {
		t.Errorf("interrupted apply = %d, want 1", code)
	}
	stdout := out.String()
	notApplied := stdout[strings.Index(stdout, "Not applied")+1:]
	if !strings.Contains(stdout, "Apply interrupted. Resources: 0 added, 1 changed, 0 destroyed.") ||
		!strings.Contains(stdout, "Not applied") ||
		!strings.Contains(notApplied, "  - dns.d1.example._dmarc.TXT\n") || !strings.Contains(notApplied, "  - dns.d2.example._dmarc.TXT\n") ||
		strings.Contains(notApplied, "dns.d0.example") {
		t.Errorf("interrupted apply output:\n%s\nstderr:\n%s", stdout, errb)
	}
	if !strings.Contains(errb.String(), "context canceled") {
		t.Errorf("stderr = %q, want the interruption", errb)
	}
}
