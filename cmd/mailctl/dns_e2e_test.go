package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	mdns "github.com/miekg/dns"

	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
	hzemu "github.com/mailctl/mailctl/internal/emulator/hetzner"
	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/providers/dns"
)

// TestMultiDomainAgainstEmulatorAndKnot runs examples/multi-domain with its
// Cloudflare provider pointed at the Cloudflare emulator, its RFC 2136
// provider at a real Knot DNS and its Hetzner reverse DNS at the Hetzner
// emulator, targeted at DNS and PTR (the server itself is deployed by the
// VM tests): plan shows the full record set, apply writes it, Knot serves
// it, foreign records survive, and a second plan has no changes.
func TestMultiDomainAgainstEmulatorAndKnot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cf := cfemu.New(t)
	cf.AddZone("example.org")
	cf.AddZone("example.net")
	cf.Seed("example.org", cfemu.Record{Type: "TXT", Name: "@", Content: "google-site-verification=abc123", TTL: 300})
	cf.Seed("example.org", cfemu.Record{Type: "MX", Name: "@", Content: "aspmx.l.google.com", Priority: pointer(uint16(1)), TTL: 300})
	knot := testenv.StartKnot(t, "example.com")
	hz := hzemu.New(t)
	hz.AddServer("mx1", "203.0.113.20", "2001:db8::/64")

	// A foreign record in the Knot zone, written with the real adapter.
	kp, err := dns.New("rfc2136", dns.Config{Name: "seed", Attrs: map[string]string{
		"server": knot.Addr, "tsig_name": knot.TSIGName, "tsig_alg": knot.TSIGAlg, "tsig_key": knot.TSIGSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Apply(ctx, "example.com", nil, []libdns.RR{{Name: "www", Type: "A", Data: "192.0.2.80", TTL: time.Hour}}); err != nil {
		t.Fatalf("seed Knot: %v", err)
	}

	src, err := os.ReadFile("../../examples/multi-domain/mail.hcl")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		`api_token = env("CLOUDFLARE_API_TOKEN")`, `api_token = env("CLOUDFLARE_API_TOKEN")`+"\n  endpoint = \""+cf.URL+"\"",
		`"ns1.example.com:53"`, `"`+knot.Addr+`"`,
		`tsig_name = "mailctl."`, `tsig_name = "`+knot.TSIGName+`"`,
		`token = env("HCLOUD_TOKEN")`, `token = env("HCLOUD_TOKEN")`+"\n  endpoint = \""+hz.Endpoint+"\"",
	).Replace(string(src))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf, 0o644)
	vars := map[string]string{
		"CLOUDFLARE_API_TOKEN": cf.Token, "TSIG_SECRET": knot.TSIGSecret,
		"HCLOUD_TOKEN": hz.Token, "RELAY_USER": "relay-user", "RELAY_PASSWORD": "relay-password",
	}
	// newEnv returns an env with the secrets set; stdout and stderr go to
	// one buffer, printed when the test fails.
	newEnv := func() (*env, *bytes.Buffer) {
		e, out, _ := testEnv(dir)
		e.Getenv = func(k string) string { return vars[k] }
		e.Stderr = out
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
		return e, out
	}

	e, buf := newEnv()
	if code := runCLI(t, e, "plan", "-detailed-exitcode", "-target=dns", "-target=ptr"); code != 2 {
		t.Fatalf("first plan = %d, want 2", code)
	}
	planOut := buf.String()
	for _, want := range []string{
		"# dns.example.org.MX will be updated in-place",
		"- 1 aspmx.l.google.com.",
		"+ 10 mx1.example.org.",
		"# dns.example.com._dmarc.TXT will be created",
		"# dns.example.net._submissions._tcp.SRV will be created",
		"include:amazonses.com",
		"# ptr.203.0.113.20 will be updated in-place",
		"+ mx1.example.org",
		"# ptr.2001:db8::20 will be created",
	} {
		if !strings.Contains(planOut, want) {
			t.Errorf("first plan lacks %q", want)
		}
	}
	if strings.Contains(planOut, "relay-password") {
		t.Errorf("plan shows a secret")
	}

	// The Knot zone first: apply waits until its name server (found
	// through Knot itself, ns1.example.com dialled at Knot's port) serves
	// the new records. The Cloudflare emulator's zones have no name server
	// here: their apply does not wait.
	e, buf = newEnv()
	if code := runCLI(t, e, "apply", "-auto-approve", "-target=dns.example.com",
		"-resolver", knot.Addr, "-connect", "ns1.example.com:53="+knot.Addr); code != 0 {
		t.Fatalf("apply to Knot = %d", code)
	}
	if !strings.Contains(buf.String(), "DNS propagation complete: 1/1 name servers serve the new records") {
		t.Errorf("apply to Knot did not wait for its name server")
	}
	e, _ = newEnv()
	if code := runCLI(t, e, "apply", "-auto-approve", "-allow-mx-takeover", "-target=dns", "-target=ptr", "-wait=0"); code != 0 {
		t.Fatalf("apply = %d", code)
	}

	// Knot serves what was applied, and kept the foreign record.
	if rrs := knot.Query(t, "example.com", mdns.TypeMX); len(rrs) != 1 || !strings.Contains(rrs[0].String(), "mx1.example.org.") {
		t.Errorf("Knot MX example.com = %v", rrs)
	}
	if rrs := knot.Query(t, "_dmarc.example.com", mdns.TypeTXT); len(rrs) != 1 || !strings.Contains(rrs[0].String(), "v=DMARC1") {
		t.Errorf("Knot _dmarc.example.com = %v", rrs)
	}
	if rrs := knot.Query(t, "www.example.com", mdns.TypeA); len(rrs) != 1 {
		t.Errorf("foreign www.example.com A is gone: %v", rrs)
	}
	// Reverse DNS was set after the forward records.
	if got := hz.PTR("203.0.113.20"); got != "mx1.example.org" {
		t.Errorf("Hetzner PTR of 203.0.113.20 = %q, want mx1.example.org", got)
	}
	if got := hz.PTR("2001:db8::20"); got != "mx1.example.org" {
		t.Errorf("Hetzner PTR of 2001:db8::20 = %q, want mx1.example.org", got)
	}
	// Cloudflare kept the site verification and holds only our MX.
	var verif, mx int
	for _, r := range cf.Records("example.org") {
		if r.Type == "TXT" && strings.Contains(r.Content, "google-site-verification") {
			verif++
		}
		if r.Type == "MX" {
			mx++
			if r.Content != "mx1.example.org" {
				t.Errorf("Cloudflare MX %q left", r.Content)
			}
		}
	}
	if verif != 1 || mx != 1 {
		t.Errorf("Cloudflare example.org: %d verification TXT (want 1), %d MX (want 1)", verif, mx)
	}

	// Second plan: nothing to do. The DKIM records of an untargeted server
	// keep their current value.
	e, buf = newEnv()
	if code := runCLI(t, e, "plan", "-detailed-exitcode", "-target=dns", "-target=ptr"); code != 0 {
		t.Errorf("second plan -detailed-exitcode = %d, want 0", code)
	}
	if !strings.Contains(buf.String(), "No changes. Your mail setup matches the configuration.") {
		t.Errorf("second plan does not say No changes")
	}
}

func pointer[T any](v T) *T { return &v }
