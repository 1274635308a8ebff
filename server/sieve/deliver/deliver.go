// Package deliver runs each user's Sieve script at local delivery and
// carries out its actions: it stands in front of the store as the one
// place both local delivery paths (SMTP sessions and the queue's local
// deliverer) store messages through.
//
// The SMTP envelope reaches it through the context (WithEnvelope), so that
// the store interface both paths already use stays the same.
package deliver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/sieve"
	"github.com/mailctl/mailctl/server/store"
)

// Envelope is the SMTP envelope of a delivery.
type Envelope struct {
	From string // reverse path, "" for the null sender
	Rcpt string // the recipient as given at RCPT; "" means the user's address
	// CanReject is set when a script's reject can be an SMTP 5xx reply
	// (one local recipient, nothing relayed): Deliver then returns a
	// *RejectError. Otherwise a rejection notice is mailed to the sender.
	CanReject bool
}

type envKey struct{}

// WithEnvelope returns ctx carrying the envelope for Filter.Deliver.
func WithEnvelope(ctx context.Context, e Envelope) context.Context {
	return context.WithValue(ctx, envKey{}, e)
}

func envelopeOf(ctx context.Context) Envelope {
	e, _ := ctx.Value(envKey{}).(Envelope)
	return e
}

// RejectError is returned by Deliver when the user's script rejected the
// message and the envelope allows a rejection at SMTP time.
type RejectError struct{ Reason string }

func (e *RejectError) Error() string { return "rejected by the recipient's Sieve script: " + e.Reason }

// Mailboxes is the store the filter delivers into.
type Mailboxes interface {
	Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error)
}

// Enqueuer sends mail out (the outbound queue, which DKIM-signs it).
type Enqueuer interface {
	Enqueue(ctx context.Context, from string, to []string, body io.Reader) error
}

// Options configure a Filter.
type Options struct {
	Next Mailboxes
	// CreateMailbox creates a mailbox for fileinto :create.
	CreateMailbox func(ctx context.Context, user, name string) error
	Hostname      string
	// DataDir holds vacation.db, the durable record of vacation replies.
	DataDir string
	Logger  *slog.Logger
	Now     func() time.Time
	// Delimiters returns the server's recipient delimiters (the
	// characters before a subaddress detail; "" for none), read at each
	// delivery so that a reload applies; nil means "+".
	Delimiters func() string
}

// User is a user's script and the addresses that are theirs.
type User struct {
	Address string
	Aliases []string
	Sieve   string
}

type userScript struct {
	script *sieve.Script
	own    []string
}

// Filter delivers through the users' scripts.
type Filter struct {
	opts    Options
	log     *slog.Logger
	db      *bolt.DB
	scripts atomic.Pointer[map[string]userScript]
	mu      sync.Mutex
	queue   Enqueuer
}

// New opens the vacation record in opts.DataDir.
func New(opts Options) (*Filter, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("sieve: create %s: %w", opts.DataDir, err)
	}
	p := filepath.Join(opts.DataDir, "vacation.db")
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("sieve: open %s: %w", p, err)
	}
	f := &Filter{opts: opts, log: opts.Logger, db: db}
	f.scripts.Store(&map[string]userScript{})
	return f, nil
}

// runOptions are the options of a script run now.
func (f *Filter) runOptions() sieve.RunOptions {
	o := sieve.RunOptions{Now: f.opts.Now(), SubaddressSep: "+"}
	if f.opts.Delimiters != nil {
		o.SubaddressSep = f.opts.Delimiters()
		o.NoSubaddress = o.SubaddressSep == ""
	}
	return o
}

// Close closes the vacation record.
func (f *Filter) Close() error { return f.db.Close() }

// SetQueue sets where redirects, vacation replies and rejection notices
// go; until it is set they are logged and dropped... so the daemon sets
// it before serving.
func (f *Filter) SetQueue(q Enqueuer) {
	f.mu.Lock()
	f.queue = q
	f.mu.Unlock()
}

// SetUsers compiles the users' scripts and makes them the ones Deliver
// runs (a configuration reload). On an error nothing changes.
func (f *Filter) SetUsers(users []User) error {
	m := make(map[string]userScript, len(users))
	for _, u := range users {
		if strings.TrimSpace(u.Sieve) == "" {
			continue
		}
		addr := strings.ToLower(u.Address)
		s, err := sieve.Compile(addr, u.Sieve)
		if err != nil {
			return fmt.Errorf("sieve script of %s: %w", addr, err)
		}
		m[addr] = userScript{script: s, own: append([]string{addr}, u.Aliases...)}
	}
	f.scripts.Store(&m)
	return nil
}

func (f *Filter) enqueue(ctx context.Context, from string, to []string, msg []byte) error {
	f.mu.Lock()
	q := f.queue
	f.mu.Unlock()
	if q == nil {
		return errors.New("no outbound queue")
	}
	return q.Enqueue(ctx, from, to, bytes.NewReader(msg))
}

// Deliver stores a message for user, through the user's script when there
// is one: mailbox is where the (implicit) keep files it. It returns once
// every delivery the script asked for is durable; the uid is that of the
// first message stored (0 when none was).
func (f *Filter) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error) {
	us, ok := (*f.scripts.Load())[strings.ToLower(user)]
	if !ok {
		return f.opts.Next.Deliver(ctx, user, mailbox, body, flags, date)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return 0, fmt.Errorf("sieve: read message for %s: %w", user, err)
	}
	env := envelopeOf(ctx)
	rcpt := env.Rcpt
	if rcpt == "" {
		rcpt = user
	}
	log := f.log.With("user", user)
	msg := sieve.ParseMessage(data)
	res, err := us.script.Run(ctx, msg, sieve.Envelope{From: env.From, To: rcpt}, f.runOptions())
	if err != nil {
		// RFC 5228 2.10.6: a failing script keeps the message.
		log.Warn("sieve script failed: message kept", "err", err)
		return f.opts.Next.Deliver(ctx, user, mailbox, bytes.NewReader(data), flags, date)
	}
	for _, a := range res.Actions {
		if r, ok := a.(sieve.Reject); ok {
			return 0, f.reject(ctx, log, env, user, msg, r)
		}
	}
	var uid uint32
	store1 := func(box string, fl []string, create bool) error {
		u, err := f.opts.Next.Deliver(ctx, user, box, bytes.NewReader(data), union(flags, fl), date)
		if errors.Is(err, store.ErrNoSuchMailbox) && create && f.opts.CreateMailbox != nil {
			if cerr := f.opts.CreateMailbox(ctx, user, box); cerr != nil && !errors.Is(cerr, store.ErrMailboxExists) {
				log.Warn("sieve fileinto :create failed", "mailbox", box, "err", cerr)
			} else {
				u, err = f.opts.Next.Deliver(ctx, user, box, bytes.NewReader(data), union(flags, fl), date)
			}
		}
		if errors.Is(err, store.ErrNoSuchMailbox) && box != mailbox {
			// RFC 5228 4.1: filing into a missing mailbox fails; the
			// message is kept instead of lost.
			log.Warn("sieve fileinto: no such mailbox, message kept", "mailbox", box)
			u, err = f.opts.Next.Deliver(ctx, user, mailbox, bytes.NewReader(data), union(flags, fl), date)
		}
		if errors.Is(err, store.ErrNoSuchMailbox) && mailbox != "INBOX" {
			// The keep target (Junk) is missing too: INBOX, here, rather
			// than the caller's retry running the script a second time.
			u, err = f.opts.Next.Deliver(ctx, user, "INBOX", bytes.NewReader(data), union(flags, fl), date)
		}
		if err != nil {
			return err
		}
		if uid == 0 {
			uid = u
		}
		return nil
	}
	// effect: an action took effect (a copy stored, a redirect queued).
	// Until then a failure is temporary and the sender's retry is safe;
	// after it, a retry would run the script again and repeat what was
	// done, so a failing action keeps the message instead (RFC 5228
	// 2.10.6) and the failure is logged.
	effect := false
	for _, a := range res.Actions {
		var what string
		switch a := a.(type) {
		case sieve.Keep:
			what, err = "keep", store1(mailbox, a.Flags, false)
		case sieve.FileInto:
			what, err = "fileinto "+a.Mailbox, store1(a.Mailbox, a.Flags, a.Create)
		case sieve.Redirect:
			what, err = "redirect to "+a.Address, f.redirect(ctx, log, env, user, msg, data, a.Address)
		case sieve.Discard:
			log.Info("sieve: message discarded")
			continue
		default:
			continue
		}
		if err == nil {
			effect = true
			continue
		}
		if !effect {
			return uid, err
		}
		log.Error("sieve action failed after others took effect: message kept in INBOX, no retry asked", "action", what, "err", err)
		if kerr := store1("INBOX", nil, false); kerr != nil {
			log.Error("sieve: keeping the message after a failed action failed too", "err", kerr)
		}
	}
	for _, a := range res.Actions {
		if v, ok := a.(sieve.Vacation); ok {
			f.vacation(ctx, log, env, user, us.own, msg, v)
		}
	}
	return uid, nil
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, f := range b {
		dup := false
		for _, g := range out {
			if strings.EqualFold(f, g) {
				dup = true
			}
		}
		if !dup {
			out = append(out, f)
		}
	}
	return out
}

// redirect sends the message on unchanged, with a Delivered-To field that
// stops a loop (a message that already went through this user's redirect
// is kept instead).
func (f *Filter) redirect(ctx context.Context, log *slog.Logger, env Envelope, user string, msg *sieve.Message, data []byte, to string) error {
	for _, d := range msg.Header("delivered-to") {
		if strings.EqualFold(strings.TrimSpace(d), user) {
			log.Warn("sieve redirect loop: message kept", "to", to)
			_, err := f.opts.Next.Deliver(ctx, user, "INBOX", bytes.NewReader(data), nil, f.opts.Now())
			return err
		}
	}
	out := append([]byte("Delivered-To: "+user+"\r\n"), data...)
	if err := f.enqueue(ctx, env.From, []string{to}, out); err != nil {
		return fmt.Errorf("sieve redirect to %s: %w", to, err)
	}
	log.Info("sieve: message redirected", "to", to)
	return nil
}

func (f *Filter) reject(ctx context.Context, log *slog.Logger, env Envelope, user string, msg *sieve.Message, r sieve.Reject) error {
	reason := strings.TrimSpace(r.Reason)
	if env.CanReject {
		log.Info("sieve: message rejected at SMTP time")
		return &RejectError{Reason: oneLine(reason)}
	}
	if env.From == "" {
		log.Info("sieve: message rejected (null sender: no notice)")
		return nil
	}
	subject := ""
	if s := msg.Header("subject"); len(s) > 0 {
		subject = s[0]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", f.opts.Hostname)
	fmt.Fprintf(&b, "To: %s\r\n", env.From)
	fmt.Fprintf(&b, "Subject: Rejected: %s\r\n", oneLine(subject))
	fmt.Fprintf(&b, "Date: %s\r\n", f.opts.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", newID(), f.opts.Hostname)
	b.WriteString("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "Your message to %s was rejected by the recipient's filter:\r\n\r\n%s\r\n",
		user, strings.ReplaceAll(strings.ReplaceAll(reason, "\r\n", "\n"), "\n", "\r\n"))
	if err := f.enqueue(ctx, "", []string{env.From}, b.Bytes()); err != nil {
		return fmt.Errorf("sieve reject notice to %s: %w", env.From, err)
	}
	log.Info("sieve: message rejected, notice sent", "to", env.From)
	return nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

var bucketVacation = []byte("vacation")

// vacation sends the reply when RFC 3834 allows it and none went to this
// sender within the period; a failure is logged, never fails delivery.
func (f *Filter) vacation(ctx context.Context, log *slog.Logger, env Envelope, user string, own []string, msg *sieve.Message, v sieve.Vacation) {
	if ok, why := sieve.AutoReplyAllowed(msg, env.From, own, v); !ok {
		log.Info("sieve vacation: no reply", "reason", why)
		return
	}
	if v.From != "" && !ownAddress(own, v.From) {
		// The reply is DKIM-signed for the domain: it may only be from
		// one of the user's own addresses, like submitted mail.
		log.Warn("sieve vacation: :from is not the user's address, replying from it instead", "from", v.From)
		v.From = ""
	}
	now := f.opts.Now()
	key := []byte(strings.ToLower(user) + "\x00" + v.Key(env.From))
	var due bool
	err := f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketVacation)
		if err != nil {
			return err
		}
		if last := b.Get(key); len(last) == 8 {
			t := time.Unix(int64(binary.BigEndian.Uint64(last)), 0)
			if now.Before(t.Add(time.Duration(v.Days) * 24 * time.Hour)) {
				return nil
			}
		}
		due = true
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(now.Unix()))
		return b.Put(key, buf[:])
	})
	if err != nil {
		log.Error("sieve vacation: record", "err", err)
		return
	}
	if !due {
		log.Info("sieve vacation: already replied to this sender within the period", "days", v.Days)
		return
	}
	reply := v.Compose(msg, user, env.From, "<"+newID()+"@"+f.opts.Hostname+">", now)
	// RFC 3834 3.3: the reply goes out with the null reverse path.
	if err := f.enqueue(ctx, "", []string{env.From}, reply); err != nil {
		log.Error("sieve vacation: send", "err", err)
		return
	}
	log.Info("sieve vacation: reply sent", "to", env.From)
}

func ownAddress(own []string, from string) bool {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return false
	}
	for _, o := range own {
		if strings.EqualFold(o, a.Address) {
			return true
		}
	}
	return false
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
