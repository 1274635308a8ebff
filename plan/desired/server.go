package desired

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan/config"
	serverconfig "github.com/mailctl/mailctl/server/config"
)

// LocalDir returns the absolute lab directory of a local server.
func LocalDir(cfg *config.Config, s *config.Server) string {
	if s.Local == nil {
		return ""
	}
	d := s.Local.Dir
	if !filepath.IsAbs(d) {
		d = filepath.Join(cfg.Dir, d)
	}
	if abs, err := filepath.Abs(d); err == nil {
		d = abs
	}
	return d
}

// LabDataDir returns the data directory of a local server
// (contract.LabDataDir of its lab directory).
func LabDataDir(cfg *config.Config, s *config.Server) string {
	return contract.LabDataDir(LocalDir(cfg, s))
}

// absDir is dir made absolute (unchanged when that fails).
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// LabListenHost is the address a local server listens on: its ipv4 when
// that is a loopback address (127.0.0.2 lets a second lab run beside one
// on 127.0.0.1), else 127.0.0.1 (validate warns about such an ipv4).
func LabListenHost(s *config.Server) string {
	if s.IPv4.IsLoopback() {
		return s.IPv4.String()
	}
	return "127.0.0.1"
}

// ServerConfig returns the configuration file of server s: its domains,
// their users and aliases, listen addresses and TLS mode. It is what apply
// writes to the server and what the server's reported digest is compared
// with.
func ServerConfig(cfg *config.Config, s *config.Server) *serverconfig.Config {
	sc := &serverconfig.Config{
		FormatVersion: serverconfig.FormatVersion,
		Hostname:      s.Hostname,
		DataDir:       contract.DefaultDataDir,
	}
	host := "" // every address
	if s.Local != nil {
		host = LabListenHost(s)
		sc.DataDir = LabDataDir(cfg, s)
	}
	addr := func(port int) string {
		if port == 0 {
			return ""
		}
		return fmt.Sprintf("%s:%d", host, port)
	}
	sc.Listen = serverconfig.Listen{
		SMTP: addr(s.Ports.SMTP), Submission: addr(s.Ports.Submission), Submissions: addr(s.Ports.Submissions),
		IMAP: addr(s.Ports.IMAP), IMAPS: addr(s.Ports.IMAPS), HTTPS: addr(s.Ports.HTTPS), HTTP: addr(s.Ports.HTTP),
	}
	switch {
	case s.TLS.SelfSigned:
		sc.TLS.Mode = "self-signed"
	case s.TLS.CertFile != "":
		sc.TLS = serverconfig.TLS{Mode: "files", CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile}
	default:
		sc.TLS = serverconfig.TLS{Mode: "acme", ACMEEmail: s.TLS.ACMEEmail, ACMEDirectory: s.TLS.ACMEDirectory}
	}
	if r := s.Relay; r != nil {
		sc.Relay = &serverconfig.Relay{Address: r.Address, Username: r.Username.Str, Password: r.Password.Str,
			Domains: r.Domains, MXHosts: r.MXHosts, CAFile: r.CAFile}
		if r.CAFile != "" && s.Local != nil && !filepath.IsAbs(r.CAFile) {
			sc.Relay.CAFile = filepath.Join(absDir(cfg.Dir), r.CAFile)
		}
	}
	if o := s.Outbound; o != nil {
		sc.Outbound = &serverconfig.Outbound{AddressPreference: o.Prefer, Port: o.Port,
			MaxAge: serverconfig.Duration(o.MaxAge), DelayNotice: serverconfig.Duration(o.DelayNotice)}
		if o.SourceIPv4.IsValid() {
			sc.Outbound.SourceIPv4 = o.SourceIPv4.String()
		}
		if o.SourceIPv6.IsValid() {
			sc.Outbound.SourceIPv6 = o.SourceIPv6.String()
		}
		if w := o.Warmup; w != nil {
			sc.Outbound.Warmup = &serverconfig.Warmup{Weeks: w.Weeks, Start: w.Start, Overflow: w.Overflow}
		}
	}
	if s.RecipientDelimiter != nil {
		delims := *s.RecipientDelimiter
		sc.RecipientDelimiter = &delims
	}
	if len(s.Resolvers) > 0 {
		if sc.Outbound == nil {
			sc.Outbound = &serverconfig.Outbound{}
		}
		sc.Outbound.DNSServers = append([]string(nil), s.Resolvers...)
	}
	sc.Limits = serverconfig.Limits{MaxMessageBytes: s.Limits.MaxMessageBytes, MaxRecipients: s.Limits.MaxRecipients,
		MaxConnsPerIP: s.Limits.SMTPConnsPerIP, IMAPConnsPerIP: s.Limits.IMAPConnsPerIP,
		IMAPConnsPerUserIP: s.Limits.IMAPConnsPerUserIP, AuthFailuresPerIP: s.Limits.AuthFailuresPerIP,
		Timeout: serverconfig.Duration(s.Limits.CommandTimeout)}
	if in := s.Inbound; in != nil {
		sc.Inbound = &serverconfig.Inbound{DNSBLZones: in.DNSBL, Greylisting: in.Greylisting,
			GreylistDelay: serverconfig.Duration(in.GreylistDelay), DMARCPolicy: in.DMARCPolicy}
	} else if s.Local != nil {
		// A lab has no business asking public blocklists about 127.0.0.1.
		sc.Inbound = &serverconfig.Inbound{DNSBLZones: []string{}}
	}
	if sp := s.Spam; sp != nil && sp.Rspamd {
		sc.Spam = &serverconfig.Spam{Rspamd: true, URL: sp.URL, ControllerURL: sp.ControllerURL,
			RejectScore: sp.RejectScore, JunkScore: sp.JunkScore, Timeout: serverconfig.Duration(sp.Timeout)}
	}
	if s.Store != nil {
		sc.Store = &serverconfig.Store{PostgresURLFile: StoreURLFile(cfg, s), Node: s.Name,
			QueueLease: serverconfig.Duration(s.Store.QueueLease)}
	}
	served := map[string]bool{}
	for _, d := range cfg.Domains {
		if !slices.Contains(domainServers(d), s) {
			continue
		}
		served[d.Name] = true
		sd := serverconfig.Domain{Name: d.Name, DKIMSelectors: append([]string{d.DKIM.Selector}, d.DKIM.Previous...)}
		setMTASTS(&sd, d)
		sc.Domains = append(sc.Domains, sd)
	}
	inServed := func(addr string) bool { return served[addr[strings.LastIndexByte(addr, '@')+1:]] }
	for _, u := range cfg.Users {
		if !inServed(u.Address) {
			continue
		}
		su := serverconfig.User{
			Address: u.Address, Name: u.Name, PasswordHash: u.PasswordHash.Str,
			Aliases: u.Aliases, QuotaBytes: u.QuotaBytes, Sieve: u.Sieve,
		}
		if u.PasswordScopes != nil {
			scopes := append([]string{}, u.PasswordScopes...)
			su.PasswordScopes = &scopes
		}
		for _, ap := range u.AppPasswords {
			su.AppPasswords = append(su.AppPasswords, serverconfig.AppPassword{Name: ap.Name, Hash: ap.Hash.Str, Scopes: ap.Scopes})
		}
		sc.Users = append(sc.Users, su)
	}
	for _, a := range cfg.Aliases {
		if inServed(a.Address) {
			sc.Aliases = append(sc.Aliases, serverconfig.Alias{Address: a.Address, To: a.To})
		}
	}
	return sc
}
