package desired_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	serverconfig "github.com/mailctl/mailctl/server/config"
)

const mailSettings = `
provider "zonefile" "z" { dir = "zones" }
server "a" {
  hostname = "mx.a.test"
  ipv4     = "127.0.0.2"
  local { dir = ".mailctl" }
  tls { self_signed = true }
  relay {
    address = "relay.b.test:2587"
    ca_file = "relay-ca.pem"
  }
  outbound {
    port         = 2525
    max_age      = "2h"
    delay_notice = "30m"
  }
  inbound {
    greylisting    = true
    greylist_delay = "2s"
  }
}
domain "a.test" {
  dns    = provider.zonefile.z
  server = server.a
}
`

// TestServerMailSettings: the settings the server already had and HCL did
// not (relay ca_file, the outbound port, queue retry limits, the
// greylisting delay) reach its configuration file.
func TestServerMailSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, diags := config.LoadSources(dir, map[string][]byte{"mail.hcl": []byte(mailSettings)}, config.LoadOptions{Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0])
	if err := sc.WithDefaults().Validate(); err != nil {
		t.Fatalf("server config invalid: %v", err)
	}
	if r := sc.Relay; r == nil || r.CAFile != filepath.Join(dir, "relay-ca.pem") {
		t.Errorf("relay = %+v, want ca_file %s", r, filepath.Join(dir, "relay-ca.pem"))
	}
	if o := sc.Outbound; o == nil || o.Port != 2525 || o.MaxAge != serverconfig.Duration(2*time.Hour) || o.DelayNotice != serverconfig.Duration(30*time.Minute) {
		t.Errorf("outbound = %+v", o)
	}
	if in := sc.Inbound; in == nil || !in.Greylisting || in.GreylistDelay != serverconfig.Duration(2*time.Second) {
		t.Errorf("inbound = %+v", in)
	}

	bad := []struct{ from, to, want string }{
		{`delay_notice = "30m"`, `delay_notice = "3h"`, "Delay notice after expiry"},
		{`max_age      = "2h"`, `max_age      = "a while"`, "Invalid duration"},
		{`greylist_delay = "2s"`, `greylist_delay = "2d"`, "Invalid duration"},
		{`port         = 2525`, `port         = 0`, "port"},
	}
	for _, tc := range bad {
		src := strings.Replace(mailSettings, tc.from, tc.to, 1)
		_, diags := config.LoadSources(dir, map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: func(string) string { return "" }})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.want) {
			t.Errorf("%s: diagnostics %v, want an error %q", tc.to, diags, tc.want)
		}
	}
}

// TestServerLimits: a server's limits block (message size, recipients,
// connection caps for SMTP and IMAP, login failures, command time-out)
// reaches its configuration file, which the server accepts; an absent
// block leaves the server's defaults; values out of range are errors at
// their line.
func TestServerLimits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	load := func(src string) (*config.Config, error) {
		cfg, diags := config.LoadSources(dir, map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: func(string) string { return "" }})
		if diags.HasErrors() {
			return nil, diags
		}
		return cfg, nil
	}
	block := `
  limits {
    max_message_size       = "25MiB"
    max_recipients         = 40
    smtp_conns_per_ip      = 8
    imap_conns_per_ip      = 30
    imap_conns_per_user_ip = 4
    auth_failures_per_ip   = 5
    command_timeout        = "2m"
  }
}
domain`
	cfg, err := load(strings.Replace(mailSettings, "}\ndomain", block, 1))
	if err != nil {
		t.Fatal(err)
	}
	sc := desired.ServerConfig(cfg, cfg.Servers[0]).WithDefaults()
	if err := sc.Validate(); err != nil {
		t.Fatalf("server config invalid: %v", err)
	}
	want := serverconfig.Limits{MaxMessageBytes: 25 << 20, MaxRecipients: 40, MaxConnsPerIP: 8, IMAPConnsPerIP: 30,
		IMAPConnsPerUserIP: 4, AuthFailuresPerIP: 5, Timeout: serverconfig.Duration(2 * time.Minute)}
	if sc.Limits != want {
		t.Errorf("limits = %+v, want %+v", sc.Limits, want)
	}

	cfg, err = load(mailSettings)
	if err != nil {
		t.Fatal(err)
	}
	def := desired.ServerConfig(cfg, cfg.Servers[0]).WithDefaults().Limits
	if def.IMAPConnsPerUserIP != serverconfig.DefaultIMAPConnsPerUser || def.IMAPConnsPerIP != serverconfig.DefaultIMAPConnsPerIP || def.MaxConnsPerIP != serverconfig.DefaultMaxConnsPerIP {
		t.Errorf("limits without a block = %+v, want the server's defaults", def)
	}

	for _, tc := range []struct{ from, to, want string }{
		{`"25MiB"`, `"2GiB"`, "Invalid size"},
		{`= 40`, `= 0`, "max_recipients"},
		{`imap_conns_per_user_ip = 4`, `imap_conns_per_user_ip = 31`, "IMAP caps out of order"},
		{`"2m"`, `"2h"`, "Invalid duration"},
		{`command_timeout`, `connection_timeout`, "Unsupported argument"},
	} {
		src := strings.Replace(strings.Replace(mailSettings, "}\ndomain", block, 1), tc.from, tc.to, 1)
		if _, err := load(src); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "mail.hcl:") {
			t.Errorf("%s: %v, want an error %q at a line of mail.hcl", tc.to, err, tc.want)
		}
	}
}
