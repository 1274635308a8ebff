package config_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/config"
)

func TestValidateMailSections(t *testing.T) {
	t.Parallel()
	good := func(c *config.Config) {
		c.Outbound = &config.Outbound{DNSServers: []string{"127.0.0.1:53"}, AddressPreference: "ipv4",
			SourceIPv4: "203.0.113.10", SourceIPv6: "2001:db8::10", MaxAge: config.Duration(48 * time.Hour),
			Warmup: &config.Warmup{Weeks: 6, Start: "2026-03-02", Overflow: "relay"}}
		c.Relay = &config.Relay{Address: "smtp.relay.example:587", Username: "u", PasswordFile: "/etc/mailctl/relay.pw",
			Domains: []string{"example.com"}, MXHosts: []string{"*.outlook.com"}}
		c.Inbound = &config.Inbound{DNSBLZones: []string{"zen.spamhaus.org"}, Greylisting: true, DMARCPolicy: "report",
			SkipNetworks: []string{"192.0.2.0/24"}}
	}
	c := valid(t)
	good(c)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	tests := []struct {
		name   string
		change func(c *config.Config)
		want   string
	}{
		{"dns server", func(c *config.Config) { c.Outbound.DNSServers = []string{"1.1.1.1"} }, "outbound.dns_servers[0]"},
		{"preference", func(c *config.Config) { c.Outbound.AddressPreference = "any" }, "outbound.address_preference"},
		{"source v4", func(c *config.Config) { c.Outbound.SourceIPv4 = "2001:db8::1" }, "outbound.source_ipv4"},
		{"source v6", func(c *config.Config) { c.Outbound.SourceIPv6 = "192.0.2.1" }, "outbound.source_ipv6"},
		{"max age", func(c *config.Config) { c.Outbound.MaxAge = config.Duration(time.Minute) }, "outbound.max_age"},
		{"warmup weeks", func(c *config.Config) { c.Outbound.Warmup.Weeks = 99 }, "outbound.warmup.weeks"},
		{"warmup start", func(c *config.Config) { c.Outbound.Warmup.Start = "March" }, "outbound.warmup.start"},
		{"overflow without relay", func(c *config.Config) { c.Relay = nil }, "outbound.warmup.overflow"},
		{"relay address", func(c *config.Config) { c.Relay.Address = "smtp.relay.example" }, "relay.address"},
		{"two passwords", func(c *config.Config) { c.Relay.Password = "x" }, "relay: password and password_file"},
		{"password without user", func(c *config.Config) { c.Relay.Username = "" }, "relay.username"},
		{"relay mx pattern", func(c *config.Config) { c.Relay.MXHosts = []string{"*"} }, "relay.mx_hosts[0]"},
		{"dnsbl zone", func(c *config.Config) { c.Inbound.DNSBLZones = []string{"not a zone"} }, "inbound.dnsbl_zones[0]"},
		{"dmarc policy", func(c *config.Config) { c.Inbound.DMARCPolicy = "ignore" }, "inbound.dmarc_policy"},
		{"skip networks", func(c *config.Config) { c.Inbound.SkipNetworks = []string{"192.0.2.1"} }, "inbound.skip_networks[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			good(c)
			tc.change(c)
			err := c.Validate()
			var ve *config.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 || !strings.HasPrefix(ve.Problems[0], tc.want) {
				t.Fatalf("Validate = %v, want one problem %s", err, tc.want)
			}
		})
	}
}

func TestMailSectionsJSON(t *testing.T) {
	t.Parallel()
	c := valid(t)
	before := c.Digest()
	b, _ := json.Marshal(c)
	if strings.Contains(string(b), "outbound") || strings.Contains(string(b), "inbound") || strings.Contains(string(b), "relay") {
		t.Errorf("absent sections are written: %s", b)
	}
	if !slices.Equal(c.DNSBLZones(), []string{"zen.spamhaus.org"}) {
		t.Errorf("DNSBLZones() = %v, want the default", c.DNSBLZones())
	}
	c.Inbound = &config.Inbound{DNSBLZones: []string{}}
	if len(c.DNSBLZones()) != 0 {
		t.Errorf("DNSBLZones() = %v, want none (disabled)", c.DNSBLZones())
	}
	if c.Digest() == before {
		t.Errorf("Digest ignores the inbound section")
	}
	in := `{"format_version":1,"hostname":"mx.example.org","tls":{"mode":"self-signed"},"domains":[{"name":"example.org"}],
	"users":[],"outbound":{"warmup":{"weeks":6},"max_age":"96h"},"relay":{"address":"r.example:465"},"inbound":{"dnsbl_zones":null,"greylisting":true}}`
	got, err := config.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got.Outbound.Warmup.Weeks != 6 || time.Duration(got.Outbound.MaxAge) != 96*time.Hour || got.Relay.Address != "r.example:465" || !got.Inbound.Greylisting {
		t.Errorf("Parse = %+v %+v %+v", got.Outbound, got.Relay, got.Inbound)
	}
}
