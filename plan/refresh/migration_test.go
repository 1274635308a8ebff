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

	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/render"
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
			[]string{"# dns.example.org.MX will be replaced", "- 1 aspmx.l.google.com.", "+ 10 mx1.example.org.", "run mailctl migrate again"}},
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
