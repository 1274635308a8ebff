package verify

import (
	"slices"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
)

const selectHCL = `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  ipv6     = "2001:db8::10"
  tls { acme_email = "admin@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
`

// TestCheckNamesComplete: every check Run builds has its name in
// CheckNames (the list verify -h prints and typos are matched against).
func TestCheckNamesComplete(t *testing.T) {
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(selectHCL)}, config.LoadOptions{Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatalf("load config: %v", diags)
	}
	r := &runner{cfg: cfg, o: Options{DNSBLZones: DefaultDNSBLZones}}
	cs := r.checks()
	if len(cs) == 0 {
		t.Fatal("no checks")
	}
	for _, c := range cs {
		if !slices.Contains(CheckNames, c.Name) {
			t.Errorf("check %q (%s) is missing from CheckNames", c.Name, c.Target)
		}
	}
	un, _ := Unmatched(Inputs{Config: cfg}, Options{Only: []string{"spf", "dns", "example.org", "dns.spf", "outbound25"}}, nil)
	if !slices.Equal(un, []string{"dns.spf"}) {
		t.Errorf("Unmatched = %q, want [dns.spf]", un)
	}
}
