package refresh_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/render"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnsmem"
)

var update = flag.Bool("update", false, "rewrite golden files")

func anyEnv(string) string { return "test-secret" }

func loadDir(t *testing.T, dir string) *config.Config {
	t.Helper()
	cfg, diags := config.Load(dir, config.LoadOptions{Getenv: anyEnv})
	if diags.HasErrors() {
		t.Fatalf("load %s: %v", dir, diags)
	}
	return cfg
}

// memoryProviders gives every DNS provider of cfg an in-memory provider
// holding the zones of its domains.
func memoryProviders(cfg *config.Config) map[string]dns.Provider {
	zones := map[string][]string{}
	for _, d := range cfg.Domains {
		z := d.Zone
		if z == "" {
			z = d.Name
		}
		zones[d.DNS.Addr()] = append(zones[d.DNS.Addr()], z)
	}
	out := map[string]dns.Provider{}
	for k, zs := range zones {
		out[k] = dnsmem.New(zs...)
	}
	return out
}

// TestExamplesPlan plans each example against empty in-memory zones, checks
// the human and JSON views against golden files, applies, and checks that a
// second plan has no changes but the DKIM keys that only the server knows.
func TestExamplesPlan(t *testing.T) {
	t.Parallel()
	dirs, _ := filepath.Glob("../../examples/*/mail.hcl")
	more, _ := filepath.Glob("../../examples/*/*.hcl")
	seen := map[string]bool{}
	for _, f := range append(dirs, more...) {
		dir := filepath.Dir(f)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cfg := loadDir(t, dir)
			provs := memoryProviders(cfg)
			p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var human, js bytes.Buffer
			render.Plan(&human, p, render.Style{})
			if err := render.PlanJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", name, "plan.txt"), human.Bytes())
			golden(t, filepath.Join("testdata", name, "plan.json"), js.Bytes())

			// Apply with the DKIM keys a server would report, then plan again.
			keys := fakeKeys(cfg)
			p, _, err = refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := apply.DNS(ctx, p, provs, apply.Options{}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			p2, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			if p2.HasChanges() {
				var b bytes.Buffer
				render.Plan(&b, p2, render.Style{})
				t.Errorf("second plan has changes:\n%s", b.String())
			}
		})
	}
	if len(seen) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(seen))
	}
}

func fakeKeys(cfg *config.Config) []desired.DKIMKey {
	var keys []desired.DKIMKey
	for _, d := range cfg.Domains {
		for _, sel := range desired.DKIMSelectors(d.DKIM.Selector) {
			keys = append(keys, desired.DKIMKey{Domain: d.Name, Selector: sel, Record: "v=DKIM1; k=ed25519; p=" + strings.Repeat("A", 43) + "="})
		}
	}
	return keys
}

const zoneSrc = `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls { acme_email = "admin@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
domain "example.org.uk" {
  dns    = provider.zonefile.z
  server = server.mx1
}
`

func loadSrc(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: anyEnv})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

func rr(name, typ, data string, ttl int) libdns.RR {
	return libdns.RR{Name: name, Type: typ, Data: data, TTL: time.Duration(ttl) * time.Second}
}

// TestForeignRecords: a zone that starts with Google's MX and site
// verification: the MX are replaced (shown as such), the foreign TXT and
// other names survive apply, and a second plan is empty.
func TestForeignRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := loadSrc(t, zoneSrc)
	mem := dnsmem.New("example.org.uk")
	foreign := []libdns.RR{
		rr("@", "TXT", "google-site-verification=abc123", 300),
		rr("www", "A", "192.0.2.80", 300),
		rr("google._domainkey", "TXT", "v=DKIM1; k=rsa; p=GOOGLE", 300),
	}
	mem.Seed("example.org",
		rr("@", "MX", "1 aspmx.l.google.com.", 300),
		rr("@", "MX", "5 alt1.aspmx.l.google.com.", 300),
		rr("@", "TXT", "v=spf1 include:_spf.google.com ~all", 300),
	)
	mem.Seed("example.org", foreign...)
	provs := map[string]dns.Provider{"provider.zonefile.z": mem}
	keys := fakeKeys(cfg)
	p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	mx := find(p, "dns.example.org.MX")
	// A zone file changes a set in one write: an update in place.
	if mx == nil || mx.Action != plan.Update || len(mx.Before.Values) != 2 {
		t.Fatalf("MX change = %+v, want Google's two MX updated in place", mx)
	}
	spf := find(p, "dns.example.org.TXT")
	if spf == nil || spf.Action != plan.Update || spf.Before.Values[0] != "v=spf1 include:_spf.google.com ~all" {
		t.Fatalf("SPF change = %+v, want the Google SPF updated in place", spf)
	}
	for _, c := range p.Changes {
		if c.Before != nil {
			for _, v := range c.Before.Values {
				if strings.Contains(v, "google-site-verification") || strings.Contains(v, "GOOGLE") {
					t.Errorf("%s plans to touch a foreign record %q", c.Address, v)
				}
			}
		}
	}
	var human bytes.Buffer
	render.Plan(&human, p, render.Style{})
	golden(t, "testdata/foreign/plan.txt", human.Bytes())

	if _, err := apply.DNS(ctx, p, provs, apply.Options{}); err != nil {
		t.Fatal(err)
	}
	after, _ := mem.Records(ctx, "example.org")
	for _, f := range foreign {
		if !contains(after, f) {
			t.Errorf("foreign record %v is gone after apply", f)
		}
	}
	p2, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if p2.HasChanges() {
		t.Errorf("second plan has changes")
	}
}

// TestTarget: -target selects a domain's records and reads only its zone;
// dns.example.org does not select example.org.uk.
func TestTarget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := loadSrc(t, zoneSrc)
	mem := dnsmem.New("example.org", "example.org.uk")
	provs := map[string]dns.Provider{"provider.zonefile.z": mem}
	p, st, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Targets: []string{"dns.example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Changes {
		if c.Domain != "example.org" {
			t.Errorf("target dns.example.org selected %s", c.Address)
		}
	}
	if len(st.Zones) != 1 {
		t.Errorf("targeted plan read %d zones, want 1", len(st.Zones))
	}
	p, _, err = refresh.Plan(ctx, cfg, provs, refresh.Options{Targets: []string{"dns.example.org._dmarc.TXT"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Address != "dns.example.org._dmarc.TXT" {
		t.Errorf("target of one address selected %d changes", len(p.Changes))
	}
}

// TestTTLOnlyChange shows a TTL change as an update and applies it.
func TestTTLOnlyChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := loadSrc(t, zoneSrc)
	mem := dnsmem.New("example.org.uk")
	mem.Seed("example.org", rr("@", "MX", "10 mx1.example.org.", 300))
	provs := map[string]dns.Provider{"provider.zonefile.z": mem}
	p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Targets: []string{"dns.example.org.MX"}})
	if err != nil {
		t.Fatal(err)
	}
	c := find(p, "dns.example.org.MX")
	if c == nil || c.Action != plan.Update || c.Before.TTL != 300 || c.After.TTL != 3600 {
		t.Fatalf("MX change = %+v, want TTL update 300 -> 3600", c)
	}
	if _, err := apply.DNS(ctx, p, provs, apply.Options{}); err != nil {
		t.Fatal(err)
	}
	recs, _ := mem.Records(ctx, "example.org")
	if len(recs) != 1 || recs[0].TTL != time.Hour {
		t.Errorf("after apply: %v", recs)
	}
}

func find(p *plan.Plan, addr string) *plan.Change {
	for i := range p.Changes {
		if p.Changes[i].Address == addr {
			return &p.Changes[i]
		}
	}
	return nil
}

func contains(rrs []libdns.RR, want libdns.RR) bool {
	for _, r := range rrs {
		if r.Name == want.Name && r.Type == want.Type && r.Data == want.Data {
			return true
		}
	}
	return false
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestDestroy removes every owned record and nothing else.
func TestDestroy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := loadSrc(t, zoneSrc)
	mem := dnsmem.New("example.org", "example.org.uk")
	mem.Seed("example.org", rr("@", "TXT", "google-site-verification=abc123", 300))
	provs := map[string]dns.Provider{"provider.zonefile.z": mem}
	keys := fakeKeys(cfg)
	p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apply.DNS(ctx, p, provs, apply.Options{}); err != nil {
		t.Fatal(err)
	}
	d, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Destroy: true})
	if err != nil {
		t.Fatal(err)
	}
	if add, change, destroy := d.Counts(); add != 0 || change != 0 || destroy < 20 {
		t.Fatalf("destroy plan: %d add, %d change, %d destroy", add, change, destroy)
	}
	if _, err := apply.DNS(ctx, d, provs, apply.Options{}); err != nil {
		t.Fatal(err)
	}
	left, _ := mem.Records(ctx, "example.org")
	if len(left) != 1 || left[0].Data != "google-site-verification=abc123" {
		t.Errorf("after destroy, example.org holds %v; want only the foreign TXT", left)
	}
}
