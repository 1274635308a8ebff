package config

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mailctl/mailctl/server/auth"
)

// Outbound configures the outbound queue; zero values take the defaults.
type Outbound struct {
	// DNSServers ("host:port") answer the queue's MX/TXT/A lookups and the
	// inbound checks' SPF/DKIM/DMARC lookups. Default: /etc/resolv.conf.
	DNSServers []string `json:"dns_servers,omitempty"`
	// Port is the destination SMTP port (default 25; tests use another).
	Port int `json:"port,omitempty"`
	// Workers is the number of deliveries at once (default 16);
	// MaxPerDestination of those to one domain (default 4).
	Workers           int `json:"workers,omitempty"`
	MaxPerDestination int `json:"max_per_destination,omitempty"`
	// MaxAge is how long a message is retried (default 120h = 5 days);
	// DelayNotice when the sender is told of a delay (default 4h).
	MaxAge      Duration `json:"max_age,omitempty"`
	DelayNotice Duration `json:"delay_notice,omitempty"`
	// AddressPreference is "ipv6" (default) or "ipv4": which addresses of
	// an MX are tried first (Postfix smtp_address_preference).
	AddressPreference string `json:"address_preference,omitempty"`
	// SourceIPv4 and SourceIPv6 bind outgoing connections (Postfix
	// smtp_bind_address, smtp_bind_address6); empty: any.
	SourceIPv4 string `json:"source_ipv4,omitempty"`
	SourceIPv6 string `json:"source_ipv6,omitempty"`
	// Warmup is the IP warm-up ramp; nil: no ramp.
	Warmup *Warmup `json:"warmup,omitempty"`
}

// Warmup caps direct deliveries per day: 50 in the first week, doubling
// every week, lifted after Weeks weeks.
type Warmup struct {
	// Weeks until the cap is lifted; 0 means DefaultWarmupWeeks.
	Weeks int `json:"weeks,omitempty"`
	// Start is the first day of the ramp (YYYY-MM-DD); empty: the first
	// direct delivery.
	Start string `json:"start,omitempty"`
	// Overflow is "defer" (default: wait for the next day) or "relay"
	// (through the relay, which must be configured).
	Overflow string `json:"overflow,omitempty"`
}

// DefaultWarmupWeeks is the length of the warm-up ramp.
const DefaultWarmupWeeks = 6

// Relay is a smarthost: all outbound mail goes through it, or only mail
// for Domains and for destinations whose MX host matches MXHosts.
type Relay struct {
	// Address is "host:port"; port 465 is implicit TLS, others STARTTLS
	// (required).
	Address  string `json:"address"`
	Username string `json:"username,omitempty"`
	// Password, or PasswordFile (a file holding it), for AUTH PLAIN, which
	// is only sent over TLS. This is the one secret the file may hold;
	// PasswordFile keeps it out.
	Password     string   `json:"password,omitempty"`
	PasswordFile string   `json:"password_file,omitempty"`
	Domains      []string `json:"domains,omitempty"`
	// MXHosts are patterns "mx.example.com" or "*.example.com".
	MXHosts []string `json:"mx_hosts,omitempty"`
	// CAFile holds PEM roots to verify the relay with (default: system roots).
	CAFile string `json:"ca_file,omitempty"`
}

// Inbound configures the checks of mail received on port 25.
type Inbound struct {
	// DNSBLZones are the blocklists of the client IP; nil: the default
	// (zen.spamhaus.org); an empty list disables DNSBL checks.
	DNSBLZones []string `json:"dnsbl_zones"`
	// Greylisting defers first-time (client /24, sender, recipient)
	// triplets by GreylistDelay (default 5m).
	Greylisting   bool     `json:"greylisting,omitempty"`
	GreylistDelay Duration `json:"greylist_delay,omitempty"`
	// DMARCPolicy is "enforce" (default: reject and quarantine as the
	// sender's domain asks) or "report" (only record the result).
	DMARCPolicy string `json:"dmarc_policy,omitempty"`
	// SkipNetworks (CIDR) are clients not checked, e.g. a backup MX.
	SkipNetworks []string `json:"skip_networks,omitempty"`
}

// DefaultDNSBLZones are used when Inbound or its DNSBLZones are absent.
var DefaultDNSBLZones = []string{"zen.spamhaus.org"}

// DNSBLZones returns the effective blocklists.
func (c *Config) DNSBLZones() []string {
	if c.Inbound == nil || c.Inbound.DNSBLZones == nil {
		return append([]string(nil), DefaultDNSBLZones...)
	}
	return append([]string(nil), c.Inbound.DNSBLZones...)
}

func validHostPort(s string) bool {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

func validDomain(s string) bool {
	_, err := auth.ParseDomain(strings.TrimSuffix(s, "."))
	return err == nil
}

// validateMail checks the outbound, relay and inbound sections.
func (c *Config) validateMail(p *problems) {
	if o := c.Outbound; o != nil {
		for i, s := range o.DNSServers {
			if !validHostPort(strings.TrimPrefix(s, "tcp://")) {
				p.add("outbound.dns_servers["+strconv.Itoa(i)+"]", "%q is not host:port or tcp://host:port", s)
			}
		}
		if o.Port < 0 || o.Port > 65535 {
			p.add("outbound.port", "%d is not a port", o.Port)
		}
		if o.Workers < 0 || o.Workers > 1000 {
			p.add("outbound.workers", "%d is outside 0..1000", o.Workers)
		}
		if o.MaxPerDestination < 0 || o.MaxPerDestination > 1000 {
			p.add("outbound.max_per_destination", "%d is outside 0..1000", o.MaxPerDestination)
		}
		if d := time.Duration(o.MaxAge); d < 0 || d != 0 && (d < time.Hour || d > 30*24*time.Hour) {
			p.add("outbound.max_age", "%s is outside 1h..720h", o.MaxAge)
		}
		if d := time.Duration(o.DelayNotice); d < 0 {
			p.add("outbound.delay_notice", "%s is negative", o.DelayNotice)
		}
		switch o.AddressPreference {
		case "", "ipv6", "ipv4":
		default:
			p.add("outbound.address_preference", "%q is not ipv6 or ipv4", o.AddressPreference)
		}
		if ip := net.ParseIP(o.SourceIPv4); o.SourceIPv4 != "" && (ip == nil || ip.To4() == nil) {
			p.add("outbound.source_ipv4", "%q is not an IPv4 address", o.SourceIPv4)
		}
		if ip := net.ParseIP(o.SourceIPv6); o.SourceIPv6 != "" && (ip == nil || ip.To4() != nil) {
			p.add("outbound.source_ipv6", "%q is not an IPv6 address", o.SourceIPv6)
		}
		if w := o.Warmup; w != nil {
			if w.Weeks < 0 || w.Weeks > 52 {
				p.add("outbound.warmup.weeks", "%d is outside 0..52", w.Weeks)
			}
			if _, err := time.Parse(time.DateOnly, w.Start); w.Start != "" && err != nil {
				p.add("outbound.warmup.start", "%q is not a date (YYYY-MM-DD)", w.Start)
			}
			switch w.Overflow {
			case "", "defer":
			case "relay":
				if c.Relay == nil {
					p.add("outbound.warmup.overflow", "relay needs a relay")
				}
			default:
				p.add("outbound.warmup.overflow", "%q is not defer or relay", w.Overflow)
			}
		}
	}
	if r := c.Relay; r != nil {
		if !validHostPort(r.Address) {
			p.add("relay.address", "%q is not host:port", r.Address)
		}
		if r.Password != "" && r.PasswordFile != "" {
			p.add("relay", "password and password_file are exclusive")
		}
		if (r.Password != "" || r.PasswordFile != "") && r.Username == "" {
			p.add("relay.username", "is required with a password")
		}
		for i, d := range r.Domains {
			if !validDomain(d) {
				p.add("relay.domains["+strconv.Itoa(i)+"]", "%q is not a domain", d)
			}
		}
		for i, h := range r.MXHosts {
			if !validDomain(strings.TrimPrefix(h, "*.")) {
				p.add("relay.mx_hosts["+strconv.Itoa(i)+"]", "%q is not a host name or *.domain pattern", h)
			}
		}
	}
	if in := c.Inbound; in != nil {
		for i, z := range in.DNSBLZones {
			if !validDomain(z) {
				p.add("inbound.dnsbl_zones["+strconv.Itoa(i)+"]", "%q is not a domain", z)
			}
		}
		if d := time.Duration(in.GreylistDelay); d < 0 || d > 24*time.Hour {
			p.add("inbound.greylist_delay", "%s is outside 0..24h", in.GreylistDelay)
		}
		switch in.DMARCPolicy {
		case "", "enforce", "report":
		default:
			p.add("inbound.dmarc_policy", "%q is not enforce or report", in.DMARCPolicy)
		}
		for i, n := range in.SkipNetworks {
			if _, _, err := net.ParseCIDR(n); err != nil {
				p.add("inbound.skip_networks["+strconv.Itoa(i)+"]", "%q is not a CIDR network", n)
			}
		}
	}
}
