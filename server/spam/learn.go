package spam

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mailctl/mailctl/server/store"
)

// Store is what a Learner reads; *store.Store implements it.
type Store interface {
	Mailbox(ctx context.Context, user, name string) (store.Mailbox, error)
	Messages(ctx context.Context, user, mailbox string) (store.Mailbox, []store.Message, error)
	OpenBody(ctx context.Context, m store.Message) (store.Body, error)
}

// learnQueue is how many transfers may wait for the Learner; more are
// dropped (and logged): learning is an improvement, never a duty.
const learnQueue = 256

type transfer struct {
	user, src, dst string
	uids           []uint32
}

// Learner teaches rspamd from the messages users move into and out of
// Junk, one message at a time in the background.
type Learner struct {
	client *Client
	st     Store
	log    *slog.Logger

	jobs   chan transfer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	learned, failures atomic.Int64
}

// NewLearner starts a Learner; Close stops it.
func NewLearner(client *Client, st Store, logger *slog.Logger) *Learner {
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Learner{client: client, st: st, log: logger.With("service", "rspamd-learn"),
		jobs: make(chan transfer, learnQueue), ctx: ctx, cancel: cancel}
	l.wg.Add(1)
	go l.run()
	return l
}

// Transferred is called after an IMAP COPY or MOVE of user's messages from
// src to dst, with their UIDs in dst. It does not block.
func (l *Learner) Transferred(user, src, dst string, dstUIDs []uint32) {
	if len(dstUIDs) == 0 || src == dst {
		return
	}
	select {
	case l.jobs <- transfer{user: user, src: src, dst: dst, uids: sorted(dstUIDs)}:
	default:
		l.failures.Add(int64(len(dstUIDs)))
		l.log.Warn("learning queue full, transfer not learned", "user", user, "messages", len(dstUIDs))
	}
}

// Counts returns the messages learned and the failures since start.
func (l *Learner) Counts() (learned, failures int64) {
	return l.learned.Load(), l.failures.Load()
}

// Close stops the Learner: what is queued is dropped, a call in progress
// is cancelled.
func (l *Learner) Close() {
	l.once.Do(func() {
		l.cancel()
		close(l.jobs)
	})
	l.wg.Wait()
}

func (l *Learner) run() {
	defer l.wg.Done()
	for t := range l.jobs {
		if l.ctx.Err() != nil {
			continue
		}
		l.learn(l.ctx, t)
	}
}

// learn posts the messages of t as spam (into Junk), as ham (out of Junk,
// unless into Trash: deleting is no verdict), or not at all.
func (l *Learner) learn(ctx context.Context, t transfer) {
	srcUse, dstUse := l.specialUse(ctx, t.user, t.src), l.specialUse(ctx, t.user, t.dst)
	var spam bool
	switch {
	case dstUse == store.SpecialJunk && srcUse != store.SpecialJunk:
		spam = true
	case srcUse == store.SpecialJunk && dstUse != store.SpecialJunk && dstUse != store.SpecialTrash:
		spam = false
	default:
		return
	}
	_, msgs, err := l.st.Messages(ctx, t.user, t.dst)
	if err != nil {
		l.failures.Add(int64(len(t.uids)))
		l.log.Warn("learning: list messages", "user", t.user, "mailbox", t.dst, "err", err)
		return
	}
	class := "ham"
	if spam {
		class = "spam"
	}
	for _, m := range msgs {
		if _, ok := slices.BinarySearch(t.uids, m.UID); !ok {
			continue
		}
		err := l.learnOne(ctx, spam, m)
		switch {
		case err == nil:
			l.learned.Add(1)
			l.log.Info("learned", "class", class, "user", t.user, "mailbox", t.dst, "uid", m.UID)
		case errors.Is(err, ErrAlreadyLearned):
			l.log.Debug("already learned", "class", class, "user", t.user, "mailbox", t.dst, "uid", m.UID)
		default:
			l.failures.Add(1)
			l.log.Warn("learning failed", "class", class, "user", t.user, "mailbox", t.dst, "uid", m.UID, "err", err)
		}
	}
}

func (l *Learner) learnOne(ctx context.Context, spam bool, m store.Message) error {
	body, err := l.st.OpenBody(ctx, m)
	if err != nil {
		return err
	}
	defer body.Close()
	return l.client.Learn(ctx, spam, body, m.Size)
}

// specialUse is mailbox's special use, "Junk" counting as \Junk whatever
// its attribute (the MX delivers spam there).
func (l *Learner) specialUse(ctx context.Context, user, name string) string {
	if name == "Junk" {
		return store.SpecialJunk
	}
	mb, err := l.st.Mailbox(ctx, user, name)
	if err != nil {
		return ""
	}
	return mb.SpecialUse
}

func sorted(uids []uint32) []uint32 {
	s := slices.Clone(uids)
	slices.Sort(s)
	return s
}
