package queue

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailctl/mailctl/server/config"
)

// ResolverFromConfig returns the DNS resolver of cfg.Outbound.DNSServers,
// or of /etc/resolv.conf.
func ResolverFromConfig(cfg *config.Config) (*DNS, error) {
	var servers []string
	if cfg.Outbound != nil {
		servers = cfg.Outbound.DNSServers
	}
	return NewDNS(servers...)
}

// RelayFromConfig converts the relay section (reading its password and CA
// files); nil gives nil.
func RelayFromConfig(r *config.Relay) (*Relay, error) {
	if r == nil {
		return nil, nil
	}
	out := &Relay{Address: r.Address, Username: r.Username, Password: r.Password,
		Domains: r.Domains, MXHosts: r.MXHosts}
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read relay password file: %w", err)
		}
		out.Password = strings.TrimRight(string(b), "\r\n")
	}
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read relay CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read relay CA file %q: no PEM certificate", r.CAFile)
		}
		out.TLSConfig = &tls.Config{RootCAs: pool}
	}
	return out, nil
}

// OptionsFromConfig returns the queue options of a server configuration
// (defaults applied): the queue in <data_dir>/queue, local delivery of
// DSNs and local domains through dir and st, DKIM signing with signer (nil:
// none), Node the config's node name (used once the caller sets Postgres).
// The caller may still set Clock, TLSConfig, HTTPClient and Postgres.
func OptionsFromConfig(cfg *config.Config, res Resolver, signer Signer, dir Directory, st Mailboxes, log *slog.Logger) (Options, error) {
	cfg = cfg.WithDefaults()
	local := map[string]bool{}
	for _, d := range cfg.DomainNames() {
		local[strings.ToLower(d)] = true
	}
	o := Options{
		Dir: filepath.Join(cfg.DataDir, "queue"), Hostname: cfg.Hostname, Resolver: res,
		IsLocal: func(d string) bool { return local[strings.ToLower(d)] },
		Deliver: StoreDeliverer(dir, st),
		Logger:  log,
		Node:    cfg.NodeName(),
	}
	if signer != nil {
		o.Signer = signer
	}
	relay, err := RelayFromConfig(cfg.Relay)
	if err != nil {
		return Options{}, err
	}
	o.Relay = relay
	if ob := cfg.Outbound; ob != nil {
		o.Port = ob.Port
		o.Workers = ob.Workers
		o.MaxPerDestination = ob.MaxPerDestination
		o.MaxAge = time.Duration(ob.MaxAge)
		o.DelayNotice = time.Duration(ob.DelayNotice)
		o.PreferIPv4 = ob.AddressPreference == "ipv4"
		if ob.SourceIPv4 != "" {
			o.SourceIPv4 = net.ParseIP(ob.SourceIPv4)
		}
		if ob.SourceIPv6 != "" {
			o.SourceIPv6 = net.ParseIP(ob.SourceIPv6)
		}
		if w := ob.Warmup; w != nil {
			o.Warmup.Weeks = w.Weeks
			if o.Warmup.Weeks == 0 {
				o.Warmup.Weeks = config.DefaultWarmupWeeks
			}
			if w.Start != "" {
				start, err := time.Parse(time.DateOnly, w.Start)
				if err != nil {
					return Options{}, fmt.Errorf("outbound.warmup.start: %w", err)
				}
				o.Warmup.Start = start
			}
			o.Warmup.OverflowRelay = w.Overflow == "relay"
		}
	}
	return o, nil
}
