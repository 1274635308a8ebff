package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// restartOnly are the settings a running server keeps until it restarts:
// its listeners, stores and queue are built with them. A reload (SIGHUP)
// applies everything else (users, aliases, quotas, DKIM keys, certificates,
// relay, MTA-STS and autoconfig data, log level).
var restartOnly = []struct {
	name string
	get  func(*Config) any
}{
	{"listen", func(c *Config) any { return c.Listen }},
	{"hostname", func(c *Config) any { return c.Hostname }},
	{"data_dir", func(c *Config) any { return c.DataDir }},
	{"control", func(c *Config) any { return c.Control }},
	{"tls.mode", func(c *Config) any { return c.TLS.Mode }},
	{"limits", func(c *Config) any { return c.Limits }},
	{"inbound", func(c *Config) any { return c.Inbound }},
	{"outbound", func(c *Config) any { return c.Outbound }},
	{"spam", func(c *Config) any { return c.SpamFilter() }},
	{"store", func(c *Config) any { return c.Store }},
}

// RestartDigests returns, for each setting that only a restart applies, a
// digest of its value (defaults applied). A server reports those it was
// started with; the provisioner compares them with the configuration it
// is about to install to say, and do, "restart" rather than "reload".
func (c *Config) RestartDigests() map[string]string {
	d := c.WithDefaults()
	out := make(map[string]string, len(restartOnly))
	for _, s := range restartOnly {
		b, err := json.Marshal(s.get(d))
		if err != nil {
			panic(fmt.Sprintf("config: marshal %s for digest: %v", s.name, err)) // plain data cannot fail
		}
		sum := sha256.Sum256(b)
		out[s.name] = hex.EncodeToString(sum[:8])
	}
	return out
}

// RestartSettings names, in a fixed order, the settings whose digests
// differ between what a server runs with (running) and a configuration
// (next): the changes that a reload would not apply. A nil running map (a
// server too old to report its digests) yields nil.
func RestartSettings(running, next map[string]string) []string {
	if running == nil {
		return nil
	}
	var out []string
	for _, s := range restartOnly {
		if running[s.name] != next[s.name] {
			out = append(out, s.name)
		}
	}
	return out
}
