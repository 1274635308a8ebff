// Package examples holds example configurations; its test loads and
// validates each of them with the real loader.
package examples_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/server/auth"
)

// exampleDirs lists the directories of examples/ that hold *.hcl files.
func exampleDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(e.Name(), "*.hcl")); len(m) > 0 {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) < 3 {
		t.Fatalf("found example directories %v, want at least quickstart, multi-domain and local", dirs)
	}
	return dirs
}

// load loads an example with every env() variable set to a dummy secret.
func load(t *testing.T, dir string) *config.Config {
	t.Helper()
	cfg, diags := config.Load(dir, config.LoadOptions{Getenv: func(name string) string { return "test-secret-" + name }})
	if len(diags) > 0 {
		var b strings.Builder
		config.WriteDiagnostics(&b, cfg.FilesOrNil(), diags, false)
		t.Fatalf("example %s has diagnostics:\n%s", dir, b.String())
	}
	return cfg
}

// TestExamplesValid loads every example; any diagnostic, even a warning, is
// a failure. Each example is also in canonical format and has a README.md.
func TestExamplesValid(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			cfg := load(t, dir)
			if len(cfg.Domains) == 0 || len(cfg.Servers) == 0 || len(cfg.Users) == 0 {
				t.Errorf("example %s: %d domains, %d servers, %d users; want at least one of each", dir, len(cfg.Domains), len(cfg.Servers), len(cfg.Users))
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if string(hclwrite.Format(src)) != string(src) {
					t.Errorf("%s is not in canonical format: run mailctl fmt", f)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
				t.Errorf("example %s has no README.md: %v", dir, err)
			}
		})
	}
}

// TestExamplePasswords checks that the password hashes of the examples are
// real argon2id hashes of the passwords their comments and READMEs give.
func TestExamplePasswords(t *testing.T) {
	want := map[string]map[string]string{
		"local": {
			"alice@example.test": "lab-alice-password",
			"bob@example.test":   "lab-bob-password",
		},
		"quickstart": {
			"alice@example.org": "quickstart-alice-password",
			"bob@example.org":   "quickstart-bob-password",
		},
		"multi-domain": {
			"alice@example.org": "multi-alice-password",
			"bob@example.com":   "multi-bob-password",
			"carol@example.net": "multi-carol-password",
		},
		"migration": {
			"alice@example.org": "migration-alice-password",
			"bob@example.org":   "migration-bob-password",
		},
		"multinode": {
			"alice@example.test": "lab-alice-password",
			"bob@example.test":   "lab-bob-password",
		},
	}
	for dir, users := range want {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			cfg := load(t, dir)
			if len(cfg.Users) != len(users) {
				t.Errorf("%d users, want %d", len(cfg.Users), len(users))
			}
			for _, u := range cfg.Users {
				pw, ok := users[u.Address]
				if !ok {
					t.Errorf("unexpected user %s", u.Address)
					continue
				}
				ok, err := auth.VerifyPassword(u.PasswordHash.Str, pw)
				if err != nil || !ok {
					t.Errorf("password of %s: VerifyPassword(hash, %q) = %v, %v; want true", u.Address, pw, ok, err)
				}
			}
		})
	}
}

// TestLocalLabMatchesSpec checks examples/local against what its README
// promises: example.test, a zone file, the lab ports, no secrets.
func TestLocalLabMatchesSpec(t *testing.T) {
	cfg := load(t, "local")
	if len(cfg.Domains) != 1 || cfg.Domains[0].Name != "example.test" {
		t.Fatalf("domains = %v, want example.test", cfg.Domains)
	}
	d := cfg.Domains[0]
	if d.DNS == nil || d.DNS.Kind != "zonefile" || d.DNS.Attrs["dir"].Str != ".mailctl/zones" {
		t.Errorf("DNS provider = %+v, want zonefile with dir .mailctl/zones", d.DNS)
	}
	if len(cfg.Servers) != 1 {
		t.Fatalf("%d servers, want 1", len(cfg.Servers))
	}
	s := cfg.Servers[0]
	if d.Server != s {
		t.Errorf("domain server = %v, want %s", d.Server, s.Name)
	}
	if s.Hostname != "mail.example.test" || s.IPv4.String() != "127.0.0.1" || s.IPv6.IsValid() {
		t.Errorf("server = %s %v %v, want mail.example.test on 127.0.0.1 only", s.Hostname, s.IPv4, s.IPv6)
	}
	if s.Local == nil || s.Local.Dir != ".mailctl" || s.SSH != nil {
		t.Errorf("target: local %+v, ssh %+v; want local in .mailctl, no ssh", s.Local, s.SSH)
	}
	if !s.TLS.SelfSigned || s.TLS.ACMEEmail != "" {
		t.Errorf("tls = %+v, want self-signed", s.TLS)
	}
	wantPorts := config.Ports{SMTP: 2525, Submission: 2587, Submissions: 2465, IMAP: 2143, IMAPS: 2993, HTTPS: 2443}
	if got := s.Ports; got != wantPorts { // HTTP 0: off, port 80 would need root
		t.Errorf("ports = %+v, want %+v", got, wantPorts)
	}
	var aliases []string
	for _, a := range cfg.Aliases {
		aliases = append(aliases, a.Address+" -> "+strings.Join(a.To, ","))
	}
	if want := []string{"postmaster@example.test -> alice@example.test", "abuse@example.test -> alice@example.test"}; !slices.Equal(aliases, want) {
		t.Errorf("aliases = %q, want %q", aliases, want)
	}
}

// TestMigrationExample checks examples/migration: a Google Workspace
// migration of example.org in phase presync, one user with an app
// password, one with an OAuth2 token command.
func TestMigrationExample(t *testing.T) {
	cfg := load(t, "migration")
	if len(cfg.Migrations) != 1 {
		t.Fatalf("%d migrations, want 1", len(cfg.Migrations))
	}
	m := cfg.Migrations[0]
	if m.Phase != config.PhasePresync || m.Source.Address != "imap.gmail.com:993" || m.Source.TLS != "implicit" || m.Target != nil {
		t.Errorf("migration = %+v, want presync from imap.gmail.com:993 to each user's server", m)
	}
	if len(m.Domains) != 1 || m.Domains[0] != "example.org" || cfg.MigrationFor("example.org") != m {
		t.Errorf("domains = %v, want [example.org]", m.Domains)
	}
	if len(m.Users) != 2 {
		t.Fatalf("%d migration users, want 2", len(m.Users))
	}
	alice, bob := m.Users[0], m.Users[1]
	if alice.Password.Str != "test-secret-ALICE_GOOGLE_APP_PASSWORD" || !alice.Password.Sensitive || alice.TokenCommand != "" {
		t.Errorf("alice = %+v, want an app password from ALICE_GOOGLE_APP_PASSWORD", alice)
	}
	if bob.Password.Str != "" || !strings.HasPrefix(bob.TokenCommand, "gcloud auth print-access-token") {
		t.Errorf("bob = %+v, want an OAuth2 token command", bob)
	}
	for _, u := range m.Users {
		if u.TargetPassword.Str == "" || !u.TargetPassword.Sensitive {
			t.Errorf("%s: target password %+v, want a sensitive value", u.Address, u.TargetPassword)
		}
	}
}

// TestMultinodeExample checks examples/multinode: two local servers of
// example.test, equal MX preferences, one PostgreSQL store whose URL is
// a secret.
func TestMultinodeExample(t *testing.T) {
	cfg := load(t, "multinode")
	if len(cfg.Domains) != 1 || len(cfg.Domains[0].Servers) != 2 {
		t.Fatalf("domains = %v, want example.test on two servers", cfg.Domains)
	}
	d := cfg.Domains[0]
	for _, s := range d.Servers {
		if s.Local == nil || !s.IPv4.IsLoopback() || d.MXPriorityOf(s) != config.DefaultMXPriority {
			t.Errorf("server %s: local %v, ipv4 %v, MX priority %d; want a local server on loopback, priority 10", s.Name, s.Local, s.IPv4, d.MXPriorityOf(s))
		}
		if s.Store == nil || !s.Store.Postgres.Sensitive || s.Store.Postgres.Str != "postgres://mailctl:test-secret-MAILCTL_PG_PASSWORD@127.0.0.1:5432/mailctl" {
			t.Errorf("server %s: store %+v, want the sensitive URL with the password from MAILCTL_PG_PASSWORD", s.Name, s.Store)
		}
	}
	if d.Servers[0].IPv4 == d.Servers[1].IPv4 {
		t.Errorf("both servers on %v: they need an address each", d.Servers[0].IPv4)
	}
}
