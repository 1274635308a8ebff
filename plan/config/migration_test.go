package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/mailctl/mailctl/plan/config"
)

// migrationBase extends base with a second user and a valid migration.
const migrationBase = base + `user "bob@example.org" { password_hash = "` + hash + `" }
migration "google" {
  source {
    ca_file = "ca.pem"
  }
  user "alice@example.org" {
    password        = env("CF_TOKEN")
    target_password = env("OVH_CK")
  }
  user "bob@example.org" {
    login                = "bob@old.example.org"
    oauth2_token_command = "gcloud auth print-access-token bob@old.example.org"
    target_password      = "literal"
  }
  folders = { "Clients/ACME" = "ACME" }
}
`

func TestMigrationDefaults(t *testing.T) {
	t.Parallel()
	cfg, diags := load(t, migrationBase)
	if diags.HasErrors() {
		t.Fatalf("migration base: %v", diags)
	}
	if len(cfg.Migrations) != 1 {
		t.Fatalf("migrations = %d, want 1", len(cfg.Migrations))
	}
	m := cfg.Migrations[0]
	if m.Name != "google" || m.Phase != config.PhasePresync || m.Duplicates || m.Target != nil {
		t.Errorf("migration = %+v", m)
	}
	if want := (config.MigrationEndpoint{Address: "imap.gmail.com:993", TLS: "implicit", CAFile: "ca.pem"}); m.Source != want {
		t.Errorf("source = %+v, want %+v", m.Source, want)
	}
	if !reflect.DeepEqual(m.Domains, []string{"example.org"}) {
		t.Errorf("domains = %v, want the users' domains [example.org]", m.Domains)
	}
	if !reflect.DeepEqual(m.Exclude, []string{"[Gmail]/Important", "[Gmail]/Starred"}) {
		t.Errorf("exclude = %v, want the defaults", m.Exclude)
	}
	if !reflect.DeepEqual(m.Folders, map[string]string{"Clients/ACME": "ACME"}) {
		t.Errorf("folders = %v", m.Folders)
	}
	a, b := m.Users[0], m.Users[1]
	if a.Address != "alice@example.org" || a.Login != "alice@example.org" || a.Password.Str != "cf-secret" || !a.Password.Sensitive ||
		a.TokenCommand != "" || a.TargetPassword.Str != "ck" || !a.TargetPassword.Sensitive {
		t.Errorf("alice = %+v", a)
	}
	if b.Login != "bob@old.example.org" || b.Password.Str != "" || b.TokenCommand == "" || b.TargetPassword.Str != "literal" || !b.TargetPassword.Sensitive {
		t.Errorf("bob = %+v", b)
	}
	if got := b.TargetPassword.String(); got != "(sensitive)" {
		t.Errorf("target_password prints %q", got)
	}
	if cfg.MigrationFor("example.org") != m || cfg.MigrationFor("example.net") != nil {
		t.Errorf("MigrationFor: wrong migration")
	}
}

func TestMigrationExplicit(t *testing.T) {
	t.Parallel()
	src := base + `migration "old" {
  phase      = "cutover"
  domains    = ["Example.org."]
  duplicates = true
  exclude    = ["Archive/*"]
  source {
    address = "127.0.0.1:11143"
    tls     = "none"
  }
  target {
    address = "[::1]:10993"
    tls     = "starttls"
  }
  user "alice@example.org" {
    password        = "app"
    target_password = "t"
  }
}
`
	cfg, diags := load(t, src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	m := cfg.Migrations[0]
	if m.Phase != "cutover" || !m.Duplicates || !reflect.DeepEqual(m.Domains, []string{"example.org"}) || !reflect.DeepEqual(m.Exclude, []string{"Archive/*"}) {
		t.Errorf("migration = %+v", m)
	}
	if m.Source != (config.MigrationEndpoint{Address: "127.0.0.1:11143", TLS: "none"}) {
		t.Errorf("source = %+v", m.Source)
	}
	if m.Target == nil || *m.Target != (config.MigrationEndpoint{Address: "[::1]:10993", TLS: "starttls"}) {
		t.Errorf("target = %+v", m.Target)
	}
	if !m.Users[0].Password.Sensitive {
		t.Errorf("a literal source password is not marked sensitive")
	}
}

func TestMigrationRules(t *testing.T) {
	t.Parallel()
	user := "user \"alice@example.org\" {\n password = \"p\"\n target_password = \"t\"\n}\n"
	cases := []struct {
		name string
		body string   // the migration block's body; line 27 is its first line
		add  string   // appended after the migration block
		want []string // "line:Summary"
		// secret are the users' SecretErrors, "line:Summary".
		secret []string
	}{
		{name: "minimal", body: user},
		{name: "phase", body: "phase = \"switch\"\n" + user, want: []string{"27:Invalid migration phase"}},
		{name: "no users", body: "phase = \"done\"\n", want: []string{"26:Migration without users"}},
		{name: "undeclared user", body: "user \"carol@example.org\" {\n password = \"p\"\n target_password = \"t\"\n}\n",
			want: []string{"27:Unknown migration user"}},
		{name: "both logins", body: "user \"alice@example.org\" {\n password = \"p\"\n oauth2_token_command = \"tok\"\n target_password = \"t\"\n}\n",
			want: []string{"29:Invalid source login"}},
		{name: "no login", body: "user \"alice@example.org\" {\n target_password = \"t\"\n}\n", want: []string{"27:Invalid source login"}},
		{name: "no target password", body: "user \"alice@example.org\" {\n password = \"p\"\n}\n", want: []string{"27:Missing required argument"}},
		{name: "duplicate user", body: user + user, want: []string{"31:Duplicate migration user"}},
		{name: "tls mode", body: "source {\n tls = \"ssl\"\n}\n" + user, want: []string{"28:Invalid TLS mode"}},
		{name: "tls none remote", body: "source {\n address = \"imap.example.net:143\"\n tls = \"none\"\n}\n" + user, want: []string{"29:TLS required"}},
		{name: "tls none default address", body: "source {\n tls = \"none\"\n}\n" + user, want: []string{"28:TLS required"}},
		{name: "tls none localhost", body: "source {\n address = \"localhost:143\"\n tls = \"none\"\n}\n" + user},
		{name: "target tls none remote", body: "target {\n address = \"192.0.2.1:143\"\n tls = \"none\"\n}\n" + user, want: []string{"29:TLS required"}},
		{name: "target without address", body: "target {\n tls = \"starttls\"\n}\n" + user, want: []string{"27:Missing required argument"}},
		{name: "bad address", body: "source {\n address = \"imap.gmail.com\"\n}\n" + user, want: []string{"28:Invalid address"}},
		{name: "undeclared domain", body: "domains = [\"example.net\"]\n" + user, want: []string{"27:Migration of an undeclared domain"}},
		{name: "bad domain", body: "domains = [\"not a domain\"]\n" + user, want: []string{"27:Invalid domain name"}},
		{name: "two migrations of a domain", body: user,
			add:  "migration \"other\" {\n" + user + "}\n",
			want: []string{"32:Domain in two migrations"}},
		{name: "duplicate name", body: "domains = []\n" + user,
			add:  "migration \"google\" {\n" + user + "}\n",
			want: []string{"33:Duplicate migration"}},
		{name: "folders not a map", body: "folders = [\"a\"]\n" + user, want: []string{"27:Incorrect attribute value type"}},
		{name: "empty folder", body: "folders = { \"a\" = \"\" }\n" + user, want: []string{"27:Invalid folder mapping"}},
		{name: "exclude everything", body: "exclude = [\"*\"]\n" + user, want: []string{"27:Invalid exclusion"}},
		{name: "unknown attribute", body: "labels = true\n" + user, want: []string{"27:Unsupported argument"}},
		// Only migrate needs the migration's secrets: their errors are
		// the user's SecretErrors (secret below), not the configuration's.
		{name: "unknown env", body: "user \"alice@example.org\" {\n password = env(\"NOPE\")\n target_password = env(\"NOPE2\")\n}\n",
			secret: []string{"28:Error in function call", "29:Error in function call"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := base + "migration \"google\" {\n" + tc.body + "}\n" + tc.add
			cfg, diags := load(t, src)
			got := summaries(diags)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("diagnostics = %q, want %q\n%s", got, tc.want, diags)
			}
			var secret []string
			if cfg != nil && len(cfg.Migrations) > 0 {
				for _, u := range cfg.Migrations[0].Users {
					secret = append(secret, summaries(u.SecretErrors)...)
				}
			}
			if strings.Join(secret, "\n") != strings.Join(tc.secret, "\n") {
				t.Errorf("secret errors = %q, want %q", secret, tc.secret)
			}
		})
	}
}

func TestServerResolvers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, value string
		want        []string
		diag        string
	}{
		{"ipv4 and ipv6", `["127.0.0.1:5353", "[2001:db8::53]:53"]`, []string{"127.0.0.1:5353", "[2001:db8::53]:53"}, ""},
		{"over TCP", `["tcp://127.0.0.1:5353"]`, []string{"tcp://127.0.0.1:5353"}, ""},
		{"no port", `["127.0.0.1"]`, nil, "Invalid resolver"},
		{"other scheme", `["udp://127.0.0.1:53"]`, nil, "Invalid resolver"},
		{"host name", `["dns.example.net:53"]`, nil, "Invalid resolver"},
		{"port 0", `["127.0.0.1:0"]`, nil, "Invalid resolver"},
		{"not a list", `"127.0.0.1:53"`, nil, "Incorrect attribute value type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := strings.Replace(base, `  ptr      = provider.ovh.eu`, "  ptr      = provider.ovh.eu\n  resolvers = "+tc.value, 1)
			cfg, diags := load(t, src)
			var got []string
			for _, d := range diags {
				got = append(got, d.Summary)
			}
			if strings.Join(got, ",") != tc.diag {
				t.Fatalf("diagnostics = %q, want %q (%v)", got, tc.diag, diags)
			}
			if tc.diag == "" && !reflect.DeepEqual(cfg.Servers[0].Resolvers, tc.want) {
				t.Errorf("resolvers = %v, want %v", cfg.Servers[0].Resolvers, tc.want)
			}
		})
	}
}

// TestMigrationFormat: the canonical formatting that mailctl fmt writes
// (hclwrite.Format) of a migration block loads to the same configuration.
func TestMigrationFormat(t *testing.T) {
	t.Parallel()
	messy := strings.NewReplacer("  ", "      ", " = ", "=").Replace(migrationBase)
	formatted := string(hclwrite.Format([]byte(messy)))
	if formatted == messy {
		t.Fatal("the messy source is already canonical: the test checks nothing")
	}
	want, diags := load(t, migrationBase)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got, diags := load(t, formatted)
	if diags.HasErrors() {
		t.Fatalf("formatted source: %v\n%s", diags, formatted)
	}
	w, g := *want.Migrations[0], *got.Migrations[0]
	w.DeclRange, g.DeclRange = hcl.Range{}, hcl.Range{}
	w.Users, g.Users = nil, nil
	if !reflect.DeepEqual(w, g) {
		t.Errorf("formatted migration = %+v, want %+v", g, w)
	}
	for i, u := range want.Migrations[0].Users {
		a, b := *u, *got.Migrations[0].Users[i]
		a.DeclRange, b.DeclRange = hcl.Range{}, hcl.Range{}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("formatted user %d = %+v, want %+v", i, b, a)
		}
	}
}
