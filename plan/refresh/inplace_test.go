package refresh_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/render"
)

// dmarcConfig is n domains at the Cloudflare emulator with DMARC policy.
func dmarcConfig(t *testing.T, cf *cfemu.Server, n int, policy string) (*config.Config, []string) {
	t.Helper()
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
	var targets []string
	for i := range n {
		d := fmt.Sprintf("d%03d.example", i)
		fmt.Fprintf(&b, "domain %q {\n  dns = provider.cloudflare.main\n  server = server.mx1\n  dmarc {\n    policy = %q\n  }\n}\n", d, policy)
		targets = append(targets, "dns."+d+"._dmarc.TXT")
	}
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(b.String())}, config.LoadOptions{Getenv: anyEnv})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg, targets
}

// TestValueChangeIsUpdate: a DMARC policy change on 200 domains at a
// provider that changes records in place plans as 200 to change (not 200
// to add and 200 to destroy), and apply changes the records in place.
func TestValueChangeIsUpdate(t *testing.T) {
	t.Parallel()
	const n = 200
	ctx := context.Background()
	cf := cfemu.New(t)
	for i := range n {
		cf.AddZone(fmt.Sprintf("d%03d.example", i))
	}
	cfg, targets := dmarcConfig(t, cf, n, "none")
	provs, err := refresh.Providers(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apply.DNS(ctx, p, provs, apply.Options{}); err != nil {
		t.Fatal(err)
	}

	cfg, targets = dmarcConfig(t, cf, n, "quarantine")
	provs, err = refresh.Providers(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err = refresh.Plan(ctx, cfg, provs, refresh.Options{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	var human bytes.Buffer
	render.Plan(&human, p, render.Style{})
	if !strings.Contains(human.String(), "Plan: 0 to add, 200 to change, 0 to destroy.") ||
		!strings.Contains(human.String(), "# dns.d000.example._dmarc.TXT will be updated in-place") {
		t.Fatalf("plan of 200 DMARC policy changes:\n%s", lastLines(human.String(), 12))
	}
	before := cf.Records("d000.example")
	cf.ResetCalls()
	res, err := apply.DNS(ctx, p, provs, apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 0 || res.Changed != n || res.Destroyed != 0 {
		t.Errorf("apply result %+v, want %d changed", res, n)
	}
	// One batch per zone (Cloudflare's batch endpoint), whose operation
	// is a patch: the record keeps its id.
	calls := cf.Calls()
	if calls["POST /client/v4/zones/{zone}/dns_records/batch"] != n || calls["POST /client/v4/zones/{zone}/dns_records"] != 0 ||
		calls["DELETE /client/v4/zones/{zone}/dns_records/{id}"] != 0 || calls["PATCH /client/v4/zones/{zone}/dns_records/{id}"] != 0 {
		t.Errorf("apply calls %v, want %d batches and no other change", calls, n)
	}
	after := cf.Records("d000.example")
	if len(before) != 1 || len(after) != 1 || after[0].ID != before[0].ID || !strings.Contains(after[0].Content, "p=quarantine") {
		t.Errorf("d000.example's records before %+v, after %+v: want the same record changed in place", before, after)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
