package refresh_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
)

// BenchmarkPlan200Domains plans 200 domains held by one Cloudflare account
// (the emulator, over real HTTP), each zone already holding 30 records. It
// reports API calls per zone per plan.
func BenchmarkPlan200Domains(b *testing.B) {
	const n = 200
	cf := cfemu.New(b)
	var src strings.Builder
	fmt.Fprintf(&src, "provider \"cloudflare\" \"cf\" {\n  api_token = %q\n  endpoint = %q\n}\n", cf.Token, cf.URL)
	src.WriteString("server \"mx1\" {\n  hostname = \"mx1.example.org\"\n  ipv4 = \"203.0.113.10\"\n  tls {\n    acme_email = \"a@example.org\"\n  }\n}\n")
	for i := range n {
		d := fmt.Sprintf("d%03d.example", i)
		cf.AddZone(d)
		for j := range 30 {
			cf.Seed(d, cfemu.Record{Type: "A", Name: fmt.Sprintf("h%d", j), Content: "192.0.2.1", TTL: 300})
		}
		fmt.Fprintf(&src, "domain %q {\n  dns = provider.cloudflare.cf\n  server = server.mx1\n}\n", d)
	}
	cfg, diags := config.LoadSources(b.TempDir(), map[string][]byte{"mail.hcl": []byte(src.String())}, config.LoadOptions{})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	provs, err := refresh.Providers(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cf.ResetCalls()
	b.ResetTimer()
	for b.Loop() {
		p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Parallelism: 10})
		if err != nil {
			b.Fatal(err)
		}
		// Per domain: MX, SPF, DMARC, autoconfig, autodiscover, 4 mail
		// SRV, 2 CalDAV/CardDAV SRV and their 2 TXT, 2 DKIM records to
		// create.
		if add, _, _ := p.Counts(); add != n*15 {
			b.Fatalf("%d to add, want %d", add, n*15)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cf.Total())/float64(b.N)/n, "calls/zone")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/plan")
}
