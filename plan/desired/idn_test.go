package desired_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/server/auth"
)

const idnHash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ"

// TestInternationalDomain: a domain and addresses written with U-labels
// and UTF-8 local parts give DNS records in A-labels only, and a server
// configuration the server accepts, where the addresses match whichever
// form a sender uses.
func TestInternationalDomain(t *testing.T) {
	t.Parallel()
	src := `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls { acme_email = "a@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
domain "Bücher.example" {
  dns    = provider.zonefile.z
  server = server.mx1
  dmarc { policy = "reject" }
}
user "anna@bücher.example" {
  password_hash = "` + idnHash + `"
  aliases       = ["ΔΟΚΙΜΉ@bücher.example"]
}
alias "info@xn--bcher-kva.example" { to = ["anna@BÜCHER.example"] }
alias "@bücher.example" { to = ["anna@xn--bcher-kva.example"] }
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)},
		config.LoadOptions{Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	d := cfg.Domains[1]
	if d.Name != "xn--bcher-kva.example" || d.Display() != "bücher.example (xn--bcher-kva.example)" {
		t.Errorf("domain = %q shown %q, want the A-label shown with its U-labels", d.Name, d.Display())
	}
	if u := cfg.Users[0]; u.Address != "anna@xn--bcher-kva.example" || u.Aliases[0] != "δοκιμή@xn--bcher-kva.example" {
		t.Errorf("user = %q aliases %q", u.Address, u.Aliases)
	}
	if a := cfg.Aliases[0]; a.Address != "info@xn--bcher-kva.example" || a.To[0] != "anna@xn--bcher-kva.example" {
		t.Errorf("alias = %q -> %q", a.Address, a.To)
	}
	if a := cfg.Aliases[1]; a.Address != "@xn--bcher-kva.example" {
		t.Errorf("catch-all = %q", a.Address)
	}
	var idn int
	for _, r := range desired.Records(cfg, nil) {
		if !auth.IsASCII(r.Name+r.Domain+strings.Join(r.Values, " ")) || strings.Contains(r.Name, "bücher") {
			t.Errorf("record %s %s %q is not all A-labels", r.Name, r.Type, r.Values)
		}
		if r.Domain == "xn--bcher-kva.example" {
			idn++
			if r.Type == "TXT" && r.Name == "_dmarc.xn--bcher-kva.example" && !strings.Contains(strings.Join(r.Values, ""), "p=reject") {
				t.Errorf("DMARC record = %q", r.Values)
			}
		}
	}
	if idn < 3 {
		t.Errorf("%d records for xn--bcher-kva.example, want MX, SPF, DMARC at least", idn)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0])
	if err := sc.WithDefaults().Validate(); err != nil {
		t.Fatalf("server rejects the generated config: %v", err)
	}
	var users []auth.User
	for _, u := range sc.Users {
		users = append(users, auth.User{Address: u.Address, Aliases: u.Aliases})
	}
	var domains []string
	for _, d := range sc.Domains {
		domains = append(domains, d.Name)
	}
	dir, err := auth.NewDirectory(domains, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"anna@bücher.example", "δοκιμή@BÜCHER.example", "Δοκιμή@xn--bcher-kva.example"} {
		if res, err := dir.Resolve(addr); err != nil || len(res.Users) != 1 || res.Users[0] != "anna@xn--bcher-kva.example" {
			t.Errorf("server directory: Resolve(%q) = %v, %v", addr, res.Users, err)
		}
	}
}

// TestInternationalDomainErrors: an invalid IDN is one clear error.
func TestInternationalDomainErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ src, summary, detail string }{
		{`domain "xn--zz.example" {
  dns    = provider.zonefile.z
  server = server.mx1
}`, "Invalid domain name", `"xn--zz.example" is not a valid internationalised domain name`},
		{`domain "bü` + "\u200d" + `cher.example" {
  dns    = provider.zonefile.z
  server = server.mx1
}`, "Invalid domain name", "not a valid internationalised domain name"},
		{`user "a` + "\u202e" + `b@example.org" { password_hash = "` + idnHash + `" }`, "Invalid e-mail address", "not allowed in local part"},
	} {
		src := `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls { acme_email = "a@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
` + tc.src
		_, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)},
			config.LoadOptions{Getenv: func(string) string { return "" }})
		found := false
		for _, d := range diags {
			if d.Summary == tc.summary && strings.Contains(d.Detail, tc.detail) {
				found = true
				if strings.Contains(d.Detail, "\n") {
					t.Errorf("error detail on several lines: %q", d.Detail)
				}
			}
		}
		if !found {
			t.Errorf("%s: diagnostics %v, want %s with %q", tc.src, diags, tc.summary, tc.detail)
		}
	}
}
