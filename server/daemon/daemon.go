// Package daemon runs the bundled mail server (`mailctl serve`): it loads
// the server configuration (server/config), opens the store, and serves
// SMTP (RFC 5321, submission per RFC 6409 and RFC 8314), IMAP (RFC 9051,
// RFC 3501), the HTTPS endpoints (MTA-STS RFC 8461, autoconfig,
// autodiscover, health, metrics) and a control socket that answers status
// JSON. SIGHUP reloads users, aliases and certificates without dropping
// connections; cancelling the context (SIGTERM) shuts down gracefully.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/dav"
	"github.com/mailctl/mailctl/server/dkim"
	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/procmem"
	"github.com/mailctl/mailctl/server/queue"
	sievedeliver "github.com/mailctl/mailctl/server/sieve/deliver"
	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/store"
	"github.com/mailctl/mailctl/server/tlsconf"
	"github.com/mailctl/mailctl/server/web"
)

// ShutdownTimeout bounds the graceful shutdown: SMTP transactions in
// progress may finish within it.
const ShutdownTimeout = 30 * time.Second

// Options configure Run.
type Options struct {
	// ConfigPath is the server configuration file (JSON, server/config).
	ConfigPath string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Level, when set, is set from the configuration's log_level (also on
	// reload); it should be the level of Logger's handler.
	Level *slog.LevelVar
	// Version is reported in the status.
	Version string
}

// ConfigError is returned by Run when the configuration cannot be loaded;
// Problems has one line per problem.
type ConfigError struct {
	Path     string
	Problems []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("server config %s: %s", e.Path, strings.Join(e.Problems, "; "))
}

type daemon struct {
	opts    Options
	log     *slog.Logger
	started time.Time
	st      store.Backend
	pool    *pgxpool.Pool // the PostgreSQL store's database; nil on the embedded store
	dav     *dav.Store
	authn   *auth.Authenticator
	dir     *auth.Directory
	tls     *tlsconf.Source
	web     *web.Handler
	metrics *web.Metrics
	signer  *dkim.Signer
	keys    []dkim.Key // DKIM keys of the current configuration, for status (under mu)
	dkimMu  sync.Mutex // serialises DKIM rotation steps and reloads
	queue   *queue.Queue
	filter  *sievedeliver.Filter // users' Sieve scripts at local delivery
	errs    *errorLog            // the last errors logged, for status
	spam    *spamFilter          // nil: no content filtering

	mu            sync.Mutex
	cfg           *config.Config
	boot          *config.Config // the configuration the servers started with
	restartNeeded []string
	lastReload    *ReloadState
	listeners     map[string]string
	closing       bool
}

// service is one listening protocol.
type service struct {
	name string
	addr string
	ln   net.Listener
}

// loadConfig loads and validates the file, turning every problem into
// one line.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg, nil
	}
	var verr *config.ValidationError
	if errors.As(err, &verr) {
		return nil, &ConfigError{Path: path, Problems: verr.Problems}
	}
	return nil, &ConfigError{Path: path, Problems: []string{err.Error()}}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// Run serves mail until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	cfg, err := loadConfig(opts.ConfigPath)
	if err != nil {
		return err
	}
	if opts.Level != nil {
		opts.Level.Set(parseLevel(cfg.LogLevel))
	}
	errs := &errorLog{}
	opts.Logger = errs.wrap(opts.Logger)
	d := &daemon{opts: opts, log: opts.Logger, errs: errs, started: time.Now().UTC(), cfg: cfg, boot: cfg, metrics: web.NewMetrics()}
	return d.run(ctx)
}

func (d *daemon) run(ctx context.Context) (err error) {
	cfg := d.cfg
	log := d.log
	log.Info("starting mail server", "version", d.opts.Version, "config", d.opts.ConfigPath,
		"config_digest", cfg.Digest(), "hostname", cfg.Hostname)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory %q: %w", cfg.DataDir, err)
	}
	spool := filepath.Join(cfg.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("create spool directory %q: %w", spool, err)
	}

	// The control socket first: it refuses to start a second server on
	// the same data.
	controlLn, err := listenControl(cfg.Control)
	if err != nil {
		return err
	}
	defer func() {
		controlLn.Close()
		os.Remove(cfg.Control)
	}()

	d.st, d.pool, err = openStore(ctx, cfg, log.With("component", "store"))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
		if d.pool != nil {
			d.pool.Close()
		}
		log.Info("store closed")
	}()
	d.metrics.SetStoreSize(func() int64 { return storeSize(d.st) })
	if err := d.openDAV(ctx, cfg); err != nil {
		return err
	}
	defer d.closeDAV()
	if err := d.ensureUsers(ctx, cfg); err != nil {
		return err
	}

	// The authenticator remembers logins (sliding expiry, one verification
	// per credential at a time) and runs one argon2id check per CPU
	// (within 256 MiB of argon2id memory),
	// round robin across client addresses.
	authOpts := auth.AuthenticatorOptions{
		MaxFailures: cfg.Limits.AuthFailuresPerIP,
		Logger:      log.With("component", "auth"),
	}
	if d.pool != nil { // nodes count a client's failures together
		authOpts.SharedFailures = auth.NewPostgresFailures(d.pool)
	}
	d.authn, err = auth.NewAuthenticator(cfg.AuthUsers(), authOpts)
	if err != nil {
		return fmt.Errorf("set up authentication: %w", err)
	}
	d.dir, err = auth.NewDirectory(cfg.DomainNames(), cfg.AuthUsers(), cfg.AuthAliases())
	if err != nil {
		return fmt.Errorf("set up address directory: %w", err)
	}
	if err := d.dir.SetRecipientDelimiter(cfg.Delimiter()); err != nil {
		return fmt.Errorf("set up address directory: %w", err)
	}

	// DKIM keys (generated on first start, never leave the server), the
	// outbound queue, and the inbound checks of port 25.
	keys, err := dkim.KeysFromConfig(cfg)
	if err != nil {
		return fmt.Errorf("dkim keys: %w", err)
	}
	d.keys = keys
	d.signer = dkim.NewSigner(keys)
	resolver, err := queue.ResolverFromConfig(cfg)
	if err != nil {
		return fmt.Errorf("dns resolver: %w", err)
	}
	inOpts, greylist, err := inbound.SharedOptionsFromConfig(ctx, cfg, resolver, log.With("component", "inbound"), d.pool)
	if err != nil {
		return fmt.Errorf("inbound checks: %w", err)
	}
	if greylist != nil {
		defer greylist.Close()
	}
	checker, err := inbound.New(inOpts)
	if err != nil {
		return fmt.Errorf("inbound checks: %w", err)
	}
	d.spam = newSpamFilter(cfg, checker, d.st, resolver, log.With("component", "spam"))
	defer d.spam.close()
	qopts, err := queue.OptionsFromConfig(cfg, resolver, d.signer, d.dir, d.st, log.With("component", "queue"))
	if err != nil {
		return fmt.Errorf("outbound queue: %w", err)
	}
	if d.pool != nil { // one queue for all nodes, with leases
		// qopts.Node: store.node, else the hostname; a lease of 0: the default.
		qopts.Postgres = d.pool
		qopts.LeaseTime = time.Duration(cfg.Store.QueueLease)
	}
	// Submitted local mail gets the Authentication-Results a receiver would add (selfauth.go).
	if err := d.openFilter(cfg, log); err != nil {
		return err
	}
	defer d.filter.Close()
	qopts.Deliver = queue.StampingDeliverer(d.dir, d.filter, ownStamper(cfg, checker, resolver, log.With("component", "selfauth")))
	d.queue, err = queue.Open(ctx, qopts)
	if err != nil {
		return fmt.Errorf("open outbound queue: %w", err)
	}
	d.filter.SetQueue(d.queue)
	defer func() {
		if cerr := d.queue.Close(); cerr != nil {
			log.Warn("close outbound queue", "err", cerr)
		}
	}()
	d.metrics.SetQueueSizeFunc(func() int64 { return int64(d.queue.Len()) })

	// Bind every listener before serving anything, so that a busy port is
	// one clear error at start.
	services := []*service{
		{name: "smtp", addr: cfg.Listen.SMTP},
		{name: "submission", addr: cfg.Listen.Submission},
		{name: "submissions", addr: cfg.Listen.Submissions},
		{name: "imap", addr: cfg.Listen.IMAP},
		{name: "imaps", addr: cfg.Listen.IMAPS},
		{name: "https", addr: cfg.Listen.HTTPS},
		{name: "http", addr: cfg.Listen.HTTP},
	}
	byName := map[string]*service{}
	listeners := map[string]string{}
	defer func() {
		for _, s := range services {
			if s.ln != nil {
				s.ln.Close()
			}
		}
	}()
	for _, s := range services {
		byName[s.name] = s
		if s.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listen for %s on %q: %w", s.name, s.addr, err)
		}
		s.ln = &countingListener{Listener: ln, service: s.name, metrics: d.metrics}
		listeners[s.name] = ln.Addr().String()
	}
	d.listeners = listeners

	d.tls, err = tlsconf.New(ctx, cfg, tlsconf.Options{
		DataDir:   cfg.DataDir,
		HTTPAddr:  listeners["http"],
		HTTPSAddr: listeners["https"],
		Logger:    log.With("component", "tls"),
	})
	if err != nil {
		return fmt.Errorf("set up tls: %w", err)
	}
	defer d.tls.Close()

	// Servers.
	type server interface {
		Serve(net.Listener) error
		Shutdown(context.Context) error
	}
	var running []struct {
		name string
		srv  server
	}
	serveErr := make(chan error, len(services)+1)
	start := func(name string, srv server) {
		s := byName[name]
		running = append(running, struct {
			name string
			srv  server
		}{name, srv})
		go func() {
			if err := srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	baseCtx := context.WithoutCancel(ctx)
	for _, m := range []struct {
		name string
		mode smtp.Mode
	}{{"smtp", smtp.ModeMX}, {"submission", smtp.ModeSubmission}, {"submissions", smtp.ModeSubmissions}} {
		if byName[m.name].ln == nil {
			continue
		}
		var in smtp.Inbound
		var dir smtp.Directory = submissionDirectory{d.dir, d.st}
		if m.mode == smtp.ModeMX {
			in, dir = d.spam.inbound(checker), d.dir
		}
		srv, err := smtp.New(smtp.Options{
			Queue:     d.queue,
			Inbound:   in,
			Mode:      m.mode,
			Hostname:  cfg.Hostname,
			TLSConfig: d.tls.TLSConfig(),
			Store:     d.filter,
			Directory: dir,
			Auth:      countingAuth{auth: d.authn.For(auth.ScopeSMTP), service: m.name, metrics: d.metrics},
			Limits: smtp.Limits{
				MaxMessageBytes: cfg.Limits.MaxMessageBytes,
				MaxRecipients:   cfg.Limits.MaxRecipients,
				MaxConnsPerIP:   cfg.Limits.MaxConnsPerIP,
				Timeout:         time.Duration(cfg.Limits.Timeout),
			},
			Logger:      log.With("component", m.name),
			SpoolDir:    spool,
			BaseContext: baseCtx,
		})
		if err != nil {
			return fmt.Errorf("set up %s: %w", m.name, err)
		}
		start(m.name, srv)
	}
	// 143 and 993 count their sessions together.
	imapLimits := imap.NewConnLimits(cfg.Limits.IMAPConnsPerIP, cfg.Limits.IMAPConnsPerUserIP)
	for _, m := range []struct {
		name     string
		implicit bool
	}{{"imap", false}, {"imaps", true}} {
		if byName[m.name].ln == nil {
			continue
		}
		start(m.name, imap.New(d.st, countingAuth{auth: d.authn.For(auth.ScopeIMAP), service: m.name, metrics: d.metrics}, imap.Options{
			TLSConfig:   d.tls.TLSConfig(),
			ImplicitTLS: m.implicit,
			Logger:      log.With("component", m.name),
			AppendLimit: appendLimit(cfg.Limits.MaxMessageBytes),
			ConnLimits:  imapLimits,
			Transferred: d.spam.transferred(),
		}))
	}
	d.web = web.New(cfg, web.Options{Metrics: d.metrics, Health: d.health, Logger: log.With("component", "web"), DAV: d.davHandler()})
	errLog := slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelDebug)
	if s := byName["https"]; s.ln != nil {
		start("https", &httpServer{srv: &http.Server{
			Handler:           d.web,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          errLog,
		}, tls: d.tls.HTTPSConfig()})
	}
	if s := byName["http"]; s.ln != nil {
		httpsPort := 443
		if a, ok := listeners["https"]; ok {
			if _, p, err := net.SplitHostPort(a); err == nil {
				httpsPort, _ = strconv.Atoi(p)
			}
		}
		start("http", &httpServer{srv: &http.Server{
			Handler:           d.tls.HTTPHandler(web.RedirectHandler(httpsPort)),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          errLog,
		}})
	}
	queueCtx, stopQueue := context.WithCancel(context.WithoutCancel(ctx))
	queueDone := make(chan struct{})
	go func() {
		defer close(queueDone)
		d.queue.Run(queueCtx)
	}()
	defer func() {
		stopQueue()
		<-queueDone
	}()

	// SIGHUP is caught before the control socket answers: once status
	// works, a reload signal cannot kill the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	control := serveControl(controlLn, d.status, func() QueueAdmin { return d.queue }, d.backup,
		func(mux *http.ServeMux) { handleDKIM(mux, d.dkimAction) },
		func(mux *http.ServeMux) { handleMailTransfer(mux, d.st, log.With("component", "export")) },
		d.addDAVControl)

	log.Info("mail server ready", "listeners", listeners, "control", cfg.Control, "tls_mode", cfg.TLS.Mode)
	// What start-up touched (package initialisation, the configuration
	// load) need not stay resident while the server idles.
	if n, err := procmem.ReleaseStartup(); err != nil {
		log.Debug("start-up memory not released", "err", err)
	} else {
		log.Debug("start-up memory released", "executable_pages_bytes", n)
	}
	trimCtx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go trimMemory(trimCtx, log, trimEvery, trimGrowth)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			break loop
		case err := <-serveErr:
			log.Error("a service stopped; shutting down", "err", err)
			runErr = err
			break loop
		case <-hup:
			d.reload(ctx)
		}
	}

	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.srv.Shutdown(sctx); err != nil {
				log.Warn("shutdown", "service", r.name, "err", err)
			}
		}()
	}
	wg.Wait()
	control.Shutdown(sctx)
	log.Info("servers stopped")
	return runErr
}

func appendLimit(max int64) uint32 {
	if max <= 0 || max > 1<<31 {
		return 0
	}
	return uint32(max)
}

// httpServer adapts http.Server to Serve(ln)/Shutdown(ctx), with TLS when
// tls is set.
type httpServer struct {
	srv *http.Server
	tls *tls.Config
}

func (h *httpServer) Serve(ln net.Listener) error {
	if h.tls != nil {
		ln = tls.NewListener(ln, h.tls)
	}
	return h.srv.Serve(ln)
}

func (h *httpServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// ensureUsers creates the store's mailboxes of every configured user and
// updates their quotas.
func (d *daemon) ensureUsers(ctx context.Context, cfg *config.Config) error {
	for _, u := range cfg.Users {
		if err := d.st.EnsureUser(ctx, strings.ToLower(u.Address), u.QuotaBytes); err != nil {
			return fmt.Errorf("create mailboxes of %s: %w", u.Address, err)
		}
	}
	return nil
}

func (d *daemon) health() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return errors.New("shutting down")
	}
	return nil
}

// reload applies the configuration file again (SIGHUP). A configuration
// that does not load keeps the old one. Users, aliases, quotas,
// certificates, MTA-STS and autoconfig data, and the log level change at
// once; listen addresses, the hostname, the data directory and limits need
// a restart (logged).
func (d *daemon) reload(ctx context.Context) {
	d.log.Info("reloading configuration", "config", d.opts.ConfigPath)
	state := &ReloadState{At: time.Now().UTC()}
	err := d.applyReload(ctx)
	if err != nil {
		state.Error = err.Error()
		var cerr *ConfigError
		if errors.As(err, &cerr) {
			d.log.Error("reload failed; keeping the previous configuration", "problems", cerr.Problems)
		} else {
			d.log.Error("reload failed; keeping the previous configuration", "err", err)
		}
	} else {
		state.OK = true
	}
	d.mu.Lock()
	d.lastReload = state
	d.mu.Unlock()
}

func (d *daemon) applyReload(ctx context.Context) error {
	d.dkimMu.Lock() // a rotation step must not interleave with the keys' reload
	defer d.dkimMu.Unlock()
	cfg, err := loadConfig(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	d.mu.Lock()
	boot := d.boot
	d.mu.Unlock()
	// Check and prepare everything before changing anything.
	if _, err := auth.NewDirectory(cfg.DomainNames(), cfg.AuthUsers(), cfg.AuthAliases()); err != nil {
		return fmt.Errorf("address directory: %w", err)
	}
	if _, err := auth.NewAuthenticator(cfg.AuthUsers(), auth.AuthenticatorOptions{Logger: d.log}); err != nil {
		return fmt.Errorf("users: %w", err)
	}
	keys, err := dkim.KeysFromConfig(cfg)
	if err != nil {
		return err
	}
	relay, err := queue.RelayFromConfig(cfg.Relay)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if err := d.tls.Reload(ctx, cfg); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if err := d.ensureUsers(ctx, cfg); err != nil {
		return err
	}
	if err := d.authn.Update(cfg.AuthUsers()); err != nil {
		return fmt.Errorf("users: %w", err)
	}
	if err := d.filter.SetUsers(sieveUsers(cfg)); err != nil {
		return err
	}
	if err := d.dir.Update(cfg.DomainNames(), cfg.AuthUsers(), cfg.AuthAliases()); err != nil {
		return fmt.Errorf("address directory: %w", err)
	}
	if err := d.dir.SetRecipientDelimiter(cfg.Delimiter()); err != nil {
		return fmt.Errorf("address directory: %w", err)
	}
	d.signer.SetKeys(keys)
	d.queue.SetRelay(relay)
	d.web.SetConfig(cfg)
	if d.opts.Level != nil {
		d.opts.Level.Set(parseLevel(cfg.LogLevel))
	}
	// What the running servers were built with and a reload cannot change.
	restart := config.RestartSettings(boot.RestartDigests(), cfg.RestartDigests())
	if len(restart) > 0 {
		d.log.Warn("configuration changes need a restart to apply", "settings", restart)
	}
	d.mu.Lock()
	d.cfg = cfg
	d.keys = keys
	d.restartNeeded = restart
	d.mu.Unlock()
	d.log.Info("configuration reloaded", "config_digest", cfg.Digest(), "users", len(cfg.Users))
	return nil
}

// status builds the control socket's answer.
func (d *daemon) status(ctx context.Context) (*Status, error) {
	d.mu.Lock()
	cfg, boot, last, restart, keys := d.cfg, d.boot, d.lastReload, d.restartNeeded, d.keys
	listeners := make(map[string]string, len(d.listeners))
	for k, v := range d.listeners {
		listeners[k] = v
	}
	d.mu.Unlock()
	st := &Status{
		FormatVersion:  StatusFormatVersion,
		Version:        d.opts.Version,
		ConfigDigest:   cfg.Digest(),
		ConfigPath:     d.opts.ConfigPath,
		Hostname:       cfg.Hostname,
		StartedAt:      d.started,
		LastReload:     last,
		RestartNeeded:  restart,
		RestartDigests: boot.RestartDigests(),
		Users:          []UserStatus{},
		DKIM:           []DKIMKey{},
		TLSMode:        d.tls.Mode(),
		Certificates:   []contract.CertInfo{},
		StoreBytes:     storeSize(d.st),
		Quarantine:     []contract.QuarantineEntry{},
		QueueMessages:  d.queue.Len(),
		Listeners:      listeners,
		Domains:        cfg.DomainNames(),
		MTASTS:         map[string]string{},
	}
	for _, c := range d.tls.Certificates() {
		st.Certificates = append(st.Certificates, contract.CertInfo{Names: c.Names, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Issuer: c.Issuer, SelfSigned: c.SelfSigned})
	}
	for _, q := range storeQuarantined(d.st) {
		st.Quarantine = append(st.Quarantine, contract.QuarantineEntry{Time: q.Time, User: q.User, Kind: q.Kind, Mailbox: q.Mailbox,
			MailboxID: q.MailboxID, UID: q.UID, Error: q.Error, File: q.File, BodyFile: q.BodyFile})
	}
	for _, k := range keys {
		pub := k.Record[strings.Index(k.Record, "p=")+2:]
		st.DKIM = append(st.DKIM, DKIMKey{Domain: k.Domain, Selector: k.Selector, Algorithm: string(k.Algorithm), PublicKey: pub, Record: k.Record,
			State: k.State, Created: k.Created, Retired: k.Retired})
	}
	for _, u := range cfg.Users {
		addr := strings.ToLower(u.Address)
		used, n, err := d.st.Usage(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("usage of %s: %w", addr, err)
		}
		us := UserStatus{Address: addr, QuotaBytes: u.QuotaBytes, UsedBytes: used, Messages: n,
			SieveDigest: config.SieveDigest(u.Sieve)}
		us.Password, us.AppPasswords = u.Credentials()
		st.Users = append(st.Users, us)
	}
	sort.Slice(st.Users, func(i, j int) bool { return st.Users[i].Address < st.Users[j].Address })
	st.Spam = d.spam.status()
	if err := d.opsStatus(ctx, st, cfg.DataDir); err != nil {
		return nil, err
	}

	for _, dm := range cfg.Domains {
		if dm.MTASTSMode != "" {
			_, id := web.MTASTSPolicy(cfg.Hostname, dm)
			st.MTASTS[dm.Name] = id
		}
	}
	return st, nil
}
