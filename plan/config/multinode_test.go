package config_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	serverconfig "github.com/mailctl/mailctl/server/config"
)

// pgURL is the store secret of the multi-node cases; no diagnostic may
// print it.
const pgURL = "postgres://mailctl:s3cret-pw@db.example.org:5432/mail"

// nodes is two servers on one PostgreSQL store (the URL from env) and a
// domain served by both.
const nodes = `
provider "cloudflare" "main" { api_token = env("CF_TOKEN") }
server "a" {
  hostname = "a.example.org"
  ipv4     = "203.0.113.10"
  tls { acme_email = "admin@example.org" }
  store { postgres = env("PG_URL") }
}
server "b" {
  hostname = "b.example.org"
  ipv4     = "203.0.113.20"
  tls { acme_email = "admin@example.org" }
  store { postgres = env("PG_URL") }
}
domain "example.org" {
  dns     = provider.cloudflare.main
  servers = [server.a, server.b]
}
`

// withStore makes the PostgreSQL store available for one test (it is
// refused until `mailctl serve` runs on it); such tests are not parallel.
func withStore(t *testing.T, available bool) {
	t.Helper()
	prev := config.PostgresStoreAvailable
	config.PostgresStoreAvailable = func() bool { return available }
	t.Cleanup(func() { config.PostgresStoreAvailable = prev })
}

func loadNodes(t *testing.T, src string) (*config.Config, []string, string) {
	t.Helper()
	env := func(n string) string {
		if n == "PG_URL" {
			return pgURL
		}
		return getenv(n)
	}
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: env})
	return cfg, summaries(diags), diags.Error()
}

// TestNodesConfig: servers = [...] gives the domain every node in order,
// the first as Server, equal MX priorities by default or those of
// mx_priority; the store URL is a secret.
func TestNodesConfig(t *testing.T) {
	withStore(t, true)
	cfg, diags, _ := loadNodes(t, nodes)
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %q", diags)
	}
	d := cfg.Domains[0]
	if len(d.Servers) != 2 || d.Servers[0].Name != "a" || d.Servers[1].Name != "b" || d.Server != d.Servers[0] {
		t.Fatalf("Servers = %v, Server = %v", d.Servers, d.Server)
	}
	if d.MXPriorityOf(d.Servers[0]) != 10 || d.MXPriorityOf(d.Servers[1]) != 10 {
		t.Errorf("default priorities = %d, %d, want 10, 10", d.MXPriorityOf(d.Servers[0]), d.MXPriorityOf(d.Servers[1]))
	}
	st := cfg.Servers[0].Store
	if st == nil || st.Postgres.Str != pgURL || !st.Postgres.Sensitive || st.Postgres.String() != "(sensitive)" {
		t.Errorf("store = %+v, want the URL, sensitive", st)
	}

	cfg, diags, _ = loadNodes(t, strings.Replace(nodes, "servers = [server.a, server.b]",
		"servers = [server.b, server.a]\n  mx_priority = { a = 10, b = 20 }", 1))
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %q", diags)
	}
	d = cfg.Domains[0]
	if d.Server.Name != "b" || d.MXPriorityOf(cfg.ServerByName("a")) != 10 || d.MXPriorityOf(cfg.ServerByName("b")) != 20 {
		t.Errorf("Server %s, priorities a=%d b=%d; want b, 10, 20", d.Server.Name, d.MXPriorityOf(cfg.ServerByName("a")), d.MXPriorityOf(cfg.ServerByName("b")))
	}

	// One server still reads as before: Servers holds it.
	cfg, diags, _ = loadNodes(t, base)
	if len(diags) != 0 || len(cfg.Domains[0].Servers) != 1 || cfg.Domains[0].Servers[0] != cfg.Domains[0].Server {
		t.Errorf("server = server.mx1: diagnostics %q, Servers %v", diags, cfg.Domains[0].Servers)
	}
}

// TestNodesRules: each mistake of the multi-node syntax is one diagnostic
// on its line, all of them reported, and none prints the store's URL.
func TestNodesRules(t *testing.T) {
	withStore(t, true)
	cases := []struct {
		name string
		repl [2]string
		add  string
		want []string
	}{
		{name: "server and servers", repl: [2]string{"servers = [server.a, server.b]", "servers = [server.a, server.b]\n  server = server.a"},
			want: []string{"17:Conflicting attributes"}},
		{name: "quoted server", repl: [2]string{"[server.a, server.b]", `["a", server.b]`}, want: []string{"17:Invalid reference"}},
		{name: "undeclared server", repl: [2]string{"[server.a, server.b]", "[server.a, server.c]"}, want: []string{"17:Reference to undeclared server"}},
		{name: "listed twice", repl: [2]string{"[server.a, server.b]", "[server.a, server.a]"}, want: []string{"17:Duplicate server"}},
		{name: "empty list", repl: [2]string{"[server.a, server.b]", "[]"}, want: []string{"17:No server"}},
		{name: "priority of another server", repl: [2]string{"servers = [server.a, server.b]", "servers = [server.a, server.b]\n  mx_priority = { a = 10, b = 20, c = 30 }"},
			want: []string{"18:Unknown server in mx_priority"}},
		{name: "incomplete priorities", repl: [2]string{"servers = [server.a, server.b]", "servers = [server.a, server.b]\n  mx_priority = { a = 10 }"},
			want: []string{"18:Incomplete mx_priority"}},
		{name: "priority out of range", repl: [2]string{"servers = [server.a, server.b]", "servers = [server.a, server.b]\n  mx_priority = { a = 10, b = 70000 }"},
			want: []string{"18:Invalid MX priority"}},
		{name: "no shared store", repl: [2]string{"  store { postgres = env(\"PG_URL\") }\n}\ndomain", "}\ndomain"},
			want: []string{"14:Servers without a shared store"}},
		{name: "bad URL", repl: [2]string{`postgres = env("PG_URL") }
}
domain`, `postgres = "mysql://mailctl:s3cret-pw@db" }
}
domain`}, want: []string{"13:Invalid PostgreSQL URL", "15:Servers without a shared store"}},
		{name: "one store, other domains", add: "server \"c\" {\n hostname = \"c.example.org\"\n ipv4 = \"203.0.113.30\"\n tls { self_signed = true }\n store { postgres = env(\"PG_URL\") }\n}\n",
			want: []string{"23:Different domains on one store"}},
		{name: "queue lease too short", repl: [2]string{`  store { postgres = env("PG_URL") }
}
server "b"`, `  store {
    postgres    = env("PG_URL")
    queue_lease = "1s"
  }
}
server "b"`}, want: []string{"9:Invalid duration"}},
		{name: "two mistakes", repl: [2]string{"[server.a, server.b]", "[server.a, server.a]\n  mx_priority = { a = -1 }"},
			want: []string{"17:Duplicate server", "18:Invalid MX priority"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := nodes
			if tc.repl[0] != "" {
				if !strings.Contains(src, tc.repl[0]) {
					t.Fatalf("replacement %q not in the configuration", tc.repl[0])
				}
				src = strings.Replace(src, tc.repl[0], tc.repl[1], 1)
			}
			_, got, text := loadNodes(t, src+tc.add)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("diagnostics = %q, want %q\n%s", got, tc.want, text)
			}
			if strings.Contains(text, "s3cret-pw") {
				t.Errorf("a diagnostic prints the store's password: %s", text)
			}
			for _, line := range strings.Split(text, "; ") {
				if strings.Contains(line, "\n") {
					t.Errorf("diagnostic on several lines: %q", line)
				}
			}
		})
	}
}

// TestNodesNotAvailable: until serve runs on PostgreSQL, a store block
// and a domain of several servers are refused, one line each.
func TestNodesNotAvailable(t *testing.T) {
	withStore(t, false)
	_, got, text := loadNodes(t, nodes)
	want := []string{"7:Store not available yet", "13:Store not available yet", "15:Several servers not available yet"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics = %q, want %q\n%s", got, want, text)
	}
}

// TestPostgresStoreAvailable: the store is available exactly when the
// server's own configuration check accepts one (server/config).
func TestPostgresStoreAvailable(t *testing.T) {
	t.Parallel()
	sc := &serverconfig.Config{FormatVersion: serverconfig.FormatVersion, Hostname: "mx.example.org",
		Store: &serverconfig.Store{PostgresURLFile: "/etc/mailctl/postgres-url"}}
	err := sc.Validate()
	refused := err != nil && strings.Contains(err.Error(), "store.postgres_url_file") && strings.Contains(err.Error(), "not available")
	if got := config.PostgresStoreAvailable(); got == refused {
		t.Errorf("PostgresStoreAvailable() = %v, but the server's check says %v", got, err)
	}
}

// TestNodesWithoutSecrets: validate, which has no secrets, accepts
// servers whose store URLs it cannot read (taken as the same store).
func TestNodesWithoutSecrets(t *testing.T) {
	withStore(t, true)
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(nodes)},
		config.LoadOptions{NoSecrets: true, Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(cfg.Domains[0].Servers) != 2 || cfg.Servers[0].Store == nil || cfg.Servers[0].Store.Postgres.Str != "" {
		t.Errorf("servers %v, store %+v", cfg.Domains[0].Servers, cfg.Servers[0].Store)
	}
}

// TestNodesMTASTS: a domain of several servers may have an mta_sts block
// in any mode: each server serves a policy naming every MX (plan/desired).
func TestNodesMTASTS(t *testing.T) {
	withStore(t, true)
	for _, mode := range []string{"testing", "enforce", "none"} {
		src := strings.Replace(nodes, "servers = [server.a, server.b]", "servers = [server.a, server.b]\n  mta_sts { mode = \""+mode+"\" }", 1)
		cfg, diags, text := loadNodes(t, src)
		if len(diags) != 0 {
			t.Errorf("mode %s: diagnostics %q\n%s", mode, diags, text)
			continue
		}
		if d := cfg.Domains[0]; d.MTASTS == nil || d.MTASTS.Mode != mode || len(d.Servers) != 2 {
			t.Errorf("mode %s: mta_sts %+v, servers %v", mode, d.MTASTS, d.Servers)
		}
	}
}
