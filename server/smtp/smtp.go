// Package smtp is the bundled mail server's SMTP service, built on
// github.com/emersion/go-smtp: the MX on port 25 (RFC 5321, STARTTLS per
// RFC 3207, no AUTH, local recipients only), message submission on 587
// (RFC 6409, STARTTLS then AUTH per RFC 4954 with SASL PLAIN (RFC 4616) or
// LOGIN) and on 465 with implicit TLS (RFC 8314).
//
// Rules it enforces:
//   - it never relays for an unauthenticated client: a recipient outside the
//     local domains gets 554 5.7.1 whatever the MAIL FROM;
//   - recipients are parsed strictly (auth.ParseAddress): percent hacks, bang
//     paths, several "@", address literals, trailing dots are refused with
//     553 5.1.3; source routes (<@a:b@c>) are ignored as RFC 5321 section
//     3.6.1 allows, so only the final mailbox counts;
//   - SMTPUTF8 (RFC 6531) is offered: with it, addresses may hold UTF-8
//     local parts and U-label domains (kept as A-labels, local parts in
//     NFC; see eai.go); without it a non-ASCII address gets 553 5.6.7;
//   - unknown local recipients get 550 5.1.1 at RCPT;
//   - submission requires AUTH (530 5.7.0), offered only over TLS, and an
//     authenticated user may only use its own addresses and aliases as MAIL
//     FROM (553 5.7.1) and in the message's From header (550 5.7.1; exactly
//     one From header is required, else 550 5.6.0), since outbound mail is
//     DKIM-signed for the domain;
//   - the whole header is parsed as receivers and DKIM verifiers will: in
//     submission a line that is not a well-formed field (no colon, a blank
//     before the colon, a bare CR or a NUL) is refused with 550 5.6.0, so
//     is more than one From;
//   - the header section is bounded (limits.MaxHeaderBytes, 1 MiB, and
//     limits.MaxHeaderLines, 10 000 lines; 552 5.3.4), lines to
//     limits.MaxLineBytes (64 KiB; 500 5.4.0);
//   - what leaves the server (every authenticated submission, and mail to
//     an alias that forwards outside) may hold no bare CR or LF (550
//     5.6.0): refused rather than rewritten, so that what a next hop reads,
//     and what DKIM signs, is what the client sent;
//   - a line over 998 bytes (RFC 5322 section 2.1.1) in a message to a
//     remote recipient is refused in submission (550 5.6.0: the client can
//     encode it), and folded (CRLF and a space inserted, as Postfix does)
//     in the copy queued for an alias's forward, before it is DKIM-signed;
//   - size (SIZE in EHLO, 552 5.3.4 while reading), recipient count, per
//     command timeouts and connections per client IP are limited;
//   - 250 after DATA is sent only once every local delivery is durable in
//     the store (and remote recipients are handed to the outbound Queue).
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/internal/limits"
)

// Mode selects the role of a Server.
type Mode int

const (
	// ModeMX receives mail for local recipients (port 25): STARTTLS offered
	// when a TLS config is given, no AUTH, no relaying.
	ModeMX Mode = iota
	// ModeSubmission is message submission with STARTTLS (port 587); AUTH is
	// offered only after STARTTLS and is required before MAIL.
	ModeSubmission
	// ModeSubmissions is message submission over implicit TLS (port 465).
	ModeSubmissions
)

func (m Mode) String() string {
	switch m {
	case ModeMX:
		return "mx"
	case ModeSubmission:
		return "submission"
	case ModeSubmissions:
		return "submissions"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Deliverer stores a message durably in a user's mailbox; *store.Store
// implements it.
type Deliverer interface {
	Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error)
}

// QuotaReporter is optionally implemented by the Deliverer (*store.Store
// does) to refuse over-quota recipients at RCPT rather than after DATA.
type QuotaReporter interface {
	Usage(ctx context.Context, user string) (bytes int64, messages int, err error)
	Quota(ctx context.Context, user string) (int64, error)
}

// Directory resolves recipient addresses and sender rights; *auth.Directory
// implements it.
type Directory interface {
	Resolve(addr string) (auth.Resolution, error)
	// ResolvePostmaster answers for "<Postmaster>" without a domain.
	ResolvePostmaster(hostname string) (string, auth.Resolution, error)
	MaySendAs(user, addr string) bool
}

// Authenticator checks a user's password; *auth.Authenticator implements it
// (with per-IP failure throttling).
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote net.Addr) (user string, err error)
}

// Queue accepts messages for remote recipients and must store them durably
// before returning nil. The outbound queue (server/queue) implements it.
type Queue interface {
	Enqueue(ctx context.Context, from string, to []string, body io.Reader) error
}

// Envelope is what the MX knows of a transaction when it checks it.
type Envelope struct {
	RemoteIP net.IP
	Helo     string
	// From is the reverse path ("" for the null sender); Rcpts the
	// recipients accepted so far.
	From  string
	Rcpts []string
	TLS   bool
}

// Verdict is the outcome of the checks of a received message.
type Verdict struct {
	// Header holds fields to prepend (each ending in CRLF), such as
	// Authentication-Results (RFC 8601).
	Header string
	// Remove lists byte ranges [start, end) of the message to leave out
	// (header fields forged with this server's authserv-id), ascending and
	// not overlapping.
	Remove [][2]int64
	// Junk delivers to the recipients' Junk mailbox instead of INBOX.
	Junk bool
}

// Inbound checks mail arriving on the MX (server/inbound implements it:
// DNSBL, greylisting, SPF, DKIM, DMARC). An error that is an
// *gosmtp.SMTPError is the reply; any other error gives 451 4.3.0.
type Inbound interface {
	// CheckClient is called at the first MAIL of a session.
	CheckClient(ctx context.Context, env Envelope) error
	// CheckRecipient is called for each recipient accepted by the
	// directory, before it is added to the transaction.
	CheckRecipient(ctx context.Context, env Envelope, rcpt string) error
	// CheckMessage is called with the whole message (as received) before
	// delivery.
	CheckMessage(ctx context.Context, env Envelope, msg io.ReaderAt, size int64) (Verdict, error)
}

// Limits bound what clients may do; zero values take the defaults.
type Limits struct {
	// MaxMessageBytes is advertised as SIZE and enforced while reading DATA.
	// Default 50 MiB.
	MaxMessageBytes int64
	// MaxRecipients per transaction. Default 100.
	MaxRecipients int
	// MaxConnsPerIP is the number of simultaneous connections from one
	// client IP address. Default 20.
	MaxConnsPerIP int
	// Timeout bounds the reading of each command line (from the end of the
	// previous reply to the line's CRLF: idle and slow clients alike), each
	// write, and the wait for each read of a DATA body. A read that times
	// out ends the connection (421 4.4.2); a partial line is not acted on.
	// Default 5 minutes (RFC 5321 section 4.5.3.2.7).
	Timeout time.Duration
	// DataTimeout bounds a whole DATA or BDAT body, unless it arrived at
	// MinDataRate bytes per second on average or faster. Default 10
	// minutes (RFC 5321 section 4.5.3.2.6's wait for the final dot).
	DataTimeout time.Duration
	// MinDataRate is the average rate in bytes per second that lets a
	// large body take longer than DataTimeout. Default 4096: a 50 MiB
	// message may take up to 3.6 hours, a client sending a byte a second
	// is dropped after DataTimeout.
	MinDataRate int64
}

// Options configure a Server.
type Options struct {
	// Mode is the server's role.
	Mode Mode
	// Hostname is the name in the banner, EHLO reply and Received headers. Required.
	Hostname string
	// TLSConfig is required for ModeSubmission and ModeSubmissions; for
	// ModeMX, nil means STARTTLS is not offered.
	TLSConfig *tls.Config
	// Store receives local deliveries (into INBOX). Required.
	Store Deliverer
	// Directory resolves addresses. Required.
	Directory Directory
	// Auth checks passwords. Required for the submission modes.
	Auth Authenticator
	// Queue takes remote recipients of authenticated submissions and of
	// aliases that forward outside. Nil: such recipients are refused at
	// RCPT with 451 4.3.2 "outbound delivery not configured".
	Queue Queue
	// Inbound checks mail in ModeMX; nil: no checks.
	Inbound Inbound
	Limits  Limits
	// Logger defaults to slog.Default(). Message bodies and passwords are never logged.
	Logger *slog.Logger
	// SpoolDir holds messages larger than 1 MiB during a transaction
	// (unlinked at once, so nothing is left behind). Default os.TempDir().
	SpoolDir string
	// BaseContext is the parent of the contexts of deliveries and
	// authentications. Default context.Background().
	BaseContext context.Context
}

// Server is one SMTP service (one mode) on any number of listeners.
type Server struct {
	opts   Options
	log    *slog.Logger
	srv    *gosmtp.Server
	limits *connLimiter

	mu        sync.Mutex
	closing   bool
	sessions  map[*session]struct{}
	listeners []net.Listener
}

// New checks opts, applies defaults and returns a Server ready to Serve.
func New(opts Options) (*Server, error) {
	if opts.Hostname == "" {
		return nil, errors.New("smtp: Options.Hostname is required")
	}
	if opts.Store == nil || opts.Directory == nil {
		return nil, errors.New("smtp: Options.Store and Options.Directory are required")
	}
	if opts.Mode != ModeMX {
		if opts.TLSConfig == nil {
			return nil, fmt.Errorf("smtp: %s needs Options.TLSConfig", opts.Mode)
		}
		if opts.Auth == nil {
			return nil, fmt.Errorf("smtp: %s needs Options.Auth", opts.Mode)
		}
	}
	if opts.Mode < ModeMX || opts.Mode > ModeSubmissions {
		return nil, fmt.Errorf("smtp: unknown mode %d", opts.Mode)
	}
	l := &opts.Limits
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = 50 << 20
	}
	if l.MaxRecipients <= 0 {
		l.MaxRecipients = 100
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = 20
	}
	if l.Timeout <= 0 {
		l.Timeout = 5 * time.Minute
	}
	if l.DataTimeout <= 0 {
		l.DataTimeout = 10 * time.Minute
	}
	if l.MinDataRate <= 0 {
		l.MinDataRate = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.TempDir()
	}
	if opts.BaseContext == nil {
		opts.BaseContext = context.Background()
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("service", "smtp", "mode", opts.Mode.String()),
		sessions: map[*session]struct{}{},
	}
	s.limits = newConnLimiter(l.MaxConnsPerIP)
	srv := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	srv.Domain = opts.Hostname
	srv.TLSConfig = opts.TLSConfig
	srv.MaxMessageBytes = l.MaxMessageBytes
	srv.MaxRecipients = l.MaxRecipients
	srv.MaxLineLength = limits.MaxLineBytes
	srv.ReadTimeout = l.Timeout
	srv.WriteTimeout = l.Timeout
	srv.AllowInsecureAuth = false
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogPrinter{s.log}
	s.srv = srv
	return s, nil
}

// Serve accepts connections on ln (plain TCP; in ModeSubmissions the
// server wraps it in TLS itself) until Shutdown. It returns nil after
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	// Register ln first: a Shutdown that comes before go-smtp knows of the
	// listener must still close it.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	ll := &limitListener{Listener: ln, limiter: s.limits, log: s.log, hostname: s.opts.Hostname}
	var l net.Listener = ll
	if s.opts.Mode == ModeSubmissions {
		ll.silent = true // a plain-text 421 would mean nothing to a TLS client
		l = tls.NewListener(ll, s.opts.TLSConfig)
	}
	s.log.Info("smtp listening", "addr", ln.Addr().String())
	if err := s.srv.Serve(l); err != nil {
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing && (errors.Is(err, net.ErrClosed) || errors.Is(err, gosmtp.ErrServerClosed)) {
			return nil
		}
		return fmt.Errorf("serve smtp %s on %s: %w", s.opts.Mode, ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections, closes idle ones, lets messages
// being received finish (their DATA and deliveries), and returns once every
// connection is gone or ctx is done (then the rest are closed).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case err := <-done:
			if ctx.Err() != nil {
				s.srv.Close()
				return fmt.Errorf("shut down smtp %s: %w", s.opts.Mode, ctx.Err())
			}
			if err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("shut down smtp %s: %w", s.opts.Mode, err)
			}
			return nil
		case <-tick.C:
		}
	}
}

func (s *Server) closeIdle() {
	s.mu.Lock()
	busy := make(map[string]bool, len(s.sessions))
	for se := range s.sessions {
		if se.busy.Load() {
			busy[se.remote.String()] = true
		}
	}
	s.mu.Unlock()
	s.limits.closeExcept(busy)
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.log.Debug(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.log.Debug(fmt.Sprint(v...)) }

// LimitsFromConfig converts the server configuration's limits (zero values
// still mean "default").
func LimitsFromConfig(l config.Limits) Limits {
	return Limits{
		MaxMessageBytes: l.MaxMessageBytes,
		MaxRecipients:   l.MaxRecipients,
		MaxConnsPerIP:   l.MaxConnsPerIP,
		Timeout:         time.Duration(l.Timeout),
	}
}
