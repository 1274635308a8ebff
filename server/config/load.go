package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/internal/formatversion"
	"github.com/mailctl/mailctl/server/auth"
)

// Defaults applied by WithDefaults.
const (
	DefaultDataDir          = contract.DefaultDataDir
	DefaultMaxMessageBytes  = 50 << 20
	DefaultMaxRecipients    = 100
	DefaultMaxConnsPerIP    = 20
	DefaultAuthFailures     = 10
	DefaultIMAPConnsPerIP   = 50
	DefaultIMAPConnsPerUser = 10
	DefaultTimeout          = Duration(5 * time.Minute)
	DefaultMTASTSMaxAge     = 604800
	DefaultLogLevel         = "info"
	maxConfigFileBytes      = 16 << 20
	maxMessageBytesLimit    = 1 << 30
	maxCountLimit           = 100000
	maxTimeout              = time.Hour
	maxMTASTSMaxAge         = 31557600
)

// DefaultListen is used when the listen object is absent or empty.
var DefaultListen = Listen{
	SMTP: ":25", Submission: ":587", Submissions: ":465",
	IMAP: ":143", IMAPS: ":993", HTTPS: ":443", HTTP: ":80",
}

// Load reads, decodes (strictly), applies defaults to and validates the
// configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load config %q: %w", path, err)
	}
	if len(data) > maxConfigFileBytes {
		return nil, fmt.Errorf("load config %q: larger than %d bytes", path, maxConfigFileBytes)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load config %q: %w", path, err)
	}
	return c, nil
}

// Parse decodes a configuration strictly (unknown fields, trailing data and
// another format_version are errors), applies defaults and validates it.
func Parse(data []byte) (*Config, error) {
	var probe struct {
		FormatVersion *formatversion.Version `json:"format_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if probe.FormatVersion == nil {
		return nil, errors.New("format_version is missing")
	}
	if !probe.FormatVersion.Compatible() {
		return nil, fmt.Errorf("format_version %q is not supported (this server reads %s): upgrade the server", *probe.FormatVersion, FormatVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode JSON: unexpected data after the configuration object")
	}
	d := c.WithDefaults()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// WithDefaults returns a copy of c with every unset field given its
// default. The listen addresses take DefaultListen only when the whole listen
// object is empty; otherwise an empty address disables that service.
func (c *Config) WithDefaults() *Config {
	d := *c
	if d.DataDir == "" {
		d.DataDir = DefaultDataDir
	}
	if d.Listen == (Listen{}) {
		d.Listen = DefaultListen
	}
	d.Domains = slices.Clone(c.Domains)
	for i := range d.Domains {
		if d.Domains[i].MTASTSMode != "" && d.Domains[i].MTASTSMaxAge == 0 {
			d.Domains[i].MTASTSMaxAge = DefaultMTASTSMaxAge
		}
	}
	if d.Limits.MaxMessageBytes == 0 {
		d.Limits.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if d.Limits.MaxRecipients == 0 {
		d.Limits.MaxRecipients = DefaultMaxRecipients
	}
	if d.Limits.MaxConnsPerIP == 0 {
		d.Limits.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if d.Limits.AuthFailuresPerIP == 0 {
		d.Limits.AuthFailuresPerIP = DefaultAuthFailures
	}
	if d.Limits.IMAPConnsPerIP == 0 {
		d.Limits.IMAPConnsPerIP = DefaultIMAPConnsPerIP
	}
	if d.Limits.IMAPConnsPerUserIP == 0 {
		d.Limits.IMAPConnsPerUserIP = DefaultIMAPConnsPerUser
	}
	if d.Limits.Timeout == 0 {
		d.Limits.Timeout = DefaultTimeout
	}
	if d.Control == "" {
		d.Control = contract.DefaultControlSocket(d.DataDir)
	}
	if d.LogLevel == "" {
		d.LogLevel = DefaultLogLevel
	}
	return &d
}

// ValidationError lists every problem found in a configuration, one per line.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid server config:\n  " + strings.Join(e.Problems, "\n  ")
}

type problems []string

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, args...))
}

// Validate checks the whole configuration and reports every problem at
// once in a *ValidationError. Zero limits and empty optional fields are
// accepted (they mean "default"); call it on WithDefaults() to check the
// effective configuration.
func (c *Config) Validate() error {
	var p problems
	if !c.FormatVersion.Compatible() {
		p.add("format_version", "is %q, want %q", c.FormatVersion, FormatVersion)
	}
	if c.Hostname == "" {
		p.add("hostname", "is required")
	} else if _, err := auth.ParseDomain(c.Hostname); err != nil {
		p.add("hostname", "%q is not a host name: %v", c.Hostname, err)
	}
	if c.DataDir != "" && !filepath.IsAbs(c.DataDir) {
		p.add("data_dir", "%q must be an absolute path", c.DataDir)
	}
	if c.Control != "" && !filepath.IsAbs(c.Control) {
		p.add("control", "%q must be an absolute path", c.Control)
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		p.add("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	c.validateListen(&p)
	c.validateTLS(&p)
	c.validateLimits(&p)
	c.validateAddresses(&p)
	c.validateMail(&p)
	if c.RecipientDelimiter != nil {
		if err := auth.CheckRecipientDelimiter(*c.RecipientDelimiter); err != nil {
			p.add("recipient_delimiter", "%v", err)
		}
	}
	c.validateSpam(&p)
	c.validateStore(&p)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (c *Config) validateListen(p *problems) {
	type svc struct{ name, addr string }
	l := c.Listen
	seen := map[string]string{} // port -> "name host"
	for _, s := range []svc{{"smtp", l.SMTP}, {"submission", l.Submission}, {"submissions", l.Submissions},
		{"imap", l.IMAP}, {"imaps", l.IMAPS}, {"https", l.HTTPS}, {"http", l.HTTP}} {
		if s.addr == "" {
			continue
		}
		field := "listen." + s.name
		host, port, err := net.SplitHostPort(s.addr)
		if err != nil {
			p.add(field, "%q is not host:port: %v", s.addr, err)
			continue
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			p.add(field, "%q: port %q is not a number from 0 to 65535", s.addr, port)
			continue
		}
		if host != "" && net.ParseIP(host) == nil && host != "localhost" {
			if _, err := auth.ParseDomain(host); err != nil {
				p.add(field, "%q: host %q is neither an IP address nor a host name", s.addr, host)
				continue
			}
		}
		if n == 0 {
			continue // an ephemeral port never collides
		}
		for _, prev := range []string{port + " " + host, port + " ", port + " *"} {
			if other, ok := seen[prev]; ok {
				p.add(field, "%q uses the same port as listen.%s", s.addr, other)
				break
			}
		}
		seen[port+" "+host] = s.name
		if host == "" || host == "0.0.0.0" || host == "::" {
			seen[port+" *"] = s.name
		}
	}
}

func (c *Config) validateTLS(p *problems) {
	t := c.TLS
	forbid := func(mode string, fields map[string]string) {
		for name, v := range fields {
			if v != "" {
				p.add("tls."+name, "must be empty with mode %q", mode)
			}
		}
	}
	switch t.Mode {
	case "files":
		if t.CertFile == "" {
			p.add("tls.cert_file", "is required with mode \"files\"")
		}
		if t.KeyFile == "" {
			p.add("tls.key_file", "is required with mode \"files\"")
		}
		forbid(t.Mode, map[string]string{"acme_email": t.ACMEEmail, "acme_directory": t.ACMEDirectory, "acme_ca_root": t.ACMECARoot})
	case "acme":
		if t.ACMEEmail == "" {
			p.add("tls.acme_email", "is required with mode \"acme\"")
		} else if _, err := auth.ParseAddress(t.ACMEEmail); err != nil {
			p.add("tls.acme_email", "%v", err)
		}
		if t.ACMEDirectory != "" {
			u, err := url.Parse(t.ACMEDirectory)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				p.add("tls.acme_directory", "%q is not an https URL", t.ACMEDirectory)
			}
		}
		forbid(t.Mode, map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile})
	case "self-signed":
		forbid(t.Mode, map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile,
			"acme_email": t.ACMEEmail, "acme_directory": t.ACMEDirectory, "acme_ca_root": t.ACMECARoot})
	case "":
		p.add("tls.mode", "is required (files, acme or self-signed)")
	default:
		p.add("tls.mode", "%q is not one of files, acme, self-signed", t.Mode)
	}
}

func (c *Config) validateLimits(p *problems) {
	l := c.Limits
	if l.MaxMessageBytes < 0 || l.MaxMessageBytes > maxMessageBytesLimit {
		p.add("limits.max_message_bytes", "%d is outside 0..%d", l.MaxMessageBytes, maxMessageBytesLimit)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_recipients", l.MaxRecipients}, {"max_conns_per_ip", l.MaxConnsPerIP}, {"auth_failures_per_ip", l.AuthFailuresPerIP},
		{"imap_conns_per_ip", l.IMAPConnsPerIP}, {"imap_conns_per_user_ip", l.IMAPConnsPerUserIP}} {
		if f.v < 0 || f.v > maxCountLimit {
			p.add("limits."+f.name, "%d is outside 0..%d", f.v, maxCountLimit)
		}
	}
	if d := time.Duration(l.Timeout); d != 0 && (d < time.Second || d > maxTimeout) {
		p.add("limits.timeout", "%s is outside 1s..%s", l.Timeout, Duration(maxTimeout))
	}
}

// validateAddresses checks domains, users and aliases together: syntax,
// membership of a declared domain, hashes, duplicates, targets and loops.
func (c *Config) validateAddresses(p *problems) {
	domains := map[string]bool{}
	if len(c.Domains) == 0 {
		p.add("domains", "at least one domain is required")
	}
	for i, d := range c.Domains {
		field := fmt.Sprintf("domains[%d]", i)
		name, err := auth.ParseDomain(d.Name)
		if err != nil {
			p.add(field+".name", "%q: %v", d.Name, err)
			continue
		}
		if domains[name] {
			p.add(field+".name", "duplicated domain %s", name)
		}
		domains[name] = true
		switch d.MTASTSMode {
		case "", "testing", "enforce", "none":
		default:
			p.add(field+".mta_sts_mode", "%q is not one of testing, enforce, none", d.MTASTSMode)
		}
		if d.MTASTSMaxAge < 0 || d.MTASTSMaxAge > maxMTASTSMaxAge {
			p.add(field+".mta_sts_max_age", "%d is outside 0..%d", d.MTASTSMaxAge, maxMTASTSMaxAge)
		}
		c.validateMTASTSMX(p, field, d)
		sels := map[string]bool{}
		for j, s := range d.DKIMSelectors {
			if !validSelector(s) {
				p.add(fmt.Sprintf("%s.dkim_selectors[%d]", field, j), "%q is not a DKIM selector (letters, digits, hyphens, dots)", s)
			}
			if sels[strings.ToLower(s)] {
				p.add(fmt.Sprintf("%s.dkim_selectors[%d]", field, j), "duplicated selector %q", s)
			}
			sels[strings.ToLower(s)] = true
		}
	}

	owner := map[string]string{} // address -> field that declared it
	declare := func(field, addr string) {
		if prev, ok := owner[addr]; ok {
			p.add(field, "duplicated address %s (also %s)", addr, prev)
			return
		}
		owner[addr] = field
	}
	checkLocal := func(field, raw string) (auth.Address, bool) {
		a, err := auth.ParseAddress(raw)
		if err != nil {
			p.add(field, "%v", err)
			return a, false
		}
		if !domains[a.Domain] {
			p.add(field, "%s is outside every declared domain", a)
			return a, false
		}
		return a, true
	}
	for i, u := range c.Users {
		field := fmt.Sprintf("users[%d]", i)
		if a, ok := checkLocal(field+".address", u.Address); ok {
			declare(field+".address", a.String())
		}
		if u.PasswordHash == "" {
			p.add(field+".password_hash", "is required (make one with `mailctl passwd`)")
		} else if _, _, _, err := auth.ParseHash(u.PasswordHash); err != nil {
			p.add(field+".password_hash", "%v", err)
		}
		for j, al := range u.Aliases {
			af := fmt.Sprintf("%s.aliases[%d]", field, j)
			if a, ok := checkLocal(af, al); ok {
				declare(af, a.String())
			}
		}
		if u.QuotaBytes < 0 {
			p.add(field+".quota_bytes", "%d is negative", u.QuotaBytes)
		}
		validateCredentials(p, field, u)
		checkSieve(p, field+".sieve", u.Sieve)
	}
	aliasTo := map[string][]string{} // alias address -> local targets
	for i, al := range c.Aliases {
		field := fmt.Sprintf("aliases[%d]", i)
		pat, err := auth.ParsePattern(al.Address)
		patOK := false
		switch {
		case err != nil:
			p.add(field+".address", "%v", err)
		case !domains[pat.Domain]:
			p.add(field+".address", "%s is outside every declared domain", al.Address)
		default:
			patOK = true
			declare(field+".address", pat.String())
		}
		if len(al.To) == 0 {
			p.add(field+".to", "needs at least one target")
		}
		for j, t := range al.To {
			tf := fmt.Sprintf("%s.to[%d]", field, j)
			ta, err := auth.ParseAddress(t)
			if err != nil {
				p.add(tf, "%v", err)
				continue
			}
			if patOK && domains[ta.Domain] {
				aliasTo[pat.String()] = append(aliasTo[pat.String()], ta.String())
			}
		}
	}
	// Local targets must exist (checked once every address is declared).
	for i, al := range c.Aliases {
		for j, t := range al.To {
			ta, err := auth.ParseAddress(t)
			if err != nil || !domains[ta.Domain] {
				continue
			}
			if _, ok := owner[ta.String()]; !ok {
				p.add(fmt.Sprintf("aliases[%d].to[%d]", i, j), "%s is in a local domain but is no user, user alias or alias", ta)
			}
		}
	}
	for _, loop := range findLoops(aliasTo) {
		p.add("aliases", "loop %s", strings.Join(loop, " -> "))
	}
}

// findLoops returns each cycle of the alias graph once, as a path that ends
// where it starts.
func findLoops(g map[string][]string) [][]string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var loops [][]string
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, m := range g[n] {
			if _, isAlias := g[m]; !isAlias {
				continue
			}
			switch color[m] {
			case white:
				visit(m)
			case grey:
				i := slices.Index(stack, m)
				loops = append(loops, append(slices.Clone(stack[i:]), m))
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if color[k] == white {
			visit(k)
		}
	}
	return loops
}

func validSelector(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Digest returns the hex SHA-256 of the canonical JSON of c: defaults
// applied, domains, users and aliases sorted by name/address. The
// provisioner compares it with what a running server reports.
func (c *Config) Digest() string {
	d := c.WithDefaults()
	d.Users = slices.Clone(d.Users)
	d.Aliases = slices.Clone(d.Aliases)
	sort.SliceStable(d.Domains, func(i, j int) bool { return d.Domains[i].Name < d.Domains[j].Name })
	sort.SliceStable(d.Users, func(i, j int) bool { return d.Users[i].Address < d.Users[j].Address })
	sort.SliceStable(d.Aliases, func(i, j int) bool { return d.Aliases[i].Address < d.Aliases[j].Address })
	b, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("config: marshal for digest: %v", err)) // plain data cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// DomainNames returns the served domain names.
func (c *Config) DomainNames() []string {
	out := make([]string, len(c.Domains))
	for i, d := range c.Domains {
		out[i] = d.Name
	}
	return out
}

// AuthUsers converts the users for auth.NewAuthenticator and auth.NewDirectory.
func (c *Config) AuthUsers() []auth.User {
	out := make([]auth.User, len(c.Users))
	for i, u := range c.Users {
		out[i] = auth.User{Address: u.Address, PasswordHash: u.PasswordHash, Aliases: u.Aliases, QuotaBytes: u.QuotaBytes}
		out[i].PasswordScopes, out[i].AppPasswords = authCredentials(u)
	}
	return out
}

// AuthAliases converts the aliases for auth.NewDirectory.
func (c *Config) AuthAliases() []auth.Alias {
	out := make([]auth.Alias, len(c.Aliases))
	for i, a := range c.Aliases {
		out[i] = auth.Alias{Address: a.Address, To: a.To}
	}
	return out
}
