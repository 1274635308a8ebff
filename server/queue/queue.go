// Package queue is the bundled mail server's persistent outbound queue: it
// accepts messages for remote recipients, DKIM-signs them (RFC 6376) as they
// enter, and delivers them by SMTP (RFC 5321) to the destination's MX hosts
// (section 5.1, with the A/AAAA fallback and RFC 7505 null MX), with
// opportunistic STARTTLS (RFC 3207, RFC 7435) and MTA-STS enforcement
// (RFC 8461), or through a smarthost with AUTH PLAIN (RFC 4954, RFC 4616)
// over TLS only. Failures are retried with exponential back-off for up to
// five days; permanent failures, expiry and long delays are reported to the
// sender with delivery status notifications (RFC 3461, RFC 3462/6522
// multipart/report, RFC 3464 message/delivery-status, RFC 3463 codes).
//
// Layout under the queue directory:
//
//	index.db      bbolt index: one record per message and destination domain
//	msg/<blob>    message bodies, one file per accepted message, fsynced
//
// Enqueue returns nil only once the message is durable, in the same order as
// server/store: body to a temporary file, fsync, rename, fsync of the
// directory, then the index commit. Delivery goes the other way: as soon as
// the remote server accepts a message, the index commit that marks its
// recipients done is made (and synced) before the body file is removed, so a
// message acknowledged by Enqueue is never lost, and after a crash a message
// is sent again only if the crash fell between the remote server's reply
// and that commit. Open removes body files that no record references.
//
// A new IP address gets a warm-up ramp (Options.Warmup): a daily cap of
// direct deliveries that starts at 50 and doubles every week until it is
// lifted; the overflow waits for the next day or goes through the relay.
//
// bbolt locks its file: only one process may open a queue at a time, so
// admin commands (List, Retry, Remove) must go through the running daemon.
//
// With Options.Postgres the queue lives in PostgreSQL instead, shared by
// several nodes that claim due messages with leases, so that a message
// is sent by one node and taken over by another when its node dies (see
// pg.go for the leases and the at-least-once window). The storage is
// behind the small backend interface (backend.go): the scheduler,
// delivery and outcome logic are the same for both.
package queue

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("queue: no such message")
	ErrClosed   = errors.New("queue: closed")
)

// Clock tells the time; tests move it forward.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Signer returns the DKIM-Signature header fields for a message, or "" when
// it has no key for it; *dkim.Signer implements it.
type Signer interface {
	Sign(r io.Reader) (string, error)
}

// LocalDeliverer delivers a message to a local recipient (DSNs to local
// senders, and any message for a local domain). A returned error whose SMTP
// code is 5xx (an *smtp.SMTPError, or any error with a Code() int of 5xx...
// see Permanent) fails the recipient for good; others are retried.
type LocalDeliverer func(ctx context.Context, from, rcpt string, body io.Reader) error

// PermanentError marks an error from a LocalDeliverer as permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Relay is a smarthost.
type Relay struct {
	// Address is "host:port"; port 465 means implicit TLS, any other
	// STARTTLS, which is then required.
	Address string
	// Username and Password for AUTH PLAIN, sent only over TLS; empty
	// Username: no AUTH.
	Username, Password string
	// Domains restricts the relay to these destination domains; MXHosts to
	// destinations whose MX host matches one of these patterns ("mx.example.com"
	// or "*.example.com"). Both empty: every message goes through the relay.
	Domains []string
	MXHosts []string
	// TLSConfig verifies the relay's certificate (RootCAs); its ServerName
	// defaults to the host of Address. Nil: the system roots.
	TLSConfig *tls.Config
}

func (r *Relay) all() bool { return len(r.Domains) == 0 && len(r.MXHosts) == 0 }

func (r *Relay) forDomain(domain string) bool {
	for _, d := range r.Domains {
		if strings.EqualFold(strings.TrimSuffix(d, "."), domain) {
			return true
		}
	}
	return false
}

func (r *Relay) forMX(host string) bool {
	for _, p := range r.MXHosts {
		if matchHost(p, host) {
			return true
		}
	}
	return false
}

// Warmup is the IP warm-up ramp.
type Warmup struct {
	// Weeks until the cap is lifted; 0 disables the ramp. The cap is 50
	// direct deliveries a day in the first week, doubling each week.
	Weeks int
	// Start of the ramp; zero: the first direct delivery (remembered).
	Start time.Time
	// OverflowRelay sends what exceeds the cap through the relay (when
	// there is one) instead of deferring it to the next day.
	OverflowRelay bool
}

// Options configure a Queue; zero values take the documented defaults.
type Options struct {
	// Dir holds the queue (created 0700). Required unless Postgres is set.
	Dir string
	// Postgres, when set, keeps the queue in that PostgreSQL database
	// (schema of server/pgstore, migrated beforehand) instead of Dir,
	// shared by every node that opens it (see pg.go). Node names this node
	// in the leases it takes (default: the machine's host name); LeaseTime
	// is how long a claimed message stays this node's without a renewal
	// (default 2 minutes; renewed every third of it while it is sent).
	Postgres  *pgxpool.Pool
	Node      string
	LeaseTime time.Duration
	// Hostname is the EHLO name and the Reporting-MTA of DSNs. Required.
	Hostname string
	// Resolver looks up MX, A/AAAA and MTA-STS TXT records. Required.
	Resolver Resolver
	// Port is the destination SMTP port (default 25; tests use another).
	Port int
	// Signer DKIM-signs messages as they are enqueued; nil: no signing.
	Signer Signer
	// IsLocal reports whether a domain is served here; its messages (such
	// as DSNs to local senders) go to Deliver instead of SMTP.
	IsLocal func(domain string) bool
	Deliver LocalDeliverer
	// Relay is the optional smarthost.
	Relay *Relay
	// Workers is the number of deliveries in progress at once (default 16);
	// MaxPerDestination bounds those to one destination domain (default 4).
	Workers           int
	MaxPerDestination int
	// MaxAge is how long a message is retried (default 5 days); the sender
	// is told of the delay once after DelayNotice (default 4h; negative:
	// never).
	MaxAge      time.Duration
	DelayNotice time.Duration
	// RetryBase is the first retry delay (default 5m), doubled after each
	// attempt up to RetryMax (default 4h).
	RetryBase, RetryMax time.Duration
	// PreferIPv4 tries IPv4 addresses of an MX before IPv6 ones (the
	// default is IPv6 first, like Postfix's smtp_address_preference=ipv6).
	PreferIPv4 bool
	// SourceIPv4 and SourceIPv6 bind outgoing connections of each family
	// (Postfix's smtp_bind_address/smtp_bind_address6); nil: any. When a
	// source address of a family is unusable, that family is skipped.
	SourceIPv4, SourceIPv6 net.IP
	// TLSConfig is the base client TLS configuration (RootCAs) for MX hosts
	// whose MTA-STS policy requires verification. Opportunistic STARTTLS
	// does not verify certificates (RFC 7435).
	TLSConfig *tls.Config
	// HTTPClient fetches MTA-STS policies (default: 60s timeout, no
	// redirects, as RFC 8461 section 3.3 requires). DisableMTASTS skips
	// MTA-STS altogether.
	HTTPClient    *http.Client
	DisableMTASTS bool
	Warmup        Warmup
	// DialTimeout per connection (default 30s); CommandTimeout per SMTP
	// command (default 5m).
	DialTimeout, CommandTimeout time.Duration
	// PollInterval is how often the scheduler looks for due messages even
	// when nothing woke it (default 30s).
	PollInterval time.Duration
	Clock        Clock
	Logger       *slog.Logger
}

// Message is one queued message for the recipients of one domain.
type Message struct {
	ID     string `json:"id"`
	Blob   string `json:"blob"`
	From   string `json:"from"`
	Domain string `json:"domain"`
	// Rcpts and their state.
	Rcpts []Recipient `json:"rcpts"`
	// DKIM holds the DKIM-Signature fields prepended at delivery.
	DKIM      string    `json:"dkim,omitempty"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
	Next      time.Time `json:"next"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	// DelayNotified is set once the sender got a delay notice.
	DelayNotified bool `json:"delay_notified,omitempty"`
	// IsDSN marks a delivery status notification (never bounced itself).
	IsDSN bool `json:"is_dsn,omitempty"`
	// SMTPUTF8 marks a message that needs SMTPUTF8 (RFC 6531) from the next
	// hop: it is never downgraded (see eai.go).
	SMTPUTF8 bool `json:"smtputf8,omitempty"`
}

// Recipient states.
const (
	StatePending   = ""
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// Recipient is one recipient of a Message.
type Recipient struct {
	Addr  string `json:"addr"`
	State string `json:"state,omitempty"`
	// Status is the RFC 3463 code of the last reply (e.g. "5.1.1");
	// Diagnostic the reply text; RemoteMTA the host that gave it.
	Status     string `json:"status,omitempty"`
	Diagnostic string `json:"diagnostic,omitempty"`
	RemoteMTA  string `json:"remote_mta,omitempty"`
}

func (m *Message) pending() []string {
	var out []string
	for _, r := range m.Rcpts {
		if r.State == StatePending {
			out = append(out, r.Addr)
		}
	}
	return out
}

// Queue is an open outbound queue. Its methods are safe for concurrent use.
type Queue struct {
	opts Options
	log  *slog.Logger
	be   backend
	pg   *pgBackend // the shared backend, nil for the embedded one
	sts  *stsCache

	mu       sync.Mutex
	entries  map[string]*entry // id -> schedule
	inflight map[string]bool
	perDest  map[string]int
	active   int
	closed   bool

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	hook   func(step string) error // tests: crash points

	relayMu sync.RWMutex
	relay   *Relay

	conns connCache
}

type entry struct {
	domain string
	next   time.Time
}

// Open opens (creating if needed) the queue in opts.Dir, removing
// unreferenced body files, or the shared queue in opts.Postgres.
// Deliveries start with Run.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if (opts.Dir == "" && opts.Postgres == nil) || opts.Hostname == "" || opts.Resolver == nil {
		return nil, errors.New("queue: Options.Dir (or Postgres), Hostname and Resolver are required")
	}
	setDefaults(&opts)
	q := &Queue{
		opts:     opts,
		log:      opts.Logger.With("service", "queue"),
		entries:  map[string]*entry{},
		inflight: map[string]bool{},
		perDest:  map[string]int{},
		kick:     make(chan struct{}, 1),
	}
	q.sts = newSTSCache(opts.HTTPClient, opts.Resolver, opts.Clock)
	q.relay = opts.Relay
	if opts.Postgres != nil {
		pg, err := openPG(ctx, opts.Postgres, opts.Node, opts.LeaseTime, q.log)
		if err != nil {
			return nil, err
		}
		q.be, q.pg = pg, pg
		return q, nil
	}
	b, entries, err := openBolt(ctx, opts.Dir, q.log, q.step)
	if err != nil {
		return nil, err
	}
	q.be, q.entries = b, entries
	return q, nil
}

func setDefaults(o *Options) {
	if o.Port == 0 {
		o.Port = 25
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.MaxPerDestination <= 0 {
		o.MaxPerDestination = 4
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 5 * 24 * time.Hour
	}
	if o.DelayNotice == 0 {
		o.DelayNotice = 4 * time.Hour
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 5 * time.Minute
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 4 * time.Hour
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LeaseTime <= 0 {
		o.LeaseTime = 2 * time.Minute
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
		if o.Node == "" {
			o.Node = o.Hostname
		}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{
			Timeout:       60 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (q *Queue) step(name string) error {
	if q.hook != nil {
		return q.hook(name)
	}
	return nil
}

// Enqueue stores a message for the recipients to (grouped by domain) and
// returns nil only once it is durable. It is DKIM-signed here when a Signer
// is set. from is the envelope sender ("" for a bounce).
func (q *Queue) Enqueue(ctx context.Context, from string, to []string, body io.Reader) error {
	return q.enqueue(ctx, from, to, body, false)
}

func (q *Queue) enqueue(ctx context.Context, from string, to []string, body io.Reader, smtputf8 bool) error {
	if len(to) == 0 {
		return errors.New("queue: no recipients")
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return ErrClosed
	}
	blob, size, sig, err := q.be.writeBody(ctx, body, q.opts.Signer)
	if err != nil {
		return err
	}
	msgs := q.split(blob, from, to, sig, size, false)
	for _, m := range msgs {
		m.SMTPUTF8 = smtputf8
	}
	if err := q.be.insert(ctx, msgs, blob); err != nil {
		q.be.dropBody(blob)
		return err
	}
	q.schedule(msgs...)
	q.log.Info("message queued", "blob", blob, "from", from, "recipients", len(to), "domains", len(msgs), "size", size, "signed", sig != "", "smtputf8", smtputf8)
	q.Kick()
	return nil
}

// split groups recipients by domain into new records sharing blob.
func (q *Queue) split(blob, from string, to []string, sig string, size int64, isDSN bool) []*Message {
	now := q.opts.Clock.Now()
	byDomain := map[string]*Message{}
	var order []string
	for _, rcpt := range to {
		d := strings.ToLower(domainOf(rcpt))
		m := byDomain[d]
		if m == nil {
			m = &Message{ID: newID(), Blob: blob, From: from, Domain: d, DKIM: sig, Size: size,
				Created: now, Next: now, IsDSN: isDSN}
			byDomain[d] = m
			order = append(order, d)
		}
		m.Rcpts = append(m.Rcpts, Recipient{Addr: rcpt})
	}
	out := make([]*Message, 0, len(order))
	for _, d := range order {
		out = append(out, byDomain[d])
	}
	return out
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// schedule adds (or reschedules) records in the embedded backend's
// schedule; the shared backend's schedule is the database.
func (q *Queue) schedule(msgs ...*Message) {
	if q.pg != nil {
		return
	}
	q.mu.Lock()
	for _, m := range msgs {
		if e := q.entries[m.ID]; e != nil {
			e.next = m.Next
		} else {
			q.entries[m.ID] = &entry{domain: m.Domain, next: m.Next}
		}
	}
	q.mu.Unlock()
}

// unschedule removes a record from the embedded backend's schedule.
func (q *Queue) unschedule(id string) {
	q.mu.Lock()
	delete(q.entries, id)
	q.mu.Unlock()
}

// SetRelay replaces the smarthost (nil: none), for a configuration reload.
// Deliveries in progress keep the one they started with.
func (q *Queue) SetRelay(r *Relay) {
	q.relayMu.Lock()
	q.relay = r
	q.relayMu.Unlock()
}

func (q *Queue) currentRelay() *Relay {
	q.relayMu.RLock()
	defer q.relayMu.RUnlock()
	return q.relay
}

// Kick wakes the scheduler (after Enqueue, Retry, or a test clock change).
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Run delivers due messages until ctx is done or Close; it returns once
// the deliveries in progress are over.
func (q *Queue) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		cancel()
		return
	}
	q.cancel = cancel
	q.mu.Unlock()
	defer q.wg.Wait()
	if q.pg != nil {
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			q.pg.listen(ctx, q.Kick)
		}()
	}
	for {
		wait := q.dispatch(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-q.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// dispatch starts the deliveries that are due and allowed, and returns how
// long to wait before looking again.
func (q *Queue) dispatch(ctx context.Context) time.Duration {
	if q.pg != nil {
		return q.dispatchClaims(ctx)
	}
	now := q.opts.Clock.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	type due struct {
		id string
		e  *entry
	}
	var list []due
	wait := q.opts.PollInterval
	for id, e := range q.entries {
		if q.inflight[id] {
			continue
		}
		if e.next.After(now) {
			if d := e.next.Sub(now); d < wait {
				wait = d
			}
			continue
		}
		list = append(list, due{id, e})
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].e.next.Equal(list[j].e.next) {
			return list[i].e.next.Before(list[j].e.next)
		}
		return list[i].id < list[j].id
	})
	for _, d := range list {
		if q.active >= q.opts.Workers {
			break
		}
		if q.perDest[d.e.domain] >= q.opts.MaxPerDestination {
			continue
		}
		q.active++
		q.perDest[d.e.domain]++
		q.inflight[d.id] = true
		q.wg.Add(1)
		go func(id, domain string) {
			defer q.wg.Done()
			q.attempt(ctx, id, nil)
			q.mu.Lock()
			q.active--
			q.perDest[domain]--
			if q.perDest[domain] == 0 {
				delete(q.perDest, domain)
			}
			delete(q.inflight, id)
			q.mu.Unlock()
			q.Kick()
		}(d.id, d.e.domain)
	}
	if wait < time.Millisecond {
		wait = time.Millisecond
	}
	return wait
}

// Close stops the scheduler, waits for deliveries in progress and closes
// the index.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	cancel := q.cancel
	q.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	q.wg.Wait()
	q.conns.closeAll()
	return q.be.close()
}

// List returns the queued messages, oldest first.
func (q *Queue) List(ctx context.Context) ([]Message, error) {
	out, err := q.be.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	return out, nil
}

// Len returns the number of queued records (of every node, for the shared
// queue; -1 when the database cannot be read).
func (q *Queue) Len() int {
	if q.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := q.pg.count(ctx)
		if err != nil {
			q.log.Error("count queued messages", "err", err)
			return -1
		}
		return n
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// Retry makes a message (or every message, for id "") due now.
func (q *Queue) Retry(ctx context.Context, id string) error {
	now := q.opts.Clock.Now()
	ids, err := q.be.retry(ctx, id, now)
	if err != nil {
		return fmt.Errorf("retry %q: %w", id, err)
	}
	if q.pg == nil {
		q.mu.Lock()
		for _, i := range ids {
			if e := q.entries[i]; e != nil {
				e.next = now
			}
		}
		q.mu.Unlock()
	}
	q.Kick()
	return nil
}

// Remove deletes a message from the queue without notifying its sender.
// A delivery in progress is not interrupted.
func (q *Queue) Remove(ctx context.Context, id string) error {
	if err := q.be.remove(ctx, id); err != nil {
		return fmt.Errorf("remove %q: %w", id, err)
	}
	q.unschedule(id)
	q.log.Info("message removed", "id", id)
	return nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
