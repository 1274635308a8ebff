package refresh_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	mdns "github.com/miekg/dns"

	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/render"
	"github.com/mailctl/mailctl/providers/dns"
)

// googleZone seeds a zone as Google Workspace leaves it: the five classic
// MX, Google's SPF, a site verification and Google's DKIM key.
func googleZone(cf *cfemu.Server, zone string) {
	cf.AddZone(zone)
	for _, mx := range []struct {
		prio uint16
		host string
	}{{1, "aspmx.l.google.com"}, {5, "alt1.aspmx.l.google.com"}, {5, "alt2.aspmx.l.google.com"},
		{10, "alt3.aspmx.l.google.com"}, {10, "alt4.aspmx.l.google.com"}} {
		cf.Seed(zone, cfemu.Record{Type: "MX", Name: "@", Content: mx.host, Priority: &mx.prio, TTL: 3600})
	}
	cf.Seed(zone, cfemu.Record{Type: "TXT", Name: "@", Content: "v=spf1 include:_spf.google.com ~all", TTL: 3600})
	cf.Seed(zone, cfemu.Record{Type: "TXT", Name: "@", Content: "google-site-verification=rXOxyZounnZasA8Z7oaD3c14JdjS9aKSWvsR1EbUSIQ", TTL: 3600})
	cf.Seed(zone, cfemu.Record{Type: "TXT", Name: "google._domainkey", Content: "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAGOOGLE", TTL: 3600})
}

// googleMX are Google's MX as viewZone lists them (sorted as strings).
var googleMX = []string{"1 aspmx.l.google.com", "10 alt3.aspmx.l.google.com", "10 alt4.aspmx.l.google.com",
	"5 alt1.aspmx.l.google.com", "5 alt2.aspmx.l.google.com"}

// migrationConfig is examples/migration at a phase, its Cloudflare
// provider pointed (through the environment, so that the configuration
// digest in the golden plans is stable) at the emulator.
func migrationConfig(t *testing.T, cf *cfemu.Server, phase string) *config.Config {
	t.Helper()
	src, err := os.ReadFile("../../examples/migration/mail.hcl")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(
		`phase = "presync"`, fmt.Sprintf("phase = %q", phase),
		`api_token = env("CLOUDFLARE_API_TOKEN")`, `api_token = env("CLOUDFLARE_API_TOKEN")`+"\n  endpoint  = env(\"CF_ENDPOINT\")",
	).Replace(string(src))
	if !strings.Contains(s, "CF_ENDPOINT") || !strings.Contains(s, fmt.Sprintf("phase = %q", phase)) {
		t.Fatal("examples/migration/mail.hcl no longer has the lines this test replaces")
	}
	env := map[string]string{"CLOUDFLARE_API_TOKEN": cf.Token, "CF_ENDPOINT": cf.URL}
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(s)}, config.LoadOptions{
		Getenv: func(k string) string { return cmpOr(env[k], "test-secret") }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// zoneView is what the test checks of a zone after each apply.
type zoneView struct {
	mx      []string // "prio host", sorted
	mxTTL   []int    // the distinct TTLs of the MX
	spf     string
	aTTL    int
	mtaSTS  bool // _mta-sts TXT published
	foreign []string
}

func viewZone(cf *cfemu.Server, zone string) zoneView {
	var v zoneView
	for _, r := range cf.Records(zone) {
		r.Content = strings.Trim(r.Content, `"`) // libdns/cloudflare writes TXT quoted
		switch {
		case r.Type == "MX":
			v.mx = append(v.mx, fmt.Sprintf("%d %s", *r.Priority, r.Content))
			if !slices.Contains(v.mxTTL, r.TTL) {
				v.mxTTL = append(v.mxTTL, r.TTL)
			}
		case r.Type == "TXT" && r.Name == zone && strings.HasPrefix(r.Content, "v=spf1"):
			v.spf = r.Content
		case r.Type == "A" && r.Name == "mx1."+zone:
			v.aTTL = r.TTL
		case r.Type == "TXT" && r.Name == "_mta-sts."+zone:
			v.mtaSTS = true
		case strings.Contains(r.Content, "google-site-verification") || strings.HasPrefix(r.Name, "google._domainkey"):
			v.foreign = append(v.foreign, fmt.Sprintf("%s %s %d", r.Name, r.Content[:24], r.TTL))
		}
	}
	slices.Sort(v.mx)
	slices.Sort(v.foreign)
	return v
}

// TestMigrationPhases plans and applies examples/migration through its
// three phases, in order, against the Cloudflare emulator holding a zone
// that starts at Google: presync lowers the MX TTL but keeps Google's MX
// and adds our server to SPF beside Google; cutover replaces the MX;
// done raises the TTLs and drops Google's SPF include. Foreign records are
// never touched, each plan matches its golden files, and a second plan
// after each apply has no changes.
func TestMigrationPhases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cf := cfemu.New(t)
	googleZone(cf, "example.org")
	foreign := []string{
		"example.org google-site-verification 3600",
		"google._domainkey.example.org v=DKIM1; k=rsa; p=MIIBIj 3600",
	}
	steps := []struct {
		phase string
		want  zoneView
		notes []string // in the plan before apply
	}{
		{config.PhasePresync, zoneView{
			mx: googleMX, mxTTL: []int{300}, aTTL: 300, foreign: foreign,
			spf: "v=spf1 ip4:203.0.113.10 include:_spf.google.com ~all"},
			[]string{`wait 1h (the old MX TTL) after this apply before phase = "cutover"`, "include:_spf.google.com stays until"}},
		{config.PhaseCutover, zoneView{
			mx: []string{"10 mx1.example.org"}, mxTTL: []int{300}, aTTL: 300, mtaSTS: true, foreign: foreign,
			spf: "v=spf1 ip4:203.0.113.10 include:_spf.google.com ~all"},
			[]string{"# dns.example.org.MX will be updated in-place", "- 1 aspmx.l.google.com.", "+ 10 mx1.example.org.", "run mailctl migrate again"}},
		{config.PhaseDone, zoneView{
			mx: []string{"10 mx1.example.org"}, mxTTL: []int{3600}, aTTL: 3600, mtaSTS: true, foreign: foreign,
			spf: "v=spf1 ip4:203.0.113.10 ~all"},
			[]string{"ttl: 300 -> 3600", "DMARC is at p=none: it can now be raised to quarantine", "MTA-STS is in testing mode"}},
	}
	for _, st := range steps {
		// Phases run in order on the same zone: no t.Parallel here.
		t.Run(st.phase, func(t *testing.T) {
			cfg := migrationConfig(t, cf, st.phase)
			provs, err := refresh.Providers(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			keys := fakeKeys(cfg)
			p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			var human, js bytes.Buffer
			render.Plan(&human, p, render.Style{})
			if err := render.PlanJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join("testdata", "migration-"+st.phase)
			golden(t, filepath.Join(dir, "plan.txt"), human.Bytes())
			golden(t, filepath.Join(dir, "plan.json"), js.Bytes())
			for _, n := range st.notes {
				if !strings.Contains(human.String(), n) {
					t.Errorf("plan lacks %q", n)
				}
			}
			if strings.Contains(human.String()+js.String(), "google-site-verification") {
				t.Errorf("the plan shows the foreign site verification record")
			}

			if _, err := apply.DNS(ctx, p, provs, apply.Options{}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			got := viewZone(cf, "example.org")
			if fmt.Sprint(got) != fmt.Sprint(st.want) {
				t.Errorf("zone after apply:\n got %+v\nwant %+v", got, st.want)
			}

			p2, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			render.Plan(&again, p2, render.Style{})
			if p2.HasChanges() {
				t.Errorf("second plan has changes:\n%s", again.String())
			}
			golden(t, filepath.Join(dir, "replan.txt"), again.Bytes())
		})
	}
}

// TestMigrationPhasesKnot runs the three phases against a real Knot DNS
// through the rfc2136 provider (UPDATE to write, AXFR to read), on a zone
// whose MX is Google's newer single `1 smtp.google.com.`, and checks what
// Knot answers after each apply: values and TTLs.
func TestMigrationPhasesKnot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	knot := testenv.StartKnot(t, "example.org")
	seed, err := dns.New("rfc2136", dns.Config{Name: "seed", Attrs: map[string]string{
		"server": knot.Addr, "tsig_name": knot.TSIGName, "tsig_alg": knot.TSIGAlg, "tsig_key": knot.TSIGSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Apply(ctx, "example.org", nil, []libdns.RR{
		{Name: "@", Type: "MX", Data: "1 smtp.google.com.", TTL: time.Hour},
		{Name: "@", Type: "TXT", Data: "v=spf1 include:_spf.google.com ~all", TTL: time.Hour},
		{Name: "@", Type: "TXT", Data: "google-site-verification=rXOxyZounnZasA8Z7oaD3c14JdjS9aKSWvsR1EbUSIQ", TTL: time.Hour},
	}); err != nil {
		t.Fatalf("seed Knot: %v", err)
	}
	src, err := os.ReadFile("../../examples/migration/mail.hcl")
	if err != nil {
		t.Fatal(err)
	}
	// answers returns "TTL data" of each record Knot serves at name/type,
	// sorted.
	answers := func(name string, qtype uint16) []string {
		var out []string
		for _, rr := range knot.Query(t, name, qtype) {
			out = append(out, fmt.Sprintf("%d %s", rr.Header().Ttl, strings.TrimPrefix(rr.String(), rr.Header().String())))
		}
		slices.Sort(out)
		return out
	}
	steps := []struct {
		phase   string
		mx, txt []string
		a       []string
	}{
		{config.PhasePresync, []string{"300 1 smtp.google.com."},
			[]string{`3600 "google-site-verification=rXOxyZounnZasA8Z7oaD3c14JdjS9aKSWvsR1EbUSIQ"`, `3600 "v=spf1 ip4:203.0.113.10 include:_spf.google.com ~all"`},
			[]string{"300 203.0.113.10"}},
		{config.PhaseCutover, []string{"300 10 mx1.example.org."},
			[]string{`3600 "google-site-verification=rXOxyZounnZasA8Z7oaD3c14JdjS9aKSWvsR1EbUSIQ"`, `3600 "v=spf1 ip4:203.0.113.10 include:_spf.google.com ~all"`},
			[]string{"300 203.0.113.10"}},
		{config.PhaseDone, []string{"3600 10 mx1.example.org."},
			[]string{`3600 "google-site-verification=rXOxyZounnZasA8Z7oaD3c14JdjS9aKSWvsR1EbUSIQ"`, `3600 "v=spf1 ip4:203.0.113.10 ~all"`},
			[]string{"3600 203.0.113.10"}},
	}
	for _, st := range steps {
		t.Run(st.phase, func(t *testing.T) {
			conf := strings.NewReplacer(
				`phase = "presync"`, fmt.Sprintf("phase = %q", st.phase),
				`api_token = env("CLOUDFLARE_API_TOKEN")`, "",
				`provider "cloudflare" "main" {`, fmt.Sprintf("provider \"rfc2136\" \"knot\" {\n  server = %q\n  tsig_name = %q\n  tsig_alg = %q\n  tsig_key = env(\"TSIG_SECRET\")\n",
					knot.Addr, knot.TSIGName, knot.TSIGAlg),
				`dns    = provider.cloudflare.main`, `dns = provider.rfc2136.knot`,
			).Replace(string(src))
			cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(conf)}, config.LoadOptions{
				Getenv: func(k string) string {
					return cmpOr(map[string]string{"TSIG_SECRET": knot.TSIGSecret}[k], "test-secret")
				}})
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			provs, err := refresh.Providers(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			keys := fakeKeys(cfg)
			p, _, err := refresh.Plan(ctx, cfg, provs, refresh.Options{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := apply.DNS(ctx, p, provs, apply.Options{}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			for _, q := range []struct {
				name  string
				qtype uint16
				want  []string
			}{{"example.org", mdns.TypeMX, st.mx}, {"example.org", mdns.TypeTXT, st.txt}, {"mx1.example.org", mdns.TypeA, st.a}} {
				if got := answers(q.name, q.qtype); !slices.Equal(got, q.want) {
					t.Errorf("Knot %s %s = %q, want %q", q.name, mdns.TypeToString[q.qtype], got, q.want)
				}
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
}
