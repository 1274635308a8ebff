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
