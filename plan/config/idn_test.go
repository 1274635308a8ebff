package config_test

import "testing"

// TestMigrationInternationalUser: a migrated user written with U-labels
// is the configured user (A-labels), and logs in at the source as written.
func TestMigrationInternationalUser(t *testing.T) {
	t.Parallel()
	src := base + `domain "bücher.example" {
  dns    = provider.cloudflare.main
  server = server.mx1
}
user "anna@xn--bcher-kva.example" { password_hash = "` + hash + `" }
migration "old" {
  domains = ["Bücher.example"]
  user "anna@bücher.example" {
    password        = "p"
    target_password = "x"
  }
}
`
	cfg, diags := load(t, src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	m := cfg.Migrations[0]
	if u := m.Users[0]; u.Address != "anna@xn--bcher-kva.example" || u.Login != "anna@bücher.example" {
		t.Errorf("migration user = %q login %q", u.Address, u.Login)
	}
	if len(m.Domains) != 1 || m.Domains[0] != "xn--bcher-kva.example" || cfg.MigrationFor("xn--bcher-kva.example") != m {
		t.Errorf("migration domains = %q", m.Domains)
	}
}
