// Package config is the bundled mail server's configuration file: the
// contract between the provisioner (`mailctl apply` generates it) and the
// server (`mailctl serve -config FILE` reads it). It is JSON, versioned by
// FormatVersion, and never contains a plaintext password: users carry
// argon2id hashes (RFC 9106, PHC string format).
package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mailctl/mailctl/internal/formatversion"
)

// FormatVersion is the version of the file format this package writes;
// it reads any 1.x, and the integer 1 of files written before the version
// became a string (internal/formatversion).
const FormatVersion = formatversion.Current

// Config is the whole server configuration.
type Config struct {
	// FormatVersion must be compatible with FormatVersion.
	FormatVersion formatversion.Version `json:"format_version"`
	// Hostname is the EHLO name, the TLS certificate name and the banner name.
	Hostname string `json:"hostname"`
	// DataDir holds the store, the queue, keys and certificates. Default /var/lib/mailctl.
	DataDir string `json:"data_dir,omitempty"`
	// Listen holds the listen addresses; an empty one disables that service.
	Listen Listen `json:"listen"`
	TLS    TLS    `json:"tls"`
	// Domains served locally.
	Domains []Domain `json:"domains"`
	Users   []User   `json:"users"`
	// Aliases map an address (or "@domain" catch-all) to local or remote addresses.
	Aliases []Alias `json:"aliases,omitempty"`
	Limits  Limits  `json:"limits"`
	// Outbound configures the outbound queue (server/queue); nil: defaults.
	Outbound *Outbound `json:"outbound,omitempty"`
	// Relay is the optional smarthost for outbound mail.
	Relay *Relay `json:"relay,omitempty"`
	// Inbound configures the checks on port 25 (server/inbound); nil: defaults.
	Inbound *Inbound `json:"inbound,omitempty"`
	// Spam turns on content filtering of port 25 with rspamd
	// (server/spam); nil: none.
	Spam *Spam `json:"spam,omitempty"`
	// Store chooses the mail store (config/store.go); nil: embedded.
	Store *Store `json:"store,omitempty"`
	// Control is the unix socket path that `mailctl serve status` talks to.
	// Default <DataDir>/control.sock.
	Control string `json:"control,omitempty"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `json:"log_level,omitempty"`
	// RecipientDelimiter holds the characters that separate a local part
	// from its detail (alice+lists@ is alice@); absent: "+"; "": none.
	RecipientDelimiter *string `json:"recipient_delimiter,omitempty"`
}

// Listen addresses ("host:port"). Defaults: smtp :25, submission :587,
// submissions :465, imap :143, imaps :993, https :443, http :80.
type Listen struct {
	SMTP        string `json:"smtp,omitempty"`
	Submission  string `json:"submission,omitempty"`
	Submissions string `json:"submissions,omitempty"`
	IMAP        string `json:"imap,omitempty"`
	IMAPS       string `json:"imaps,omitempty"`
	HTTPS       string `json:"https,omitempty"`
	HTTP        string `json:"http,omitempty"`
}

// TLS says where certificates come from. Exactly one mode.
type TLS struct {
	// Mode is "files", "acme" or "self-signed".
	Mode     string `json:"mode"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ACME settings (mode "acme").
	ACMEEmail string `json:"acme_email,omitempty"`
	// ACMEDirectory defaults to Let's Encrypt production.
	ACMEDirectory string `json:"acme_directory,omitempty"`
	// ACMECARoot is a PEM file of extra roots to trust for the ACME server (tests: Pebble).
	ACMECARoot string `json:"acme_ca_root,omitempty"`
}

// Domain is a mail domain served by this server.
type Domain struct {
	Name string `json:"name"`
	// MTASTSMode is "", "testing", "enforce" or "none"; served at
	// https://mta-sts.<name>/.well-known/mta-sts.txt when set.
	MTASTSMode   string `json:"mta_sts_mode,omitempty"`
	MTASTSMaxAge int    `json:"mta_sts_max_age,omitempty"` // seconds, default 604800
	// MTASTSMX are the host names the policy lists as mx (one line each,
	// in this order), for a domain served by several servers; empty means
	// this server's Hostname only. When set it must include Hostname.
	MTASTSMX []string `json:"mta_sts_mx,omitempty"`
	// DKIMSelectors are generated on the server on first start (ed25519 and
	// rsa-2048 under "<selector>" with suffixes chosen by the server).
	DKIMSelectors []string `json:"dkim_selectors,omitempty"`
}

// User is a mailbox owner.
type User struct {
	Address      string `json:"address"`
	Name         string `json:"name,omitempty"`
	PasswordHash string `json:"password_hash"`
	// Aliases are extra addresses delivered to this user and usable as From.
	Aliases []string `json:"aliases,omitempty"`
	// QuotaBytes is 0 for unlimited.
	QuotaBytes int64 `json:"quota_bytes,omitempty"`
	// PasswordScopes restricts the main password to these protocols
	// ("imap", "smtp", "dav"); absent: every one; empty: none (only the app
	// passwords log in).
	PasswordScopes *[]string `json:"password_scopes,omitempty"`
	// AppPasswords are the user's per-device passwords.
	AppPasswords []AppPassword `json:"app_passwords,omitempty"`
	// Sieve is the user's filter script (RFC 5228), run at local delivery.
	Sieve string `json:"sieve,omitempty"`
}

// Alias maps Address ("user@domain" or "@domain") to To.
type Alias struct {
	Address string   `json:"address"`
	To      []string `json:"to"`
}

// Limits are protocol limits; zero values take the defaults.
type Limits struct {
	MaxMessageBytes   int64    `json:"max_message_bytes,omitempty"`    // default 50 MiB
	MaxRecipients     int      `json:"max_recipients,omitempty"`       // default 100
	MaxConnsPerIP     int      `json:"max_conns_per_ip,omitempty"`     // SMTP, default 20
	AuthFailuresPerIP int      `json:"auth_failures_per_ip,omitempty"` // per 10 minutes, default 10
	Timeout           Duration `json:"timeout,omitempty"`              // per command, default 5m
	// IMAPConnsPerIP caps IMAP connections from one address (IPv4, or IPv6 /64).
	IMAPConnsPerIP int `json:"imap_conns_per_ip,omitempty"` // default 50
	// IMAPConnsPerUserIP caps one user's IMAP sessions from one address
	// (Dovecot's mail_max_userip_connections).
	IMAPConnsPerUserIP int `json:"imap_conns_per_user_ip,omitempty"` // default 10
}

// Duration is a time.Duration written as a Go duration string ("5m").
type Duration time.Duration

// String formats d like time.Duration but without zero units: "5m", "1h30m", "90s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalJSON writes d as a duration string ("5m").
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a duration string ("5m", "90s"); numbers are refused
// because their unit would be ambiguous.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"5m\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
