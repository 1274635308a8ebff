package config_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/mailctl/mailctl/plan/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// A real argon2id hash (of "x"), made with server/auth.
const hash = `$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ`

// base is a valid configuration each case extends.
const base = `
provider "cloudflare" "main" { api_token = env("CF_TOKEN") }
provider "ovh" "eu" {
  endpoint           = "ovh-eu"
  application_key    = "ak"
  application_secret = env("OVH_SECRET")
  consumer_key       = env("OVH_CK")
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  ipv6     = "2001:db8::10"
  ptr      = provider.ovh.eu
  ssh { host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb1i9EEZyC6ndcxR5ALy4QZUAmW3FSLCbFTJ0xFpYzD" }
  tls { acme_email = "admin@example.org" }
}
domain "example.org" {
  dns    = provider.cloudflare.main
  server = server.mx1
}
user "alice@example.org" {
  password_hash = "` + hash + `"
  aliases       = ["contact@example.org"]
  quota         = "10GiB"
}
`

func getenv(name string) string {
	return map[string]string{"CF_TOKEN": "cf-secret", "OVH_SECRET": "s", "OVH_CK": "ck", "MAILCTL_VAR_region": "eu"}[name]
}

func load(t *testing.T, src string) (*config.Config, hcl.Diagnostics) {
	t.Helper()
	return config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: getenv})
}

// summaries returns "line:Summary" for each diagnostic, sorted.
func summaries(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		line := 0
		if d.Subject != nil {
			line = d.Subject.Start.Line
		}
		out = append(out, fmt.Sprintf("%d:%s", line, d.Summary))
	}
	sort.Slice(out, func(i, j int) bool {
		var li, lj int
		fmt.Sscanf(out[i], "%d:", &li)
		fmt.Sscanf(out[j], "%d:", &lj)
		if li != lj {
			return li < lj
		}
		return out[i] < out[j]
	})
	return out
}

func TestValidBase(t *testing.T) {
	t.Parallel()
	cfg, diags := load(t, base)
	if diags.HasErrors() {
		t.Fatalf("base config: %v", diags)
	}
	s := cfg.Servers[0]
	if s.Hostname != "mx1.example.org" || s.IPv4.String() != "203.0.113.10" || s.IPv6.String() != "2001:db8::10" {
		t.Errorf("server = %+v", s)
	}
	if s.PTR == nil || s.PTR.Addr() != "provider.ovh.eu" {
		t.Errorf("server ptr = %v, want provider.ovh.eu", s.PTR)
	}
	if s.SSH == nil || s.SSH.Address != "203.0.113.10:22" || s.SSH.User != "root" {
		t.Errorf("ssh defaults = %+v", s.SSH)
	}
	d := cfg.Domains[0]
	if d.DNS.Addr() != "provider.cloudflare.main" || d.Server != s || d.TTL != 3600 || d.DKIM.Selector != "mailctl" || d.SPF.All != "~all" || d.DMARC.Policy != "none" {
		t.Errorf("domain = %+v", d)
	}
	tok := cfg.Providers[0].Attrs["api_token"]
	if tok.Str != "cf-secret" || !tok.Sensitive || tok.String() != "(sensitive)" {
		t.Errorf("api_token = %#v, want sensitive cf-secret", tok)
	}
	if ak := cfg.Providers[1].Attrs["application_key"]; ak.Sensitive {
		t.Errorf("application_key literal marked sensitive")
	}
	if u := cfg.Users[0]; u.QuotaBytes != 10<<30 || !u.PasswordHash.Sensitive || len(u.Aliases) != 1 {
		t.Errorf("user = %+v", u)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		add  string    // appended to base
		repl [2]string // optional replacement in base
		want []string  // "line:Summary" (line relative to the whole file)
	}{
		{name: "valid extras", add: `
alias "postmaster@example.org" { to = ["alice@example.org"] }
alias "@example.org" { to = ["alice@example.org"] }
alias "fwd@example.org" { to = ["someone@elsewhere.net"] }
variable "region" {}
variable "token" {
  default   = "t"
  sensitive = true
}
provider "rfc2136" "home" {
  server    = "127.0.0.1:53"
  tsig_name = "mailctl."
  tsig_key  = var.token
}
domain "example.net" {
  dns    = provider.rfc2136.home
  server = server.mx1
  spf {
    include = ["amazonses.com", "_spf.google.com"]
    all     = "-all"
  }
  dmarc {
    policy = "quarantine"
    rua    = ["mailto:dmarc@example.org"]
    pct    = 50
    adkim  = "s"
  }
  mta_sts {
    mode    = "enforce"
    max_age = "14d"
  }
  tls_rpt { rua = ["mailto:tls@example.org", "https://r.example.org/tls"] }
  dkim    { selector = "mx1-2026" }
}
`},
		{name: "bad SPF include", add: "domain \"example.net\" {\n dns = provider.cloudflare.main\n server = server.mx1\n spf { include = [\"_spf..google.com\"] }\n}\n", want: []string{"29:Invalid SPF include"}},
		{name: "unknown block", add: "mailbox \"x\" {}\n", want: []string{"26:Unsupported block type"}},
		{name: "unknown attribute", repl: [2]string{`ipv6     = "2001:db8::10"`, `ipv6     = "2001:db8::10"
  colour = "red"`}, want: []string{"13:Unsupported argument"}},
		{name: "missing attribute", repl: [2]string{`  ipv4     = "203.0.113.10"`, ``}, want: []string{"9:Missing required argument"}},
		{name: "bad ipv4", repl: [2]string{`"203.0.113.10"`, `"203.0.113"`}, want: []string{"11:Invalid IPv4 address"}},
		{name: "ipv6 in ipv4", repl: [2]string{`"203.0.113.10"`, `"2001:db8::1"`}, want: []string{"11:Invalid IPv4 address"}},
		{name: "bad ipv6", repl: [2]string{`"2001:db8::10"`, `"2001:db8::zz"`}, want: []string{"12:Invalid IPv6 address"}},
		{name: "bad hostname", repl: [2]string{`"mx1.example.org"`, `"mx1_bad"`}, want: []string{"10:Invalid hostname"}},
		{name: "bad user address", add: "user \"bob@@example.org\" { password_hash = \"" + hash + "\" }\n", want: []string{"26:Invalid e-mail address"}},
		{name: "bad quota", repl: [2]string{`"10GiB"`, `"ten gigs"`}, want: []string{"24:Invalid size"}},
		{name: "bad duration", add: "domain \"example.net\" {\n dns = provider.cloudflare.main\n server = server.mx1\n mta_sts { max_age = \"a week\" }\n}\n", want: []string{"29:Invalid duration"}},
		{name: "user outside domains", add: "user \"bob@example.com\" { password_hash = \"" + hash + "\" }\n", want: []string{"26:Address outside every domain"}},
		{name: "alias outside domains", add: "alias \"x@example.com\" { to = [\"alice@example.org\"] }\n", want: []string{"26:Address outside every domain"}},
		{name: "duplicate address user alias", add: "alias \"contact@example.org\" { to = [\"alice@example.org\"] }\n", want: []string{"26:Duplicate address"}},
		{name: "duplicate user", add: "user \"alice@example.org\" { password_hash = \"" + hash + "\" }\n", want: []string{"26:Duplicate address"}},
		{name: "alias loop", add: "alias \"a@example.org\" { to = [\"b@example.org\"] }\nalias \"b@example.org\" { to = [\"c@example.org\"] }\nalias \"c@example.org\" { to = [\"a@example.org\"] }\n", want: []string{"26:Alias loop"}},
		{name: "unknown alias target", add: "alias \"a@example.org\" { to = [\"nobody@example.org\"] }\n", want: []string{"26:Unknown alias target"}},
		{name: "undeclared provider", repl: [2]string{`dns    = provider.cloudflare.main`, `dns    = provider.cloudflare.other`}, want: []string{"18:Reference to undeclared provider"}},
		{name: "undeclared server", repl: [2]string{`server = server.mx1`, `server = server.mx2`}, want: []string{"19:Reference to undeclared server"}},
		{name: "quoted reference", repl: [2]string{`server = server.mx1`, `server = "server.mx1"`}, want: []string{"19:Invalid reference"}},
		{name: "dns provider as ptr", repl: [2]string{`ptr      = provider.ovh.eu`, `ptr      = provider.cloudflare.main`}, want: []string{"13:Provider cannot do this"}},
		{name: "ptr provider as dns", add: "provider \"hetzner\" \"h\" { token = \"t\" }\ndomain \"example.net\" {\n dns = provider.hetzner.h\n server = server.mx1\n}\n", want: []string{"28:Provider cannot do this"}},
		{name: "domain without server", add: "domain \"example.net\" {\n dns = provider.cloudflare.main\n}\n", want: []string{"26:Missing server"}},
		{name: "unknown provider kind", add: "provider \"route53\" \"aws\" {}\n", want: []string{"26:Unknown provider kind"}},
		{name: "provider missing credential", add: "provider \"cloudflare\" \"two\" {}\n", want: []string{"26:Missing required argument"}},
		{name: "env unset", repl: [2]string{`env("CF_TOKEN")`, `env("NOPE")`}, want: []string{"2:Error in function call"}},
		{name: "bad password hash", repl: [2]string{hash, "plaintext"}, want: []string{"22:Invalid password hash"}},
		{name: "tls two modes", repl: [2]string{`tls { acme_email = "admin@example.org" }`, `tls {
 acme_email = "admin@example.org"
 self_signed = true
}`}, want: []string{"15:Invalid tls block"}},
		{name: "missing tls", repl: [2]string{`tls { acme_email = "admin@example.org" }`, ``}, want: []string{"9:Missing tls block"}},
		{name: "bad host key", repl: [2]string{`ssh-ed25519 AAAAC3`, `ssh-ed25519 BBBB`}, want: []string{"14:Invalid host key"}},
		{name: "bad dmarc policy", add: "domain \"example.net\" {\n dns = provider.cloudflare.main\n server = server.mx1\n dmarc { policy = \"block\" }\n}\n", want: []string{"29:Invalid DMARC policy"}},
		{name: "bad rua", add: "domain \"example.net\" {\n dns = provider.cloudflare.main\n server = server.mx1\n dmarc { rua = [\"dmarc@example.org\"] }\n}\n", want: []string{"29:Invalid report address"}},
		{name: "duplicate domain", add: "domain \"example.org\" {\n dns = provider.cloudflare.main\n server = server.mx1\n}\n", want: []string{"26:Duplicate domain"}},
		{name: "required variable", add: "variable \"missing\" {}\n", want: []string{"26:No value for required variable"}},
		{name: "duplicate ports", repl: [2]string{`tls { acme_email = "admin@example.org" }`, `tls { acme_email = "admin@example.org" }
  ports {
    smtp = 2525
    submission = 2525
  }`}, want: []string{"16:Duplicate port"}},
		{name: "ssh and local", repl: [2]string{`tls { acme_email`, `local {}
  tls { acme_email`}, want: []string{"15:Conflicting targets"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := base
			if tc.repl[0] != "" {
				if !strings.Contains(src, tc.repl[0]) {
					t.Fatalf("replacement %q not in base", tc.repl[0])
				}
				src = strings.Replace(src, tc.repl[0], tc.repl[1], 1)
			}
			src += tc.add
			_, diags := load(t, src)
			got := summaries(diags)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("diagnostics = %q, want %q\n%s", got, tc.want, diags)
			}
		})
	}
}

// TestFiveMistakes: five different mistakes give five diagnostics in one
// run, on the right lines (the "done when").
func TestFiveMistakes(t *testing.T) {
	t.Parallel()
	cfg, diags := config.Load("testdata/five-mistakes", config.LoadOptions{Getenv: getenv})
	want := []string{
		"8:Invalid IPv4 address",
		"9:Provider cannot do this",
		"14:Reference to undeclared provider",
		"18:Address outside every domain",
		"19:Invalid password hash",
	}
	if got := summaries(diags); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics = %q, want %q", got, want)
	}
	var text, js bytes.Buffer
	config.WriteDiagnostics(&text, cfg.FilesOrNil(), diags, false)
	if err := config.WriteDiagnosticsJSON(&js, cfg.FilesOrNil(), diags); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/five-mistakes/diagnostics.txt", text.Bytes())
	golden(t, "testdata/five-mistakes/validate.json", js.Bytes())
}

func TestMultipleFilesMerge(t *testing.T) {
	t.Parallel()
	srcs := map[string][]byte{
		"a.hcl": []byte(base),
		"b.hcl": []byte(`alias "postmaster@example.org" { to = ["alice@example.org"] }`),
	}
	cfg, diags := config.LoadSources(t.TempDir(), srcs, config.LoadOptions{Getenv: getenv})
	if diags.HasErrors() || len(cfg.Aliases) != 1 {
		t.Fatalf("merge: %v aliases=%d", diags, len(cfg.Aliases))
	}
}

func TestVariablesAndFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token.txt"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(base, `env("CF_TOKEN")`, `file("token.txt")`, 1) + `
variable "region" {}
variable "ak" { default = "default-ak" }
`
	src = strings.Replace(src, `application_key    = "ak"`, `application_key    = "${var.ak}-${var.region}"`, 1)
	cfg, diags := config.LoadSources(dir, map[string][]byte{"mail.hcl": []byte(src)},
		config.LoadOptions{Getenv: getenv, Vars: map[string]string{"ak": "cli"}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if v := cfg.Providers[0].Attrs["api_token"]; v.Str != "from-file" || !v.Sensitive {
		t.Errorf("file() = %#v", v)
	}
	if v := cfg.Providers[1].Attrs["application_key"]; v.Str != "cli-eu" {
		t.Errorf("var from -var and MAILCTL_VAR_ = %q, want cli-eu", v.Str)
	}
}

func TestExamplesDirLoad(t *testing.T) {
	t.Parallel()
	if _, diags := config.Load(t.TempDir(), config.LoadOptions{}); !diags.HasErrors() || diags[0].Summary != "No configuration files" {
		t.Errorf("empty dir: %v", diags)
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(`domain "x" { dns = provider.a.b server = server.c }`))
	f.Add([]byte(`alias "@a.b" { to = ["${upper("x")}@a.b"] }`))
	f.Add([]byte(`server "s" { ports { smtp = 1e99 } }`))
	f.Add([]byte(migrationBase))
	f.Add([]byte(`migration "m" { folders = { a = null } user "x" { target_password = null } }`))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"f.hcl": src}, config.LoadOptions{Getenv: getenv})
		var buf bytes.Buffer
		config.WriteDiagnostics(&buf, cfg.FilesOrNil(), diags, false)
		if err := config.WriteDiagnosticsJSON(&buf, cfg.FilesOrNil(), diags); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMailRules covers the relay, outbound and inbound blocks.
func TestMailRules(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, block, want string }{
		{"ok", "outbound {\n prefer = \"ipv4\"\n}\ninbound {\n dnsbl = []\n}", ""},
		{"bad prefer", "outbound {\n prefer = \"ipv5\"\n}", "Invalid address preference"},
		{"v6 source as v4", "outbound {\n source_ipv4 = \"2001:db8::1\"\n}", "Invalid source address"},
		{"overflow without relay", "outbound {\n warmup {\n overflow = \"relay\"\n }\n}", "Warm-up overflow without relay"},
		{"bad warmup date", "outbound {\n warmup {\n start = \"next monday\"\n }\n}", "Invalid date"},
		{"bad dnsbl", "inbound {\n dnsbl = [\"not a zone\"]\n}", "Invalid DNSBL zone"},
		{"bad dmarc handling", "inbound {\n dmarc_policy = \"ignore\"\n}", "Invalid DMARC policy handling"},
		{"bad mx pattern", "relay {\n address = \"r.example.net:587\"\n mx_hosts = [\"*.\"]\n}", "Invalid MX pattern"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := strings.Replace(base, `tls { acme_email = "admin@example.org" }`, `tls { acme_email = "admin@example.org" }`+"\n"+tc.block, 1)
			_, diags := load(t, src)
			var got []string
			for _, d := range diags {
				got = append(got, d.Summary)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("diagnostics = %q, want %q (%v)", got, tc.want, diags)
			}
		})
	}
}
