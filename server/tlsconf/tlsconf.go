// Package tlsconf is the mail server's source of TLS certificates (RFC 8446,
// RFC 5280), in one of three modes taken from the server configuration:
//
//   - "files": a certificate chain and key given as PEM files, re-read on
//     Reload (SIGHUP) and when the files change on disk;
//   - "acme": certificates obtained and renewed through ACME (RFC 8555) by
//     certmagic, solving HTTP-01 on the daemon's http listener and
//     TLS-ALPN-01 (RFC 8737) on its https listener; clients that send no SNI
//     (many MTAs) get the hostname's certificate;
//   - "self-signed": one ECDSA P-256 certificate generated on first start and
//     kept in the data directory, for labs and tests.
//
// The names a server needs are its hostname plus mta-sts.<domain>,
// autoconfig.<domain> and autodiscover.<domain> for each served domain
// (RFC 8461, Thunderbird autoconfig, Outlook autodiscover).
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mailctl/mailctl/server/config"
)

// Modes of the TLS section.
const (
	ModeFiles      = "files"
	ModeACME       = "acme"
	ModeSelfSigned = "self-signed"
)

// DefaultACMEDirectory is Let's Encrypt's production directory.
const DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// Options are what the source needs besides the configuration.
type Options struct {
	// DataDir holds the self-signed certificate ("tls/") and the ACME
	// storage ("acme/"). Required for those modes.
	DataDir string
	// HTTPAddr and HTTPSAddr are the daemon's http and https listen
	// addresses ("host:port"); ACME solves HTTP-01 on the first and
	// TLS-ALPN-01 on the second. An empty one disables that challenge.
	HTTPAddr, HTTPSAddr string
	// PollInterval is how often mode "files" checks the files for changes.
	// Default 1 minute; negative disables polling.
	PollInterval time.Duration
	// Logger receives certificate events. Default slog.Default().
	Logger *slog.Logger
}

// CertInfo describes one certificate in use, for the status output.
type CertInfo struct {
	Names      []string  `json:"names"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	Issuer     string    `json:"issuer"`
	SelfSigned bool      `json:"self_signed"`
}

// Source hands out certificates. Its TLS configurations stay valid across
// reloads: they pick the current certificate at each handshake.
type Source struct {
	mode    string
	logger  *slog.Logger
	opts    Options
	current atomic.Pointer[tls.Certificate] // files and self-signed

	mu       sync.Mutex
	hostname string
	names    []string
	certFile string
	keyFile  string
	fileStat [2]fileStamp

	magic  *certmagic.Config
	cache  *certmagic.Cache
	issuer *certmagic.ACMEIssuer

	bg       context.Context // background ACME work, cancelled by Close
	cancel   context.CancelFunc
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Names returns the certificate names the server needs for cfg: the
// hostname first, then mta-sts., autoconfig. and autodiscover. of each
// domain, without duplicates.
func Names(cfg *config.Config) []string {
	names := []string{strings.ToLower(cfg.Hostname)}
	for _, d := range cfg.Domains {
		dn := strings.ToLower(strings.TrimSuffix(d.Name, "."))
		if dn == "" {
			continue
		}
		for _, p := range []string{"mta-sts.", "autoconfig.", "autodiscover."} {
			if n := p + dn; !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// New builds the source for cfg.TLS. In mode "acme" certificates are
// obtained in the background: handshakes fail until the first one arrives.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Source, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Minute
	}
	s := &Source{
		mode:     cfg.TLS.Mode,
		logger:   opts.Logger,
		opts:     opts,
		hostname: strings.ToLower(cfg.Hostname),
		names:    Names(cfg),
		stop:     make(chan struct{}),
	}
	s.bg, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.start(cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Source) start(cfg *config.Config) error {
	switch cfg.TLS.Mode {
	case ModeFiles:
		s.certFile, s.keyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
		if err := s.loadFiles(); err != nil {
			return err
		}
		if s.opts.PollInterval > 0 {
			s.wg.Add(1)
			go s.pollFiles(s.opts.PollInterval)
		}
		return nil
	case ModeSelfSigned:
		if s.opts.DataDir == "" {
			return errors.New("tls mode self-signed needs a data directory")
		}
		return s.loadSelfSigned(s.names)
	case ModeACME:
		return s.startACME(cfg)
	default:
		return fmt.Errorf("unknown tls mode %q (want files, acme or self-signed)", cfg.TLS.Mode)
	}
}

// Mode returns the TLS mode in use.
func (s *Source) Mode() string { return s.mode }

// TLSConfig returns the configuration for the mail protocols (SMTP
// STARTTLS, implicit TLS on 465 and 993, IMAP STARTTLS).
func (s *Source) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
	}
}

// HTTPSConfig returns the configuration for the https listener; in mode
// "acme" it also answers TLS-ALPN-01 challenges.
func (s *Source) HTTPSConfig() *tls.Config {
	c := s.TLSConfig()
	c.NextProtos = []string{"h2", "http/1.1"}
	if s.mode == ModeACME {
		c.NextProtos = append(c.NextProtos, "acme-tls/1")
	}
	return c
}

// GetCertificate is the tls.Config callback.
func (s *Source) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.mode == ModeACME {
		if hello.ServerName == "" {
			// certmagic falls back to DefaultServerName; be explicit so
			// that clients without SNI always get the hostname's cert.
			h := *hello
			h.ServerName = s.hostname
			return s.magic.GetCertificate(&h)
		}
		return s.magic.GetCertificate(hello)
	}
	c := s.current.Load()
	if c == nil {
		return nil, errors.New("tlsconf: no certificate loaded")
	}
	return c, nil
}

// HTTPHandler wraps the http listener's handler so that it answers ACME
// HTTP-01 challenges (mode "acme"); other modes return next unchanged.
func (s *Source) HTTPHandler(next http.Handler) http.Handler {
	if s.mode != ModeACME || s.issuer == nil {
		return next
	}
	return s.issuer.HTTPChallengeHandler(next)
}

// Reload applies a new configuration: files are re-read, a self-signed
// certificate is regenerated when names were added, ACME starts managing
// new names. A change of mode needs a restart. On error the old
// certificates stay in use.
func (s *Source) Reload(ctx context.Context, cfg *config.Config) error {
	if cfg.TLS.Mode != s.mode {
		return fmt.Errorf("tls mode changed from %q to %q: restart the server to apply it", s.mode, cfg.TLS.Mode)
	}
	names := Names(cfg)
	switch s.mode {
	case ModeFiles:
		s.mu.Lock()
		s.certFile, s.keyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
		s.mu.Unlock()
		return s.loadFiles()
	case ModeSelfSigned:
		if err := s.loadSelfSigned(names); err != nil {
			return err
		}
	case ModeACME:
		if strings.ToLower(cfg.Hostname) != s.hostname {
			return fmt.Errorf("hostname changed from %q to %q: restart the server to apply it", s.hostname, cfg.Hostname)
		}
		if err := s.magic.ManageAsync(s.bg, names); err != nil {
			return fmt.Errorf("manage certificates for %v: %w", names, err)
		}
	}
	s.mu.Lock()
	s.names = names
	s.mu.Unlock()
	return nil
}

// Certificates describes the certificates in use, hostname's first.
func (s *Source) Certificates() []CertInfo {
	if s.mode != ModeACME {
		c := s.current.Load()
		if c == nil || c.Leaf == nil {
			return nil
		}
		return []CertInfo{certInfo(c.Leaf, s.mode == ModeSelfSigned)}
	}
	s.mu.Lock()
	names := slices.Clone(s.names)
	s.mu.Unlock()
	var out []CertInfo
	seen := map[string]bool{}
	for _, n := range names {
		for _, c := range s.cache.AllMatchingCertificates(n) {
			if c.Leaf == nil || seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			out = append(out, certInfo(c.Leaf, false))
		}
	}
	return out
}

func certInfo(leaf *x509.Certificate, selfSigned bool) CertInfo {
	names := slices.Clone(leaf.DNSNames)
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = []string{leaf.Subject.CommonName}
	}
	return CertInfo{
		Names:      names,
		NotBefore:  leaf.NotBefore.UTC(),
		NotAfter:   leaf.NotAfter.UTC(),
		Issuer:     leaf.Issuer.String(),
		SelfSigned: selfSigned,
	}
}

// Close stops the background work (file polling, ACME maintenance).
func (s *Source) Close() error {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.cancel()
		if s.cache != nil {
			s.cache.Stop()
		}
	})
	s.wg.Wait()
	return nil
}

// loadFiles reads the certificate and key files and switches to them.
func (s *Source) loadFiles() error {
	s.mu.Lock()
	certFile, keyFile := s.certFile, s.keyFile
	s.mu.Unlock()
	if certFile == "" || keyFile == "" {
		return errors.New("tls mode files needs cert_file and key_file")
	}
	st, err := stamps(certFile, keyFile)
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %q and key %q: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("parse certificate %q: %w", certFile, err)
		}
	}
	if time.Now().After(c.Leaf.NotAfter) {
		s.logger.Warn("tls certificate has expired", "file", certFile, "not_after", c.Leaf.NotAfter)
	}
	s.current.Store(&c)
	s.mu.Lock()
	s.fileStat = st
	s.mu.Unlock()
	s.logger.Info("tls certificate loaded", "mode", ModeFiles, "file", certFile,
		"names", c.Leaf.DNSNames, "not_after", c.Leaf.NotAfter)
	return nil
}

func stamps(files ...string) ([2]fileStamp, error) {
	var st [2]fileStamp
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return st, fmt.Errorf("stat %q: %w", f, err)
		}
		st[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	return st, nil
}

// pollFiles reloads the files when their size or modification time changes.
func (s *Source) pollFiles(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		certFile, keyFile, old := s.certFile, s.keyFile, s.fileStat
		s.mu.Unlock()
		st, err := stamps(certFile, keyFile)
		if err != nil || st == old {
			continue
		}
		if err := s.loadFiles(); err != nil {
			s.logger.Error("tls certificate files changed but could not be loaded; keeping the old certificate", "err", err)
		}
	}
}

// startACME sets up certmagic with its own cache, storage under the data
// directory and an ACME issuer whose challenge solvers use the daemon's
// own listeners.
func (s *Source) startACME(cfg *config.Config) error {
	if s.opts.DataDir == "" {
		return errors.New("tls mode acme needs a data directory")
	}
	if s.opts.HTTPAddr == "" && s.opts.HTTPSAddr == "" {
		return errors.New("tls mode acme needs the http or the https listener for its challenges")
	}
	zl := newZapLogger(s.logger.With("component", "acme"))
	s.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return s.magic, nil },
		Logger:           zl,
	})
	s.magic = certmagic.New(s.cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: s.opts.DataDir + "/acme"},
		DefaultServerName: s.hostname,
		Logger:            zl,
	})
	tmpl := certmagic.ACMEIssuer{
		CA:                      cfg.TLS.ACMEDirectory,
		Email:                   cfg.TLS.ACMEEmail,
		Agreed:                  true,
		DisableHTTPChallenge:    s.opts.HTTPAddr == "",
		DisableTLSALPNChallenge: s.opts.HTTPSAddr == "",
		Logger:                  zl,
	}
	if tmpl.CA == "" {
		tmpl.CA = DefaultACMEDirectory
	}
	if tmpl.CA != DefaultACMEDirectory {
		tmpl.TestCA = tmpl.CA // no fallback to Let's Encrypt staging for another CA
	}
	if cfg.TLS.ACMECARoot != "" {
		pem, err := os.ReadFile(cfg.TLS.ACMECARoot)
		if err != nil {
			return fmt.Errorf("read acme_ca_root: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("acme_ca_root %q holds no PEM certificate", cfg.TLS.ACMECARoot)
		}
		tmpl.TrustedRoots = pool
	}
	for _, a := range []struct {
		addr string
		port *int
	}{{s.opts.HTTPAddr, &tmpl.AltHTTPPort}, {s.opts.HTTPSAddr, &tmpl.AltTLSALPNPort}} {
		if a.addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("listen address %q: %w", a.addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("listen address %q: bad port", a.addr)
		}
		*a.port = p
		tmpl.ListenHost = host
	}
	s.issuer = certmagic.NewACMEIssuer(s.magic, tmpl)
	s.magic.Issuers = []certmagic.Issuer{s.issuer}
	s.logger.Info("tls certificates from acme", "directory", tmpl.CA, "names", s.names)
	if err := s.magic.ManageAsync(s.bg, s.names); err != nil {
		return fmt.Errorf("manage certificates for %v: %w", s.names, err)
	}
	return nil
}
