package desired_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

const migrationSrc = `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  ipv6     = "2001:db8::10"
  tls { acme_email = "a@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
  mta_sts {}
}
domain "example.net" {
  dns    = provider.zonefile.z
  server = server.mx1
}
user "a@example.org" { password_hash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ" }
migration "google" {
  phase = "PHASE"
  SOURCE
  user "a@example.org" {
    password        = "p"
    target_password = "t"
  }
}
`

// TestMigrationRecords: the records of a migrating domain by phase; the
// other domain is not affected.
func TestMigrationRecords(t *testing.T) {
	t.Parallel()
	cases := []struct {
		phase, source string
		mx            string // "TTL keep" of the MX
		spf           string
		a             int  // TTL of A and AAAA
		mtaSTS        bool // _mta-sts TXT owned
		dmarcNote     bool
	}{
		{"presync", "", "300 true", "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 include:_spf.google.com ~all", 300, false, false},
		{"cutover", "", "300 false", "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 include:_spf.google.com ~all", 300, true, false},
		{"done", "", "3600 false", "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ~all", 3600, true, true},
		{"cutover", "source {\n address = \"outlook.office365.com:993\"\n}", "300 false",
			"v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 include:spf.protection.outlook.com ~all", 300, true, false},
		{"cutover", "source {\n address = \"imap.example.net:993\"\n}", "300 false",
			"v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ~all", 300, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.phase+tc.source, func(t *testing.T) {
			t.Parallel()
			src := strings.NewReplacer("PHASE", tc.phase, "SOURCE", tc.source).Replace(migrationSrc)
			cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{})
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got := map[string]desired.RRSet{}
			for _, r := range desired.Records(cfg, nil) {
				got[r.Address()] = r
			}
			mx := got["dns.example.org.MX"]
			if s := fmt.Sprintf("%d %v", mx.TTL, mx.KeepValues); s != tc.mx || mx.Values[0] != "10 mx1.example.org." {
				t.Errorf("MX = %s %v, want %s", s, mx.Values, tc.mx)
			}
			if spf := got["dns.example.org.TXT"]; spf.Values[0] != tc.spf || spf.TTL != 3600 {
				t.Errorf("SPF = %q ttl %d, want %q ttl 3600", spf.Values[0], spf.TTL, tc.spf)
			}
			if spf := desired.SPF(cfg, cfg.Domains[0]); spf != tc.spf {
				t.Errorf("desired.SPF = %q, want %q", spf, tc.spf)
			}
			if a, aaaa := got["dns.example.org.mx1.A"], got["dns.example.org.mx1.AAAA"]; a.TTL != tc.a || aaaa.TTL != tc.a {
				t.Errorf("A/AAAA TTL = %d/%d, want %d", a.TTL, aaaa.TTL, tc.a)
			}
			_, sts := got["dns.example.org._mta-sts.TXT"]
			_, stsHost := got["dns.example.org.mta-sts.CNAME"]
			if sts != tc.mtaSTS || stsHost != tc.mtaSTS {
				t.Errorf("MTA-STS owned = %v/%v, want %v", sts, stsHost, tc.mtaSTS)
			}
			dmarc := got["dns.example.org._dmarc.TXT"]
			if hasNote := len(dmarc.Notes) > 0 && strings.Contains(dmarc.Notes[0], "quarantine"); hasNote != tc.dmarcNote {
				t.Errorf("DMARC notes = %q, want a note to raise it: %v", dmarc.Notes, tc.dmarcNote)
			}
			// example.net is not migrating: standard records.
			if o := got["dns.example.net.MX"]; o.TTL != 3600 || o.KeepValues || len(o.Notes) > 0 {
				t.Errorf("example.net MX = %+v, want standard", o)
			}
			if o := got["dns.example.net.TXT"]; o.Values[0] != "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ~all" {
				t.Errorf("example.net SPF = %q", o.Values[0])
			}
		})
	}
}
