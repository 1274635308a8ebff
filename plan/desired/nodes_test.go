package desired_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/server/mtasts"
	"github.com/mailctl/mailctl/server/web"
)

const nodesURL = "postgres://mailctl:n0des-secret@db.example.org/mail"

// nodesConfig is a domain served by n servers (a, b, c...) on one
// PostgreSQL store; prio, when set, is its mx_priority attribute.
func nodesConfig(t *testing.T, n int, prio string) *config.Config {
	t.Helper()
	prev := config.PostgresStoreAvailable
	config.PostgresStoreAvailable = func() bool { return true }
	t.Cleanup(func() { config.PostgresStoreAvailable = prev })
	var b strings.Builder
	b.WriteString("provider \"zonefile\" \"z\" { dir = \"zones\" }\n")
	var refs []string
	for i := range n {
		name := string(rune('a' + i))
		fmt.Fprintf(&b, `server %q {
  hostname = "%s.mx.example.org"
  ipv4     = "203.0.113.%d"
  ipv6     = "2001:db8::%d"
  tls { acme_email = "admin@example.org" }
  store { postgres = env("PG_URL") }
}
`, name, name, 10+i, 10+i)
		refs = append(refs, "server."+name)
	}
	fmt.Fprintf(&b, "domain \"example.org\" {\n  dns = provider.zonefile.z\n  servers = [%s]\n  %s\n}\n", strings.Join(refs, ", "), prio)
	b.WriteString("domain \"example.net\" {\n  dns = provider.zonefile.z\n  servers = [" + strings.Join(refs, ", ") + "]\n}\n")
	b.WriteString(`user "alice@example.org" { password_hash = "` + argonHash + "\" }\n")
	b.WriteString(`user "bob@example.net" { password_hash = "` + argonHash + "\" }\n")
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(b.String())},
		config.LoadOptions{Getenv: func(n string) string { return map[string]string{"PG_URL": nodesURL}[n] }})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	return cfg
}

// argonHash is a valid argon2id hash (of "x").
const argonHash = `$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ`

func recordValues(sets []desired.RRSet, addr string) []string {
	for _, s := range sets {
		if s.Address() == addr {
			return s.Values
		}
	}
	return nil
}

// TestNodesRecords: with two and three servers, the domain publishes an
// MX per server (equal priorities, or mx_priority's), an A and AAAA per
// server host, SPF authorising every server, DKIM from the first server,
// autoconfig and SRV naming the first server.
func TestNodesRecords(t *testing.T) {
	for _, tc := range []struct {
		n      int
		prio   string
		wantMX []string
	}{
		{2, "", []string{"10 a.mx.example.org.", "10 b.mx.example.org."}},
		{3, "", []string{"10 a.mx.example.org.", "10 b.mx.example.org.", "10 c.mx.example.org."}},
		{3, "mx_priority = { a = 10, b = 20, c = 30 }", []string{"10 a.mx.example.org.", "20 b.mx.example.org.", "30 c.mx.example.org."}},
	} {
		t.Run(fmt.Sprintf("%d nodes %s", tc.n, tc.prio), func(t *testing.T) {
			cfg := nodesConfig(t, tc.n, tc.prio)
			sets := desired.Records(cfg, []desired.DKIMKey{
				{Domain: "example.org", Selector: "mailctl-ed25519", Record: "v=DKIM1; k=ed25519; p=AAA", Server: "a"},
				{Domain: "example.org", Selector: "mailctl-ed25519", Record: "v=DKIM1; k=ed25519; p=BBB", Server: "b"},
			})
			if got := recordValues(sets, "dns.example.org.MX"); !slices.Equal(got, tc.wantMX) {
				t.Errorf("MX = %q, want %q", got, tc.wantMX)
			}
			spf := strings.Join(recordValues(sets, "dns.example.org.TXT"), "")
			for i := range tc.n {
				name := string(rune('a' + i))
				for _, want := range []string{fmt.Sprintf("ip4:203.0.113.%d ", 10+i), fmt.Sprintf("ip6:2001:db8::%d ", 10+i)} {
					if !strings.Contains(spf, want) {
						t.Errorf("SPF %q lacks %q", spf, want)
					}
				}
				if got := recordValues(sets, "dns.example.org."+name+".mx.A"); !slices.Equal(got, []string{fmt.Sprintf("203.0.113.%d", 10+i)}) {
					t.Errorf("A of %s.mx = %q", name, got)
				}
				if got := recordValues(sets, "dns.example.org."+name+".mx.AAAA"); !slices.Equal(got, []string{fmt.Sprintf("2001:db8::%d", 10+i)}) {
					t.Errorf("AAAA of %s.mx = %q", name, got)
				}
			}
			if got := recordValues(sets, "dns.example.org.mailctl-ed25519._domainkey.TXT"); !slices.Equal(got, []string{"v=DKIM1; k=ed25519; p=AAA"}) {
				t.Errorf("DKIM = %q, want the first server's key only", got)
			}
			for _, s := range sets {
				if strings.Contains(s.Name, "_domainkey") && s.Source != "server.a" {
					t.Errorf("%s: source %q, want server.a", s.Address(), s.Source)
				}
			}
			if got := recordValues(sets, "dns.example.org.autoconfig.CNAME"); !slices.Equal(got, []string{"a.mx.example.org."}) {
				t.Errorf("autoconfig = %q, want the first server", got)
			}
			if got := recordValues(sets, "dns.example.net.MX"); len(got) != tc.n {
				t.Errorf("example.net MX = %q, want %d", got, tc.n)
			}
		})
	}
}

// TestNodesServerConfig: every node's server.json serves the domains of
// all nodes with all their users, names the node and the file holding the
// store's URL, and never holds the URL itself.
func TestNodesServerConfig(t *testing.T) {
	cfg := nodesConfig(t, 3, "")
	for _, s := range cfg.Servers {
		sc := desired.ServerConfig(cfg, s)
		js, err := json.Marshal(sc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(js), "n0des-secret") || strings.Contains(string(js), "db.example.org") {
			t.Errorf("server.json of %s holds the store URL: %s", s.Name, js)
		}
		if sc.Store == nil || sc.Store.Node != s.Name || sc.Store.PostgresURLFile != "/etc/mailctl/postgres-url" {
			t.Errorf("store of %s = %+v, want node %s, /etc/mailctl/postgres-url", s.Name, sc.Store, s.Name)
		}
		if got := sc.DomainNames(); !slices.Equal(got, []string{"example.net", "example.org"}) && !slices.Equal(got, []string{"example.org", "example.net"}) {
			t.Errorf("domains of %s = %q", s.Name, got)
		}
		if len(sc.Users) != 2 {
			t.Errorf("users of %s = %v, want alice and bob", s.Name, sc.Users)
		}
		if sc.Hostname != s.Name+".mx.example.org" {
			t.Errorf("hostname of %s = %q", s.Name, sc.Hostname)
		}
	}
	if got := cfg.Servers[0].Store.QueueLease; got != 0 {
		t.Errorf("queue lease without queue_lease = %v, want 0 (the server's default)", got)
	}
	if desired.StoreURLFile(cfg, cfg.Servers[0]) != "/etc/mailctl/postgres-url" {
		t.Errorf("StoreURLFile = %q", desired.StoreURLFile(cfg, cfg.Servers[0]))
	}
}

// TestNodesMTASTS: a domain of two and three servers with mta_sts lists
// every server's host name, in the domain's order, in each node's
// server.json; the policy each node serves (web.MTASTSPolicy, as the
// daemon does) names them all, and the _mta-sts TXT id is that policy's.
// A domain of one server keeps the list out (its hostname alone).
func TestNodesMTASTS(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			cfg := nodesConfig(t, n, `mta_sts { mode = "enforce" }`)
			var want []string
			for i := range n {
				want = append(want, string(rune('a'+i))+".mx.example.org")
			}
			_, wantID := mtasts.Policy("enforce", want, 0)
			txt := recordValues(desired.Records(cfg, nil), "dns.example.org._mta-sts.TXT")
			if !slices.Equal(txt, []string{"v=STSv1; id=" + wantID}) {
				t.Errorf("_mta-sts TXT = %q, want id=%s (the policy naming %q)", txt, wantID, want)
			}
			for _, s := range cfg.Servers {
				sc := desired.ServerConfig(cfg, s)
				if err := sc.WithDefaults().Validate(); err != nil {
					t.Errorf("server.json of %s is refused by the server: %v", s.Name, err)
				}
				for _, sd := range sc.Domains {
					if sd.Name == "example.net" {
						if sd.MTASTSMX != nil || sd.MTASTSMode != "" {
							t.Errorf("%s: example.net without mta_sts has mode %q, mx %q", s.Name, sd.MTASTSMode, sd.MTASTSMX)
						}
						continue
					}
					if !slices.Equal(sd.MTASTSMX, want) {
						t.Errorf("%s: mta_sts_mx = %q, want %q", s.Name, sd.MTASTSMX, want)
					}
					text, id := web.MTASTSPolicy(sc.Hostname, sd)
					for _, h := range want {
						if !strings.Contains(text, "\r\nmx: "+h+"\r\n") {
							t.Errorf("%s serves a policy without mx %s:\n%s", s.Name, h, text)
						}
					}
					if !slices.Equal(txt, []string{"v=STSv1; id=" + id}) {
						t.Errorf("%s serves policy id %s, the TXT record says %q", s.Name, id, txt)
					}
				}
			}
		})
	}

	t.Run("one server", func(t *testing.T) {
		cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(migrationSrc[:strings.Index(migrationSrc, "migration")])}, config.LoadOptions{})
		if diags.HasErrors() {
			t.Fatalf("load: %v", diags)
		}
		sc := desired.ServerConfig(cfg, cfg.Servers[0])
		sd := sc.Domains[0]
		if sd.Name != "example.org" || sd.MTASTSMode != "testing" || sd.MTASTSMX != nil {
			t.Fatalf("domain %+v, want example.org in testing mode without mta_sts_mx", sd)
		}
		_, id := web.MTASTSPolicy(sc.Hostname, sd)
		_, wantID := mtasts.Policy("testing", []string{"mx1.example.org"}, 0)
		txt := recordValues(desired.Records(cfg, nil), "dns.example.org._mta-sts.TXT")
		if id != wantID || !slices.Equal(txt, []string{"v=STSv1; id=" + id}) {
			t.Errorf("served id %s, TXT %q; want both id=%s", id, txt, wantID)
		}
	})
}

// TestNodesQueueLease: a store block's queue_lease reaches every node's
// server.json as store.queue_lease.
func TestNodesQueueLease(t *testing.T) {
	prev := config.PostgresStoreAvailable
	config.PostgresStoreAvailable = func() bool { return true }
	t.Cleanup(func() { config.PostgresStoreAvailable = prev })
	src := `provider "zonefile" "z" { dir = "zones" }
server "a" {
  hostname = "a.mx.example.org"
  ipv4     = "203.0.113.10"
  tls { acme_email = "admin@example.org" }
  store {
    postgres    = env("PG_URL")
    queue_lease = "30s"
  }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.a
}
user "alice@example.org" { password_hash = "` + argonHash + `" }
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)},
		config.LoadOptions{Getenv: func(n string) string { return map[string]string{"PG_URL": nodesURL}[n] }})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	js, err := json.Marshal(desired.ServerConfig(cfg, cfg.Servers[0]).Store)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"queue_lease":"30s"`) {
		t.Errorf("store of server.json = %s, want queue_lease 30s", js)
	}
}
