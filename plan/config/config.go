// Package config loads and validates mailctl's HCL configuration: every
// *.hcl file of a directory, merged as Terraform merges *.tf files, with
// `variable` blocks, the functions env() and file() plus the common cty
// standard library, and references between blocks as bare traversals
// (provider.ovh.eu, server.mx1).
//
// Problems in what the user wrote are hcl.Diagnostics with source ranges;
// Load reports every problem it finds, not only the first.
package config

import (
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Value is a string attribute value that remembers whether it came from a
// secret source (env(), file(), or a sensitive variable).
type Value struct {
	Str       string
	Sensitive bool
}

// String prints the value, or "(sensitive)" for secrets.
func (v Value) String() string {
	if v.Sensitive {
		return "(sensitive)"
	}
	return v.Str
}

// Config is the merged, validated configuration of one directory.
type Config struct {
	Dir       string
	Variables []*Variable
	Providers []*Provider
	Servers   []*Server
	Domains   []*Domain
	Users     []*User
	Aliases   []*Alias
	// Migrations are the migration blocks (at most one per domain).
	Migrations []*Migration
	// Files holds each parsed file's source, for printing diagnostics.
	Files map[string]*hcl.File
}

// Variable is a `variable "name"` block.
type Variable struct {
	Name        string
	Description string
	Sensitive   bool
	Value       Value
	DeclRange   hcl.Range
}

// Capability is what a provider kind can do.
type Capability int

const (
	// CapDNS manages DNS zones.
	CapDNS Capability = 1 << iota
	// CapPTR sets reverse DNS of IP addresses.
	CapPTR
)

// ProviderKind describes a known provider kind: its capabilities and
// attributes.
type ProviderKind struct {
	Name     string
	Caps     Capability
	Required []string
	Optional []string
	// Secret attributes are always treated as sensitive, even when written
	// as literals.
	Secret []string
}

// Provider is a `provider "<kind>" "<name>"` block.
type Provider struct {
	Kind      string
	Name      string
	Attrs     map[string]Value
	DeclRange hcl.Range
}

// Addr is the provider's reference address, e.g. "provider.ovh.eu".
func (p *Provider) Addr() string { return "provider." + p.Kind + "." + p.Name }

// Server is a `server "<name>"` block.
type Server struct {
	Name     string
	Hostname string
	IPv4     netip.Addr
	IPv6     netip.Addr // zero when absent
	// PTR is the provider that sets reverse DNS, or nil.
	PTR      *Provider
	SSH      *SSH   // nil for a local target
	Local    *Local // nil for an SSH target
	TLS      TLS
	Relay    *Relay
	Outbound *Outbound // nil: defaults (IPv6 preferred, no warm-up)
	Inbound  *Inbound  // nil: defaults (Spamhaus ZEN, no greylisting)
	Spam     *Spam     // nil: no content filtering
	Store    *Store    // nil: the embedded store (multinode.go)
	Limits   Limits    // zero values: the server's defaults (docs/security.md)
	Ports    Ports
	// Resolvers ("host:port") answer the server's MX, SPF, DKIM and DMARC
	// lookups; empty: the server's /etc/resolv.conf.
	Resolvers []string
	// RecipientDelimiter holds the characters that separate a local part
	// from its detail (alice+lists@); nil: the server's default "+";
	// "": no subaddresses.
	RecipientDelimiter *string
	// ServerBinary optionally overrides the binary uploaded on deploy.
	DeclRange hcl.Range
}

// SSH says how to reach a server.
type SSH struct {
	Address    string // host:port, default ipv4:22
	User       string // default root
	HostKey    string // pinned authorized_keys-format key
	KnownHosts string // known_hosts file, default ~/.ssh/known_hosts when HostKey is empty
	Identity   string // private key file; default ssh-agent then ~/.ssh/id_*
}

// Local is a target on this machine (the lab): the server runs as a child
// process supervised through a pid file under Dir.
type Local struct {
	Dir string // relative to the config directory
}

// TLS says where the server's certificate comes from.
type TLS struct {
	ACMEEmail     string
	ACMEDirectory string
	CertFile      string
	KeyFile       string
	SelfSigned    bool
}

// Relay is an outbound smarthost: for all mail, or only for Domains and
// destinations whose MX matches MXHosts.
type Relay struct {
	Address  string
	Username Value
	Password Value
	Domains  []string
	MXHosts  []string
	// CAFile holds PEM roots to verify the relay with, a path on the
	// server (for a local server, relative to the configuration
	// directory); empty: the system roots.
	CAFile string
}

// Outbound tunes direct delivery.
type Outbound struct {
	Prefer     string // "ipv6" (default) or "ipv4"
	SourceIPv4 netip.Addr
	SourceIPv6 netip.Addr
	Warmup     *Warmup
	// Port is the SMTP port of the destinations (default 25: another
	// lets two test servers exchange mail without root).
	Port int
	// MaxAge is how long a message is retried before it bounces, and
	// DelayNotice when its sender is told of the delay; 0: the server's
	// defaults (5 days, 4 hours).
	MaxAge, DelayNotice time.Duration
}

// Limits are the server's protocol limits and caps; a zero field keeps
// the server's default (docs/security.md says why each default is what it
// is).
type Limits struct {
	MaxMessageBytes    int64
	MaxRecipients      int
	SMTPConnsPerIP     int
	IMAPConnsPerIP     int
	IMAPConnsPerUserIP int
	AuthFailuresPerIP  int
	CommandTimeout     time.Duration
}

// Warmup is the IP warm-up ramp: a daily cap of direct deliveries, 50 the
// first week and doubling weekly, lifted after Weeks.
type Warmup struct {
	Weeks    int    // default 6
	Start    string // YYYY-MM-DD; empty: the first delivery
	Overflow string // "defer" (default) or "relay"
}

// Inbound tunes the checks of mail received on port 25.
type Inbound struct {
	// DNSBL zones; nil means the server's default (zen.spamhaus.org), an
	// empty list turns blocklist checks off.
	DNSBL       []string
	Greylisting bool
	// GreylistDelay is how long a first-time triplet is deferred; 0: the
	// server's default (5 minutes).
	GreylistDelay time.Duration
	// DMARCPolicy is "enforce" (default) or "report".
	DMARCPolicy string
}

// Ports are the server's listen ports.
type Ports struct {
	SMTP, Submission, Submissions, IMAP, IMAPS, HTTPS, HTTP int
}

// DefaultPorts are the standard mail ports.
var DefaultPorts = Ports{SMTP: 25, Submission: 587, Submissions: 465, IMAP: 143, IMAPS: 993, HTTPS: 443, HTTP: 80}

// Domain is a `domain "<name>"` block.
type Domain struct {
	Name string
	DNS  *Provider
	Zone string // the zone at the DNS provider; empty = discover
	// Server is the domain's first server (Servers[0]): the one whose
	// DKIM keys every node signs with, and that autoconfig names.
	Server *Server
	// Servers are the nodes that receive the domain's mail, in the
	// configured order (server = ... or servers = [...]).
	Servers []*Server
	// MXPriority is each server's MX preference by name; nil: every
	// server DefaultMXPriority.
	MXPriority map[string]int
	TTL        int // default 3600
	DKIM       DKIM
	SPF        SPF
	DMARC      DMARC
	MTASTS     *MTASTS // nil when absent
	TLSRPT     *TLSRPT // nil when absent
	DeclRange  hcl.Range
}

// DKIM settings.
type DKIM struct {
	Selector string // default "mailctl"; its keys sign
	// Previous selectors stay published (not signing) during a rotation.
	Previous []string
	// RotateEvery, when set, makes plan start a rotation (a new key
	// generated on the server) once the signing key is that old.
	RotateEvery time.Duration
	// Grace is how long a rotated-out selector stays published after
	// signing switched away from it (default DefaultDKIMGrace).
	Grace time.Duration
}

// DefaultDKIMGrace is the default grace period of a retired DKIM selector:
// long enough for mail signed with it to be delivered and read.
const DefaultDKIMGrace = 7 * 24 * time.Hour

// SPF settings.
type SPF struct {
	Include []string
	All     string // "~all" (default), "-all", "?all"
}

// DMARC settings.
type DMARC struct {
	Policy          string // none (default), quarantine, reject
	SubdomainPolicy string
	RUA             []string
	RUF             []string
	Percent         int // 0 = unset (100)
	ADKIM, ASPF     string
}

// MTASTS settings.
type MTASTS struct {
	Mode   string // testing (default), enforce, none
	MaxAge int    // seconds, default 604800
}

// TLSRPT settings.
type TLSRPT struct {
	RUA []string
}

// User is a `user "<address>"` block.
type User struct {
	Address      string
	Name         string
	PasswordHash Value
	Aliases      []string
	QuotaBytes   int64
	// PasswordScopes restricts the main password to these protocols
	// ("imap", "smtp", "dav"); nil: every one; empty: none.
	PasswordScopes []string
	AppPasswords   []*AppPassword
	// Sieve is the user's filter script (sieve = file(...)), or the one
	// compiled from the vacation block (then Vacation is set).
	Sieve     string
	Vacation  *Vacation
	DeclRange hcl.Range
}

// Alias is an `alias "<address>"` block; "@domain" is a catch-all.
type Alias struct {
	Address   string
	To        []string
	DeclRange hcl.Range
}

// ProviderByAddr returns the provider with address "provider.KIND.NAME".
func (c *Config) ProviderByAddr(addr string) *Provider {
	for _, p := range c.Providers {
		if p.Addr() == addr {
			return p
		}
	}
	return nil
}

// ServerByName returns the named server or nil.
func (c *Config) ServerByName(name string) *Server {
	for _, s := range c.Servers {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// FilesOrNil returns c.Files, or nil when c is nil, for printing
// diagnostics of a load that failed early.
func (c *Config) FilesOrNil() map[string]*hcl.File {
	if c == nil {
		return nil
	}
	return c.Files
}
