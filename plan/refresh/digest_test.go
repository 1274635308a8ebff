package refresh_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
)

const digestBase = `provider "zonefile" "z" {
  dir = "zones"
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls {
    acme_email = "admin@example.org"
  }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
`

func digestOf(t *testing.T, src string) string {
	t.Helper()
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: anyEnv})
	if diags.HasErrors() {
		t.Fatalf("load: %v\n%s", diags, src)
	}
	return refresh.ConfigDigest(cfg)
}

// TestConfigDigestIgnoresComments: comments, blank lines and alignment do
// not change the digest a saved plan is checked against; a value does.
func TestConfigDigestIgnoresComments(t *testing.T) {
	t.Parallel()
	base := digestOf(t, digestBase)
	for name, src := range map[string]string{
		"line comments": "# Our mail.\n// more\n" + strings.Replace(digestBase, "server \"mx1\" {\n", "server \"mx1\" { # the VPS\n", 1),
		"blank lines":   strings.ReplaceAll(digestBase, "}\n", "}\n\n\n"),
		"block comment": strings.Replace(digestBase, `dir = "zones"`, `dir = /* relative */ "zones" /* to here */`, 1),
		"alignment":     strings.Replace(digestBase, "  dns    = provider", "  dns = provider", 1),
		"comment lines": strings.Replace(digestBase, "  tls {\n", "  # Let's Encrypt\n\n  tls {\n", 1),
		"CRLF, indent":  strings.ReplaceAll(strings.ReplaceAll(digestBase, "\n", "\r\n"), "\n  ", "\n\t"),
	} {
		if got := digestOf(t, src); got != base {
			t.Errorf("%s: digest %s, want %s (unchanged)", name, got, base)
		}
	}
	for name, src := range map[string]string{
		"a value":           strings.Replace(digestBase, "203.0.113.10", "203.0.113.11", 1),
		"an attribute":      strings.Replace(digestBase, "  server = server.mx1\n", "  server = server.mx1\n  zone = \"example.org\"\n", 1),
		"a string's spaces": strings.Replace(digestBase, `dir = "zones"`, `dir = "zones "`, 1),
		"a # in a string":   strings.Replace(digestBase, `dir = "zones"`, `dir = "zones#1"`, 1),
	} {
		if got := digestOf(t, src); got == base {
			t.Errorf("%s: digest unchanged, want a new one", name)
		}
	}
}
