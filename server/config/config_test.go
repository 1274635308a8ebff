package config_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
)

var (
	hashOnce sync.Once
	hash     string
)

func testHash(t testing.TB) string {
	t.Helper()
	hashOnce.Do(func() {
		var err error
		hash, err = auth.HashPassword("secret", auth.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
		if err != nil {
			panic(err)
		}
	})
	return hash
}

// valid returns a configuration that passes validation.
func valid(t testing.TB) *config.Config {
	return &config.Config{
		FormatVersion: config.FormatVersion,
		Hostname:      "mail.example.org",
		Listen:        config.Listen{SMTP: "127.0.0.1:2525", Submission: ":2587", Submissions: "[::1]:2465", IMAPS: "localhost:2993"},
		TLS:           config.TLS{Mode: "self-signed"},
		Domains:       []config.Domain{{Name: "example.org", MTASTSMode: "testing", DKIMSelectors: []string{"mx1-2026"}}, {Name: "example.net"}},
		Users: []config.User{
			{Address: "alice@example.org", PasswordHash: testHash(t), Aliases: []string{"contact@example.org"}, QuotaBytes: 1 << 30},
			{Address: "bob@example.net", PasswordHash: testHash(t)},
		},
		Aliases: []config.Alias{
			{Address: "postmaster@example.org", To: []string{"alice@example.org"}},
			{Address: "team@example.org", To: []string{"postmaster@example.org", "bob@example.net", "friend@remote.example"}},
			{Address: "@example.net", To: []string{"bob@example.net"}},
		},
		Limits: config.Limits{MaxRecipients: 50, Timeout: config.Duration(time.Minute)},
	}
}

func TestValidateAcceptsValid(t *testing.T) {
	t.Parallel()
	c := valid(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v, want nil", err)
	}
	if err := c.WithDefaults().Validate(); err != nil {
		t.Fatalf("WithDefaults().Validate() = %v, want nil", err)
	}
	for _, mode := range []config.TLS{
		{Mode: "files", CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem"},
		{Mode: "acme", ACMEEmail: "admin@example.org", ACMEDirectory: "https://127.0.0.1:14000/dir", ACMECARoot: "/tmp/pebble.pem"},
	} {
		c := valid(t)
		c.TLS = mode
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(tls %+v) = %v, want nil", mode, err)
		}
	}
}

func TestValidateRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   []string // each must appear in the error
	}{
		{"format version", func(c *config.Config) { c.FormatVersion = "2.0" }, []string{`format_version: is "2.0", want "1.0"`}},
		{"hostname missing", func(c *config.Config) { c.Hostname = "" }, []string{"hostname: is required"}},
		{"hostname single label", func(c *config.Config) { c.Hostname = "mail" }, []string{"hostname:"}},
		{"hostname trailing dot", func(c *config.Config) { c.Hostname = "mail.example.org." }, []string{"hostname:"}},
		{"hostname bad char", func(c *config.Config) { c.Hostname = "mail_1.example.org" }, []string{"hostname:"}},
		{"data dir relative", func(c *config.Config) { c.DataDir = "var/lib" }, []string{"data_dir:"}},
		{"control relative", func(c *config.Config) { c.Control = "ctl.sock" }, []string{"control:"}},
		{"log level", func(c *config.Config) { c.LogLevel = "verbose" }, []string{"log_level:"}},
		{"listen no port", func(c *config.Config) { c.Listen.SMTP = "127.0.0.1" }, []string{"listen.smtp:"}},
		{"listen bad port", func(c *config.Config) { c.Listen.IMAP = ":99999" }, []string{"listen.imap:"}},
		{"listen bad host", func(c *config.Config) { c.Listen.HTTP = "bad host:80" }, []string{"listen.http:"}},
		{"listen duplicate", func(c *config.Config) { c.Listen.HTTPS = "127.0.0.1:2525" }, []string{"listen.https: \"127.0.0.1:2525\" uses the same port as listen.smtp"}},
		{"listen wildcard duplicate", func(c *config.Config) { c.Listen.HTTP = "127.0.0.1:2587" }, []string{"same port as listen.submission"}},
		{"tls mode missing", func(c *config.Config) { c.TLS = config.TLS{} }, []string{"tls.mode: is required"}},
		{"tls mode unknown", func(c *config.Config) { c.TLS.Mode = "letsencrypt" }, []string{"tls.mode:"}},
		{"tls files incomplete", func(c *config.Config) { c.TLS = config.TLS{Mode: "files"} }, []string{"tls.cert_file: is required", "tls.key_file: is required"}},
		{"tls files with acme", func(c *config.Config) {
			c.TLS = config.TLS{Mode: "files", CertFile: "c", KeyFile: "k", ACMEEmail: "a@example.org"}
		}, []string{"tls.acme_email: must be empty"}},
		{"tls acme no email", func(c *config.Config) { c.TLS = config.TLS{Mode: "acme"} }, []string{"tls.acme_email: is required"}},
		{"tls acme bad email", func(c *config.Config) { c.TLS = config.TLS{Mode: "acme", ACMEEmail: "admin"} }, []string{"tls.acme_email:"}},
		{"tls acme http directory", func(c *config.Config) {
			c.TLS = config.TLS{Mode: "acme", ACMEEmail: "a@example.org", ACMEDirectory: "http://ca/dir"}
		}, []string{"tls.acme_directory:"}},
		{"tls self-signed with files", func(c *config.Config) { c.TLS.CertFile = "c" }, []string{"tls.cert_file: must be empty"}},
		{"no domains", func(c *config.Config) { c.Domains, c.Users, c.Aliases = nil, nil, nil }, []string{"domains: at least one"}},
		{"domain bad", func(c *config.Config) { c.Domains[1].Name = "example..net" }, []string{"domains[1].name:"}},
		{"domain duplicate", func(c *config.Config) { c.Domains[1].Name = "EXAMPLE.org" }, []string{"domains[1].name: duplicated domain example.org"}},
		{"mta-sts mode", func(c *config.Config) { c.Domains[0].MTASTSMode = "strict" }, []string{"domains[0].mta_sts_mode:"}},
		{"mta-sts max age", func(c *config.Config) { c.Domains[0].MTASTSMaxAge = -1 }, []string{"domains[0].mta_sts_max_age:"}},
		{"dkim selector", func(c *config.Config) { c.Domains[0].DKIMSelectors = []string{"a_b", "x", "X"} }, []string{"dkim_selectors[0]:", "dkim_selectors[2]: duplicated"}},
		{"user bad address", func(c *config.Config) { c.Users[0].Address = "alice%x@example.org" }, []string{"users[0].address:"}},
		{"user outside domains", func(c *config.Config) { c.Users[1].Address = "bob@example.com" }, []string{"users[1].address: bob@example.com is outside every declared domain"}},
		{"user no hash", func(c *config.Config) { c.Users[0].PasswordHash = "" }, []string{"users[0].password_hash: is required"}},
		{"user bad hash", func(c *config.Config) { c.Users[1].PasswordHash = "$2y$10$abcdefghijklmnopqrstuv" }, []string{"users[1].password_hash:"}},
		{"user alias outside", func(c *config.Config) { c.Users[0].Aliases = []string{"x@elsewhere.example"} }, []string{"users[0].aliases[0]:"}},
		{"user quota", func(c *config.Config) { c.Users[0].QuotaBytes = -5 }, []string{"users[0].quota_bytes:"}},
		{"user sieve", func(c *config.Config) { c.Users[0].Sieve = "frob;\nfileinto \"x\";" }, []string{"users[0].sieve: 1:1: unknown command \"frob\"", "users[0].sieve: 2:1: fileinto needs require \"fileinto\""}},
		{"user sieve syntax", func(c *config.Config) { c.Users[0].Sieve = "keep" }, []string{"users[0].sieve: 1:5: expected \";\" or \"{\" after command \"keep\", found end of script"}},
		{"duplicate user", func(c *config.Config) { c.Users[1].Address = "ALICE@example.org" }, []string{"users[1].address: duplicated address alice@example.org (also users[0].address)"}},
		{"duplicate user alias vs alias", func(c *config.Config) { c.Users[1].Aliases = []string{"postmaster@example.org"} }, []string{"duplicated address postmaster@example.org"}},
		{"alias outside", func(c *config.Config) { c.Aliases[0].Address = "postmaster@example.com" }, []string{"aliases[0].address:"}},
		{"alias catch-all outside", func(c *config.Config) { c.Aliases[2].Address = "@example.com" }, []string{"aliases[2].address:"}},
		{"alias no target", func(c *config.Config) { c.Aliases[0].To = nil }, []string{"aliases[0].to: needs at least one target"}},
		{"alias bad target", func(c *config.Config) { c.Aliases[1].To = []string{"x@[10.0.0.1]"} }, []string{"aliases[1].to[0]:"}},
		{"alias unknown local target", func(c *config.Config) { c.Aliases[0].To = []string{"nobody@example.org"} }, []string{"aliases[0].to[0]: nobody@example.org is in a local domain"}},
		{"alias duplicate", func(c *config.Config) {
			c.Aliases = append(c.Aliases, config.Alias{Address: "Postmaster@example.org", To: []string{"bob@example.net"}})
		}, []string{"aliases[3].address: duplicated address postmaster@example.org"}},
		{"alias loop", func(c *config.Config) {
			c.Aliases = append(c.Aliases,
				config.Alias{Address: "a@example.org", To: []string{"b@example.org"}},
				config.Alias{Address: "b@example.org", To: []string{"a@example.org"}})
		}, []string{"aliases: loop a@example.org -> b@example.org -> a@example.org"}},
		{"limits negative", func(c *config.Config) {
			c.Limits = config.Limits{MaxMessageBytes: -1, MaxRecipients: -1, MaxConnsPerIP: -1, AuthFailuresPerIP: -1, IMAPConnsPerIP: -1, IMAPConnsPerUserIP: -1}
		}, []string{"limits.max_message_bytes:", "limits.max_recipients:", "limits.max_conns_per_ip:", "limits.auth_failures_per_ip:",
			"limits.imap_conns_per_ip:", "limits.imap_conns_per_user_ip:"}},
		{"limits too big", func(c *config.Config) { c.Limits.MaxMessageBytes = 2 << 30 }, []string{"limits.max_message_bytes:"}},
		{"timeout tiny", func(c *config.Config) { c.Limits.Timeout = config.Duration(time.Millisecond) }, []string{"limits.timeout: 1ms is outside 1s..1h"}},
		{"queue lease tiny", func(c *config.Config) {
			c.Store = &config.Store{PostgresURLFile: "/etc/mailctl/postgres-url", QueueLease: config.Duration(time.Second)}
		}, []string{"store.queue_lease: 1s is outside 3s..1h"}},
		{"queue lease without a shared store", func(c *config.Config) {
			c.Store = &config.Store{QueueLease: config.Duration(time.Minute)}
		}, []string{"store.queue_lease: is only for a store shared with postgres_url_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid(t)
			tt.mutate(c)
			err := c.Validate()
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want *ValidationError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant a line containing %q", err, w)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := valid(t)
	c.Hostname = ""
	c.TLS.Mode = "x"
	c.Users[0].PasswordHash = "bad"
	c.Limits.MaxRecipients = -1
	var ve *config.ValidationError
	if err := c.Validate(); !errors.As(err, &ve) || len(ve.Problems) != 4 {
		t.Fatalf("Validate() = %v, want 4 problems", err)
	}
	if n := strings.Count(ve.Error(), "\n"); n != 4 {
		t.Errorf("error has %d newlines, want one line per problem plus header: %q", n, ve.Error())
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d    time.Duration
		json string
	}{
		{5 * time.Minute, `"5m"`}, {90 * time.Second, `"1m30s"`}, {time.Hour, `"1h"`},
		{36 * time.Hour, `"36h"`}, {1500 * time.Millisecond, `"1.5s"`}, {0, `"0s"`},
	} {
		b, err := json.Marshal(config.Duration(tt.d))
		if err != nil || string(b) != tt.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tt.d, b, err, tt.json)
		}
		var d config.Duration
		if err := json.Unmarshal(b, &d); err != nil || time.Duration(d) != tt.d {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", b, time.Duration(d), err, tt.d)
		}
	}
	for _, bad := range []string{`300`, `"5 minutes"`, `null5`, `""`} {
		var d config.Duration
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) = nil error, want an error", bad)
		}
	}
}

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "server.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(valid(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(write(t, string(b)))
	if err != nil {
		t.Fatalf("Load(valid) = %v", err)
	}
	if c.DataDir != config.DefaultDataDir || c.Control != "/var/lib/mailctl/control.sock" || c.LogLevel != "info" {
		t.Errorf("defaults not applied: data_dir %q control %q log_level %q", c.DataDir, c.Control, c.LogLevel)
	}
	if c.Limits.MaxMessageBytes != config.DefaultMaxMessageBytes || c.Limits.MaxRecipients != 50 ||
		c.Limits.Timeout != config.Duration(time.Minute) || c.Limits.MaxConnsPerIP != 20 || c.Limits.AuthFailuresPerIP != 10 ||
		c.Limits.IMAPConnsPerIP != 50 || c.Limits.IMAPConnsPerUserIP != 10 {
		t.Errorf("limits = %+v, want defaults except max_recipients 50 and timeout 1m", c.Limits)
	}
	if c.Domains[0].MTASTSMaxAge != 604800 || c.Domains[1].MTASTSMaxAge != 0 {
		t.Errorf("mta_sts_max_age = %d, %d; want 604800 (mode set), 0 (no mode)", c.Domains[0].MTASTSMaxAge, c.Domains[1].MTASTSMaxAge)
	}
	if c.Listen.SMTP != "127.0.0.1:2525" || c.Listen.IMAP != "" {
		t.Errorf("listen = %+v, want the given addresses and imap disabled", c.Listen)
	}
}

func TestLoadDefaultListen(t *testing.T) {
	t.Parallel()
	c := valid(t)
	c.Listen = config.Listen{}
	if got := c.WithDefaults().Listen; got != config.DefaultListen {
		t.Errorf("WithDefaults().Listen = %+v, want %+v", got, config.DefaultListen)
	}
	if c.Listen != (config.Listen{}) {
		t.Errorf("WithDefaults modified its receiver")
	}
}

// TestParseFormatVersions: server.json files written with the integer 1
// (before format_version became the string "1.0") still load; new files
// carry "1.0".
func TestParseFormatVersions(t *testing.T) {
	t.Parallel()
	b, _ := json.Marshal(valid(t))
	if !strings.Contains(string(b), `"format_version":"1.0"`) {
		t.Errorf("written format_version: %s", b)
	}
	legacy := strings.Replace(string(b), `"format_version":"1.0"`, `"format_version":1`, 1)
	for _, doc := range []string{string(b), legacy} {
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Errorf("Parse(%.40s...) = %v", doc, err)
			continue
		}
		if c.FormatVersion.Major() != "1" {
			t.Errorf("FormatVersion = %q", c.FormatVersion)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	b, _ := json.Marshal(valid(t))
	good := string(b)
	tests := []struct{ name, content, want string }{
		{"not json", "format_version = 1", "decode JSON"},
		{"missing version", `{"hostname":"x.example"}`, "format_version is missing"},
		{"newer version", `{"format_version":2,"future":true}`, `format_version "2.0" is not supported`},
		{"newer major version", `{"format_version":"2.0","future":true}`, `format_version "2.0" is not supported`},
		{"unknown field", strings.Replace(good, `"hostname"`, `"hostnme":"x","hostname"`, 1), `unknown field "hostnme"`},
		{"unknown nested field", strings.Replace(good, `"mode":"self-signed"`, `"mode":"self-signed","acme":1`, 1), `unknown field "acme"`},
		{"trailing data", good + `{}`, "after top-level value"},
		{"duration number", strings.Replace(good, `"timeout":"1m"`, `"timeout":60`, 1), "duration must be a string"},
		{"invalid", strings.Replace(good, `"mail.example.org"`, `"mail"`, 1), "hostname:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(write(t, tt.content))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load() = %v, want error containing %q", err, tt.want)
			}
		})
	}
	if _, err := config.Load(filepath.Join(t.TempDir(), "absent.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want ErrNotExist", err)
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	a := valid(t)
	d := a.Digest()
	if len(d) != 64 {
		t.Fatalf("Digest() = %q, want 64 hex digits", d)
	}
	if got := a.WithDefaults().Digest(); got != d {
		t.Errorf("Digest of defaulted config = %s, want %s (defaults are part of the canonical form)", got, d)
	}
	b := valid(t)
	b.Users[0], b.Users[1] = b.Users[1], b.Users[0]
	b.Domains[0], b.Domains[1] = b.Domains[1], b.Domains[0]
	if got := b.Digest(); got != d {
		t.Errorf("Digest after reordering users and domains = %s, want %s", got, d)
	}
	if a.Users[0].Address != "alice@example.org" {
		t.Errorf("Digest reordered its receiver")
	}
	c := valid(t)
	c.Users[0].QuotaBytes++
	if c.Digest() == d {
		t.Errorf("Digest did not change with the quota")
	}
}

func TestAuthConversions(t *testing.T) {
	t.Parallel()
	c := valid(t)
	dir, err := auth.NewDirectory(c.DomainNames(), c.AuthUsers(), c.AuthAliases())
	if err != nil {
		t.Fatalf("NewDirectory(config) = %v", err)
	}
	r, err := dir.Resolve("team@example.org")
	if err != nil || strings.Join(r.Users, ",") != "alice@example.org,bob@example.net" || strings.Join(r.Remote, ",") != "friend@remote.example" {
		t.Errorf("Resolve(team) = %+v, %v", r, err)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := json.Marshal(valid(f))
	f.Add(b)
	f.Add([]byte(`{"format_version":1}`))
	f.Add([]byte(`{"format_version":1,"limits":{"timeout":"5m"},"users":[{"address":"a@b.c"}]}`))
	f.Add([]byte(`{"format_version":1,"aliases":[{"address":"@x.y","to":["a@x.y"]},{"address":"a@x.y","to":["a@x.y"]}],"domains":[{"name":"x.y"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate refuses: %v", verr)
			}
			_ = c.Digest()
		}
	})
}
