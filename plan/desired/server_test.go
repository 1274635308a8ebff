package desired_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

// TestServerConfigOfExamples: the server configuration generated for every
// example server passes the server's own validation.
func TestServerConfigOfExamples(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"../../examples/local", "../../examples/quickstart", "../../examples/multi-domain"} {
		cfg, diags := config.Load(dir, config.LoadOptions{Getenv: func(string) string { return "x" }})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", dir, diags)
		}
		for _, s := range cfg.Servers {
			sc := desired.ServerConfig(cfg, s)
			if err := sc.WithDefaults().Validate(); err != nil {
				t.Errorf("%s server %s: generated config invalid: %v", dir, s.Name, err)
			}
			if len(sc.Domains) == 0 || len(sc.Users) == 0 {
				t.Errorf("%s server %s: %d domains, %d users", dir, s.Name, len(sc.Domains), len(sc.Users))
			}
			if s.Local != nil && sc.Listen.SMTP != "127.0.0.1:2525" {
				t.Errorf("lab smtp listen = %q, want 127.0.0.1:2525", sc.Listen.SMTP)
			}
		}
	}
}

// TestServerConfigMail: relay, outbound and inbound settings reach the
// server configuration, and the server accepts them.
func TestServerConfigMail(t *testing.T) {
	t.Parallel()
	src := `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  ipv6     = "2001:db8::10"
  resolvers = ["127.0.0.53:53", "[2001:db8::53]:5353"]
  tls { acme_email = "a@example.org" }
  relay {
    address  = "smtp.eu.mailgun.org:587"
    username = "postmaster@example.org"
    password = env("RELAY_PASSWORD")
    domains  = ["hotmail.com"]
    mx_hosts = ["*.mail.protection.outlook.com"]
  }
  outbound {
    prefer      = "ipv6"
    source_ipv6 = "2001:db8::10"
    warmup {
      weeks    = 4
      overflow = "relay"
    }
  }
  inbound {
    dnsbl       = ["zen.spamhaus.org", "bl.spamcop.net"]
    greylisting = true
  }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
user "a@example.org" { password_hash = "` + "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ" + `" }
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)},
		config.LoadOptions{Getenv: func(string) string { return "relay-secret" }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0])
	if err := sc.WithDefaults().Validate(); err != nil {
		t.Fatalf("server rejects the generated config: %v", err)
	}
	if sc.Relay == nil || sc.Relay.Password != "relay-secret" || sc.Relay.MXHosts[0] != "*.mail.protection.outlook.com" || sc.Relay.Domains[0] != "hotmail.com" {
		t.Errorf("relay = %+v", sc.Relay)
	}
	if o := sc.Outbound; o == nil || o.SourceIPv6 != "2001:db8::10" || o.Warmup == nil || o.Warmup.Weeks != 4 || o.Warmup.Overflow != "relay" ||
		strings.Join(o.DNSServers, ",") != "127.0.0.53:53,[2001:db8::53]:5353" {
		t.Errorf("outbound = %+v", sc.Outbound)
	}
	if in := sc.Inbound; in == nil || len(in.DNSBLZones) != 2 || !in.Greylisting {
		t.Errorf("inbound = %+v", sc.Inbound)
	}
	if got := desired.SPF(cfg, cfg.Domains[0]); got != "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 include:mailgun.org ~all" {
		t.Errorf("SPF with a Mailgun relay = %q", got)
	}
}

// TestDKIMRotation: previous selectors stay published and reach the server
// after the signing one.
func TestDKIMRotation(t *testing.T) {
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
  dkim {
    selector = "mx1-2027"
    previous = ["mx1-2026"]
  }
}
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0])
	if got := sc.Domains[0].DKIMSelectors; len(got) != 2 || got[0] != "mx1-2027" || got[1] != "mx1-2026" {
		t.Errorf("server selectors = %v, want [mx1-2027 mx1-2026]", got)
	}
	var names []string
	for _, r := range desired.Records(cfg, nil) {
		if strings.Contains(r.Name, "_domainkey") {
			names = append(names, r.Name)
		}
	}
	if len(names) != 4 {
		t.Errorf("published DKIM names = %v, want 4 (ed25519 + rsa for both selectors)", names)
	}
}

// TestServerConfigResolvers: resolvers alone (no outbound block) reach the
// server's dns_servers, and the server accepts them.
func TestServerConfigResolvers(t *testing.T) {
	t.Parallel()
	src := `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname  = "mx1.example.org"
  ipv4      = "203.0.113.10"
  resolvers = ["127.0.0.1:5300"]
  tls { acme_email = "a@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0])
	if err := sc.WithDefaults().Validate(); err != nil {
		t.Fatalf("server rejects the generated config: %v", err)
	}
	if sc.Outbound == nil || strings.Join(sc.Outbound.DNSServers, ",") != "127.0.0.1:5300" {
		t.Errorf("outbound = %+v, want dns_servers [127.0.0.1:5300]", sc.Outbound)
	}
	b, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"dns_servers":["127.0.0.1:5300"]`) {
		t.Errorf("server.json lacks dns_servers: %s", b)
	}
}

// TestDKIMRotatedSelectors: the selectors a server's rotations made are
// published beside the configured ones, and the configured signing
// selector is no longer planned once a rotation replaced and removed it
// (a selector changed by hand still is).
func TestDKIMRotatedSelectors(t *testing.T) {
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
  dkim { selector = "mx1" }
}
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	key := func(sel, state string) desired.DKIMKey {
		return desired.DKIMKey{Domain: "example.org", Selector: sel, Record: "v=DKIM1; p=" + sel, State: state}
	}
	published := func(keys []desired.DKIMKey) string {
		var out []string
		for _, r := range desired.Records(cfg, keys) {
			if sel, ok := strings.CutSuffix(r.Name, "._domainkey.example.org"); ok {
				v := "?"
				if !r.Unknown {
					v = strings.Join(r.Values, ",")
				}
				out = append(out, sel+"="+strings.TrimPrefix(v, "v=DKIM1; p="))
			}
		}
		return strings.Join(out, " ")
	}
	tests := []struct {
		name string
		keys []desired.DKIMKey
		want string
	}{
		{"not deployed", nil, "mx1-ed25519=? mx1-rsa=?"},
		{"rotation pending", []desired.DKIMKey{key("mx1-ed25519", "signing"), key("mx1-rsa", "signing"), key("mx1-20261207-ed25519", "pending"), key("mx1-20261207-rsa", "pending")},
			"mx1-20261207-ed25519=mx1-20261207-ed25519 mx1-20261207-rsa=mx1-20261207-rsa mx1-ed25519=mx1-ed25519 mx1-rsa=mx1-rsa"},
		{"old selector removed", []desired.DKIMKey{key("mx1-20261207-ed25519", "signing"), key("mx1-20261207-rsa", "signing")},
			"mx1-20261207-ed25519=mx1-20261207-ed25519 mx1-20261207-rsa=mx1-20261207-rsa"},
		{"selector changed by hand", []desired.DKIMKey{key("other-ed25519", "signing"), key("other-rsa", "signing")},
			"mx1-ed25519=? mx1-rsa=?"},
	}
	for _, tc := range tests {
		if got := published(tc.keys); got != tc.want {
			t.Errorf("%s: published %s, want %s", tc.name, got, tc.want)
		}
	}
}
