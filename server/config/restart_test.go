package config_test

import (
	"slices"
	"testing"

	"github.com/mailctl/mailctl/server/config"
)

func TestRestartSettings(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			FormatVersion: config.FormatVersion,
			Hostname:      "mail.example.org",
			Domains:       []config.Domain{{Name: "example.org"}},
		}
	}
	running := base().RestartDigests()
	if got := config.RestartSettings(running, base().RestartDigests()); got != nil {
		t.Fatalf("same configuration: restart for %v", got)
	}
	// Defaults applied: an empty listen object is the default addresses.
	explicit := base()
	explicit.Listen = config.DefaultListen
	if got := config.RestartSettings(running, explicit.RestartDigests()); got != nil {
		t.Errorf("default listen written out: restart for %v", got)
	}
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"a user (reloaded)", func(c *config.Config) { c.Users = []config.User{{Address: "a@example.org"}} }, nil},
		{"a domain (reloaded)", func(c *config.Config) { c.Domains = append(c.Domains, config.Domain{Name: "example.net"}) }, nil},
		{"the log level (reloaded)", func(c *config.Config) { c.LogLevel = "debug" }, nil},
		{"a port", func(c *config.Config) { c.Listen = config.DefaultListen; c.Listen.HTTPS = ":8443" }, []string{"listen"}},
		{"hostname and limits", func(c *config.Config) { c.Hostname = "mx.example.org"; c.Limits.MaxRecipients = 7 }, []string{"hostname", "limits"}},
		{"the store", func(c *config.Config) { c.Store = &config.Store{PostgresURLFile: "/etc/mailctl/pg.url"} }, []string{"store"}},
	} {
		c := base()
		tc.change(c)
		if got := config.RestartSettings(running, c.RestartDigests()); !slices.Equal(got, tc.want) {
			t.Errorf("%s: restart for %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := config.RestartSettings(nil, base().RestartDigests()); got != nil {
		t.Errorf("server without digests: %v, want nil (unknown)", got)
	}
}
