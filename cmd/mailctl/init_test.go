package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/mailctl/mailctl/server/auth"
)

func init() {
	// The DKIM selector carries the year: pin it for the golden files.
	initNow = func() time.Time { return time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) }
}

var hashLine = regexp.MustCompile(`(password_hash\s*=\s*")([^"]*)(")`)

// checkScaffold checks that a generated mail.hcl parses, is in canonical
// format and holds a well-formed placeholder hash, and returns it with the
// (random) hash replaced by <HASH>.
func checkScaffold(t *testing.T, conf string) string {
	t.Helper()
	if _, diags := hclsyntax.ParseConfig([]byte(conf), "mail.hcl", hcl.InitialPos); diags.HasErrors() {
		t.Errorf("generated mail.hcl does not parse: %v", diags)
	}
	if f := string(hclwrite.Format([]byte(conf))); f != conf {
		t.Errorf("generated mail.hcl is not in canonical format:\n%s", unifiedDiff("mail.hcl", []byte(conf), []byte(f)))
	}
	m := hashLine.FindStringSubmatch(conf)
	if m == nil {
		t.Fatal("no password_hash in the generated mail.hcl")
	}
	if _, _, _, err := auth.ParseHash(m[2]); err != nil {
		t.Errorf("placeholder hash %q: %v", m[2], err)
	}
	return hashLine.ReplaceAllString(conf, "${1}<HASH>${3}")
}

// TestInitGolden runs init non-interactively for each DNS provider kind and
// compares mail.hcl with testdata/init/<case>/mail.hcl.
func TestInitGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"cloudflare", []string{"-domain", "example.org", "-ip", "203.0.113.10"}},
		{"ovh", []string{"-domain", "Example.ORG.", "-host", "mx1.example.org", "-ip", "203.0.113.10,2001:db8::10", "-dns", "ovh"}},
		{"rfc2136", []string{"-domain", "example.org", "-host", "smtp.example.net", "-ip", "203.0.113.10, 2001:db8::10", "-dns", "rfc2136"}},
		{"zonefile", []string{"-domain", "example.test", "-host", "mail.example.test", "-ip", "127.0.0.1", "-dns", "zonefile"}},
		{"google", []string{"-domain", "example.org", "-ip", "203.0.113.10", "-current-mail", "google"}},
		{"imap", []string{"-domain", "example.org", "-ip", "203.0.113.10", "-dns", "ovh", "-current-mail", "imap.example.net:993"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "new")
			e, stdout, stderr := testEnv(dir)
			if code := runCLI(t, e, append([]string{"init"}, tt.args...)...); code != exitOK {
				t.Fatalf("init = %d: %s", code, stderr)
			}
			raw := readFile(t, filepath.Join(dir, "mail.hcl"))
			// mail.hcl holds password hashes: readable by its owner only.
			if fi, err := os.Stat(filepath.Join(dir, "mail.hcl")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("mail.hcl mode = %v, %v; want 0600", fi.Mode().Perm(), err)
			}
			conf := checkScaffold(t, raw)
			// The scaffold is a valid configuration once its env() secrets are set.
			e2, _, stderr2 := testEnv(dir)
			e2.Getenv = func(name string) string { return "secret-" + name }
			if code := runCLI(t, e2, "validate"); code != exitOK {
				t.Errorf("validate of the scaffold = %d:\n%s", code, stderr2)
			}
			// The commented ptr line names a provider that can set it:
			// the one declared (OVH), or the Hetzner block the comment shows.
			withPTR := strings.Replace(raw, "  # ptr = provider.", "  ptr = provider.", 1)
			if withPTR == raw {
				t.Fatal("no commented ptr line")
			}
			if !strings.Contains(raw, "ptr = provider.ovh.main") {
				withPTR += "provider \"hetzner\" \"cloud\" { token = env(\"HCLOUD_TOKEN\") }\n"
			}
			writeFile(t, filepath.Join(dir, "mail.hcl"), withPTR, 0o644)
			e3, _, stderr3 := testEnv(dir)
			e3.Getenv = e2.Getenv
			if code := runCLI(t, e3, "validate"); code != exitOK {
				t.Errorf("validate with the ptr line uncommented = %d:\n%s", code, stderr3)
			}
			golden(t, filepath.Join("init", tt.name, "mail.hcl"), []byte(conf))
			if got := readFile(t, filepath.Join(dir, ".gitignore")); got != initGitignore {
				t.Errorf(".gitignore = %q, want %q", got, initGitignore)
			}
			for _, want := range []string{"Wrote " + filepath.Join(dir, "mail.hcl"), "mailctl passwd"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout = %q, want it to mention %q", stdout, want)
				}
			}
		})
	}
}

func TestInitNeverOverwrites(t *testing.T) {
	t.Run("mail.hcl", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "mail.hcl"), "# mine\n", 0o644)
		e, _, stderr := testEnv(dir)
		code := runCLI(t, e, "init", "-domain", "example.org", "-ip", "203.0.113.10")
		if code != exitError || !strings.Contains(stderr.String(), filepath.Join(dir, "mail.hcl")+" already exists") {
			t.Errorf("init = %d, stderr %q; want 1 naming mail.hcl", code, stderr)
		}
		if got := readFile(t, filepath.Join(dir, "mail.hcl")); got != "# mine\n" {
			t.Errorf("mail.hcl changed to %q", got)
		}
		if _, err := os.Stat(filepath.Join(dir, ".gitignore")); err == nil {
			t.Errorf(".gitignore written although init failed")
		}
	})
	t.Run(".gitignore kept", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, ".gitignore"), "bin/\n", 0o644)
		e, stdout, stderr := testEnv(dir)
		if code := runCLI(t, e, "init", "-domain", "example.org", "-ip", "203.0.113.10"); code != exitOK {
			t.Fatalf("init = %d: %s", code, stderr)
		}
		if got := readFile(t, filepath.Join(dir, ".gitignore")); got != "bin/\n" {
			t.Errorf(".gitignore changed to %q", got)
		}
		if !strings.Contains(stdout.String(), "add the lines .mailctl/ and *.mailplan") {
			t.Errorf("stdout = %q, want advice about .gitignore", stdout)
		}
	})
}

func TestInitInvalid(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"not a terminal", nil, "missing -domain and -ip (standard input is not a terminal"},
		{"missing ip", []string{"-domain", "example.org"}, "missing -ip"},
		{"one label", []string{"-domain", "localhost", "-ip", "203.0.113.10"}, "at least two labels"},
		{"underscore", []string{"-domain", "ex_ample.org", "-ip", "203.0.113.10"}, `character '_'`},
		{"hyphen", []string{"-domain", "-bad.org", "-ip", "203.0.113.10"}, "starts or ends with a hyphen"},
		{"address given", []string{"-domain", "alice@example.org", "-ip", "203.0.113.10"}, "without a user@ part"},
		{"empty label", []string{"-domain", "example..org", "-ip", "203.0.113.10"}, "empty label"},
		{"host is an IP", []string{"-domain", "example.org", "-host", "203.0.113.10", "-ip", "203.0.113.10"}, "all digits"},
		{"long label", []string{"-domain", strings.Repeat("a", 64) + ".org", "-ip", "203.0.113.10"}, "longer than 63"},
		{"bad ip", []string{"-domain", "example.org", "-ip", "203.0.113.300"}, "not an IPv4 or IPv6 address"},
		{"zone", []string{"-domain", "example.org", "-ip", "fe80::1%eth0"}, "not an IPv4 or IPv6 address"},
		{"unspecified", []string{"-domain", "example.org", "-ip", "0.0.0.0"}, "cannot be a server's address"},
		{"no v4", []string{"-domain", "example.org", "-ip", "2001:db8::10"}, "IPv4 address is required"},
		{"two v4", []string{"-domain", "example.org", "-ip", "203.0.113.10,203.0.113.11"}, "two IPv4 addresses"},
		{"dns kind", []string{"-domain", "example.org", "-ip", "203.0.113.10", "-dns", "route53"}, `-dns "route53": want one of cloudflare, ovh, rfc2136, zonefile`},
		{"argument", []string{"example.org"}, "init takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e, _, stderr := testEnv(dir)
			code := runCLI(t, e, append([]string{"init"}, tt.args...)...)
			if code != exitError || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("init = %d, stderr %q; want 1 and %q", code, stderr, tt.wantErr)
			}
			if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n"); lines != 0 {
				t.Errorf("stderr has %d lines, want one: %q", lines+1, stderr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("init failed but wrote %d files", len(entries))
			}
		})
	}
}

// TestInitInteractive answers the questions on a (simulated) terminal: an
// invalid answer is asked again, an empty one takes the default.
func TestInitInteractive(t *testing.T) {
	dir := t.TempDir()
	e, _, stderr := testEnv(dir)
	e.IsTerminal = true
	e.Stdin = strings.NewReader("not a domain\nexample.org\n\n999.1.1.1\n203.0.113.10\nbind\nrfc2136\nyes\n\n")
	if code := runCLI(t, e, "init"); code != exitOK {
		t.Fatalf("init = %d: %s", code, stderr)
	}
	conf := readFile(t, filepath.Join(dir, "mail.hcl"))
	checkScaffold(t, conf)
	for _, want := range []string{`hostname = "mail.example.org"`, `ipv4     = "203.0.113.10"`, `provider "rfc2136" "main"`, `dns    = provider.rfc2136.main`} {
		if !strings.Contains(conf, want) {
			t.Errorf("mail.hcl lacks %q", want)
		}
	}
	prompts := stderr.String()
	if strings.Contains(conf, "migration") {
		t.Errorf("answer no to the current-mail question wrote a migration block")
	}
	for _, want := range []string{"Mail domain", `is not a valid domain name`, "Server hostname (its EHLO and TLS name) [mail.example.org]: ", "not an IPv4 or IPv6 address", `-dns "bind"`,
		"Does example.org receive mail elsewhere today?", `"yes" is none of no, google, microsoft`} {
		if !strings.Contains(prompts, want) {
			t.Errorf("prompts %q lack %q", prompts, want)
		}
	}

	// Input that ends before every answer is given is an error.
	dir = t.TempDir()
	e, _, stderr = testEnv(dir)
	e.IsTerminal = true
	e.Stdin = strings.NewReader("example.org\n")
	if code := runCLI(t, e, "init"); code != exitError || !strings.Contains(stderr.String(), "no answer") {
		t.Errorf("init with short input = %d, stderr %q; want 1, no answer", code, stderr)
	}
}

// TestInitMailElsewhere: init on a domain whose mail is at Google today,
// answered on a terminal, writes a migration block in its first phase;
// plan then keeps the MX at Google (no takeover warning), where the same
// scaffold without the block would take the mail away.
func TestInitMailElsewhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, _, stderr := testEnv(dir)
	e.IsTerminal = true
	e.Stdin = strings.NewReader("google\n")
	if code := runCLI(t, e, "init", "-domain", "example.org", "-ip", "203.0.113.10", "-host", "mail.example.org", "-dns", "zonefile"); code != exitOK {
		t.Fatalf("init = %d: %s", code, stderr)
	}
	conf := readFile(t, filepath.Join(dir, "mail.hcl"))
	if !strings.Contains(conf, "migration \"google\" {\n  phase = \"presync\"") {
		t.Fatalf("no migration block in presync:\n%s", conf)
	}
	zone := filepath.Join(dir, "zones", "example.org.zone")
	if err := os.MkdirAll(filepath.Dir(zone), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, zone, googleZone, 0o644)
	getenv := func(name string) string { return "secret-" + name }
	e, out, errb := testEnv(dir)
	e.Getenv = getenv
	if code := runCLI(t, e, "plan", "-target", "dns.example.org"); code != 0 {
		t.Fatalf("plan = %d\n%s%s", code, out, errb)
	}
	if strings.Contains(out.String(), "taken away") || !strings.Contains(out.String(), "1 aspmx.l.google.com.") {
		t.Errorf("plan with the migration block:\n%s", out)
	}
	// Without the block, the same plan is a takeover.
	i := strings.Index(conf, "\n# example.org receives its mail at Google Workspace today.")
	if i < 0 {
		t.Fatal("migration comment not found")
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf[:i+1], 0o644)
	e, out, _ = testEnv(dir)
	e.Getenv = getenv
	if code := runCLI(t, e, "plan", "-target", "dns.example.org"); code != 0 || !strings.Contains(out.String(), "Warning: mail for example.org is taken away from Google Workspace") {
		t.Errorf("plan without the migration block = %d:\n%s", code, out)
	}
}
