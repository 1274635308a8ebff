// Package imap is mailctl's IMAP server: IMAP4rev1 (RFC 3501) and
// IMAP4rev2 (RFC 9051) on top of server/store, built on go-imap v2's
// imapserver. It offers IDLE (RFC 2177), UIDPLUS (RFC 4315), MOVE
// (RFC 6851), SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), NAMESPACE
// (RFC 2342), LIST-EXTENDED and LIST-STATUS (RFC 5258, RFC 5819), ESEARCH
// and SEARCHRES (RFC 4731, RFC 5182), STATUS=SIZE (RFC 8438), LITERAL+
// (RFC 7888), APPENDLIMIT (RFC 7889), ID (RFC 2971) and QUOTA with the
// STORAGE resource (RFC 9208). APPEND beyond the user's quota fails with
// the OVERQUOTA response code.
//
// Passwords are accepted only over TLS: port 993 with implicit TLS
// (RFC 8314) or port 143 after STARTTLS, which announces LOGINDISABLED
// until then; clients on a loopback address (127.0.0.0/8, ::1) may log in
// without TLS, as Dovecot allows, since nothing crosses a network.
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailctl/mailctl/server/store"
)

// Authenticator checks a user's password. It returns the canonical user name
// (the store's user) on success. Rate limiting per remote address is its
// business.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote net.Addr) (user string, err error)
}

// Options configure a Server.
type Options struct {
	// TLSConfig is required: STARTTLS (and LOGIN) are offered only with it.
	TLSConfig *tls.Config
	// ImplicitTLS makes Serve wrap every connection in TLS (port 993);
	// otherwise clients start with plaintext and STARTTLS (port 143).
	ImplicitTLS bool
	// Logger receives connection and login events; nil discards them.
	Logger *slog.Logger
	// AppendLimit is the largest message APPEND accepts, in bytes.
	// Default 50 MiB.
	AppendLimit uint32
	// ConnLimits caps sessions per client address and per user and
	// address; share one between the servers of every IMAP port. nil: no
	// caps.
	ConnLimits *ConnLimits
	// Transferred, when set, is called after each COPY or MOVE that
	// copied messages, with the UIDs of the copies in dst (the spam
	// filter learns from moves into and out of Junk). It must not block.
	Transferred func(user, src, dst string, dstUIDs []uint32)
}

// Server serves IMAP on the listeners given to Serve.
type Server struct {
	st     store.Backend
	auth   Authenticator
	opts   Options
	logger *slog.Logger
	lib    *imapserver.Server

	ctx     context.Context
	cancel  context.CancelFunc
	unwatch func()

	mu        sync.Mutex
	mailboxes map[mailboxKey]*sharedMailbox
	idle      idleCache // snapshots of the mailboxes no session has selected (mailbox.go)

	// scans holds a token per search reading messages (SEARCH BODY,
	// TEXT) that runs: GOMAXPROCS-1 (at least 1) at a time, so that a
	// processor stays free for every other command. Go's scheduler looks
	// for network input only when a processor idles, or every 10 ms:
	// with every processor in a scan, a short command (SEARCH UNSEEN, a
	// LOGIN) waited for up to 10 ms before it even started.
	scans chan struct{}
}

// scanChunk is how many messages a scan tests between two takes of its
// slot: about a millisecond, after which the other scans waiting go first.
const scanChunk = 128

// scanSlot is a scan's hold on one of Server.scans.
type scanSlot struct {
	scans chan struct{}
	held  bool
}

// acquire waits for a slot, first in first served.
func (sl *scanSlot) acquire(ctx context.Context) error {
	select {
	case sl.scans <- struct{}{}:
		sl.held = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (sl *scanSlot) release() {
	if sl.held {
		sl.held = false
		<-sl.scans
	}
}

// New returns a server for st. Create one per listening port (one with
// ImplicitTLS for 993, one without for 143); they can share st.
func New(st store.Backend, auth Authenticator, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AppendLimit == 0 {
		opts.AppendLimit = 50 << 20
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		st: st, auth: auth, opts: opts, logger: opts.Logger,
		ctx: ctx, cancel: cancel,
		mailboxes: map[mailboxKey]*sharedMailbox{},
		scans:     make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
	}
	s.lib = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps: goimap.CapSet{
			goimap.CapIMAP4rev1:        {},
			goimap.CapIMAP4rev2:        {},
			goimap.CapNamespace:        {},
			goimap.CapUIDPlus:          {},
			goimap.CapESearch:          {},
			goimap.CapSearchRes:        {},
			goimap.CapListExtended:     {},
			goimap.CapListStatus:       {},
			goimap.CapMove:             {},
			goimap.CapStatusSize:       {},
			goimap.CapSpecialUse:       {},
			goimap.CapCreateSpecialUse: {},
			goimap.CapLiteralPlus:      {},
			goimap.CapAppendLimit:      {},
		},
		Logger: libLogger{opts.Logger},
		// conn terminates TLS itself; sessions refuse passwords without it.
		InsecureAuth: true,
	})
	s.unwatch = st.Watch(s.onChange)
	// ENVELOPEs are made once, at delivery (envelope.go).
	st.SetHeaderSummary(summarizeHeader)
	// SEARCH BODY and TEXT on a backend that matches them (searchtext.go).
	if ts, ok := st.(store.TextSearcher); ok {
		ts.SetSearchText(searchText)
	}
	return s
}

// Serve accepts connections on ln (plain TCP) until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("imap: serve: Options.TLSConfig is required")
	}
	err := s.lib.Serve(&listener{Listener: ln, s: s})
	if err != nil && !errors.Is(err, net.ErrClosed) && s.ctx.Err() == nil {
		return fmt.Errorf("imap: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown closes the listeners and every connection. IMAP has no
// graceful hand-over: clients reconnect; nothing acknowledged is lost
// because every change is committed before its response.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	s.unwatch()
	s.mu.Lock()
	s.idle.dropAllLocked()
	s.mu.Unlock()
	err := s.lib.Close()
	if err != nil && err.Error() == "imapserver: server closed" {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("imap: shutdown: %w", err)
	}
	return ctx.Err()
}

type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := newConn(c, l.s.opts.TLSConfig, l.s.opts.ImplicitTLS, l.s.logger)
	cc.appendLimit = int64(l.s.opts.AppendLimit)
	return cc, nil
}

// libLogger sends the library's messages (protocol and I/O errors) to slog.
type libLogger struct{ l *slog.Logger }

func (l libLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	level := slog.LevelWarn
	// Clients that go away mid-command are routine.
	if strings.HasPrefix(format, "failed to read command") || strings.HasPrefix(format, "failed to write greeting") {
		level = slog.LevelDebug
	}
	l.l.Log(context.Background(), level, "imap: "+msg)
}

// mailboxKey identifies a mailbox across renames.
type mailboxKey struct {
	user string
	id   uint64
}

// onChange is called by the store after each committed change: it wakes
// the sessions that have the mailbox selected. It must not block.
func (s *Server) onChange(c store.Change) {
	s.mu.Lock()
	sm := s.mailboxes[mailboxKey{c.User, c.MailboxID}]
	if sm == nil {
		s.idle.changedLocked(mailboxKey{c.User, c.MailboxID})
	}
	s.mu.Unlock()
	if sm != nil {
		sm.kick()
	}
}

// acquire returns the shared state of a mailbox, creating it (and its
// watcher goroutine) on first use. release must be called once done.
func (s *Server) acquire(ctx context.Context, user string, mb store.Mailbox) (*sharedMailbox, error) {
	key := mailboxKey{user, mb.ID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sm := s.mailboxes[key]; sm != nil {
		sm.refs++
		return sm, nil
	}
	sm := s.takeIdleLocked(ctx, key, mb)
	if sm == nil {
		var err error
		if sm, err = newSharedMailbox(ctx, s.st, key); err != nil {
			return nil, err
		}
	}
	sm.refs = 1
	s.mailboxes[key] = sm
	go sm.watch(s.ctx, s.logger, sm.done)
	return sm, nil
}

// numRecent counts the messages of mb (msgs) that are \Recent: those no
// session has claimed yet, and those claimed by sessions that still have
// the mailbox selected (RFC 3501 STATUS RECENT).
func (s *Server) numRecent(user string, mb store.Mailbox, msgs []store.Message) int {
	s.mu.Lock()
	sm := s.mailboxes[mailboxKey{user, mb.ID}]
	s.mu.Unlock()
	var claimed []uidRange
	if sm != nil {
		sm.mu.Lock()
		for v := range sm.views {
			claimed = append(claimed, v.recent...)
		}
		mb.RecentUID = max(mb.RecentUID, sm.mb.RecentUID)
		sm.mu.Unlock()
	}
	n := 0
	for _, m := range msgs {
		if m.UID >= mb.RecentUID {
			n++
			continue
		}
		for _, r := range claimed {
			if m.UID >= r.lo && m.UID < r.hi {
				n++
				break
			}
		}
	}
	return n
}

func (s *Server) release(sm *sharedMailbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sm.refs--
	if sm.refs == 0 {
		delete(s.mailboxes, sm.key)
		close(sm.done)
		// The \Recent claims are kept (see view.claimRecent); s.mu
		// held, so that a session selecting the mailbox next sees them.
		sm.mu.Lock()
		dirty, upTo := sm.recentDirty, sm.mb.RecentUID
		sm.mu.Unlock()
		var err error
		if dirty {
			_, err = s.st.ClaimRecent(context.WithoutCancel(s.ctx), sm.key.user, sm.key.id, upTo)
			if err != nil && s.ctx.Err() == nil && !errors.Is(err, store.ErrNoSuchMailbox) {
				s.logger.WarnContext(s.ctx, "imap: keep \\Recent claims", "user", sm.key.user, "err", err)
			}
		}
		if err == nil && s.ctx.Err() == nil {
			s.keepIdleLocked(sm)
		}
	}
}
