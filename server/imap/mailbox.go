package imap

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailctl/mailctl/server/store"
)

// sharedMailbox is the state of a mailbox shared by the sessions that have
// it selected: the library's MailboxTracker and the message list that
// matches its sequence numbers (the "server view"). Changes made by
// anybody (SMTP delivery, other sessions) reach it through sync, which
// reads the store and queues EXPUNGE, EXISTS and FETCH FLAGS updates for
// every session's SessionTracker.
type sharedMailbox struct {
	key     mailboxKey
	st      *store.Store
	tracker *imapserver.MailboxTracker
	refs    int // guarded by Server.mu
	done    chan struct{}
	wake    chan struct{}

	opMu sync.Mutex // serialises refreshes, and changes with their refresh

	mu     sync.Mutex // guards the fields below; held briefly
	mb     store.Mailbox
	msgs   []store.Message // UID order; len(msgs) is the tracker's count
	modseq uint64          // state of the store that msgs reflects
	// shape counts the EXPUNGE and EXISTS updates queued: a session
	// that has written all those up to its view.shape numbers messages
	// as the server view does (see view.clientSeqLocked).
	shape uint64
}

func newSharedMailbox(ctx context.Context, st *store.Store, key mailboxKey) (*sharedMailbox, error) {
	mb, msgs, err := st.MessagesByID(ctx, key.user, key.id)
	if err != nil {
		return nil, err
	}
	return &sharedMailbox{
		key:     key,
		st:      st,
		tracker: imapserver.NewMailboxTracker(uint32(len(msgs))),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		mb:      mb,
		msgs:    msgs,
		modseq:  mb.ModSeq,
	}, nil
}

// name returns the current name of the mailbox.
func (sm *sharedMailbox) name() string {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.mb.Name
}

func (sm *sharedMailbox) kick() {
	select {
	case sm.wake <- struct{}{}:
	default: // a sync is already due
	}
}

// watch syncs on every store change until the last session leaves.
func (sm *sharedMailbox) watch(ctx context.Context, logger *slog.Logger) {
	for {
		select {
		case <-sm.wake:
			if err := sm.sync(ctx, nil); err != nil && ctx.Err() == nil {
				logger.WarnContext(ctx, "imap: refresh mailbox", "user", sm.key.user, "err", err)
			}
		case <-sm.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// sync brings the server view up to date with the store.
func (sm *sharedMailbox) sync(ctx context.Context, source *imapserver.SessionTracker) error {
	sm.opMu.Lock()
	defer sm.opMu.Unlock()
	return sm.syncLocked(ctx, source)
}

// change runs fn, a change of the store made by the session whose tracker
// is source, and syncs before any other refresh can: the flag changes it
// makes are then not echoed to source, which answers itself.
func (sm *sharedMailbox) change(ctx context.Context, source *imapserver.SessionTracker, fn func() error) error {
	sm.opMu.Lock()
	defer sm.opMu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	return sm.syncLocked(ctx, source)
}

// syncLocked is sync with opMu held. Flag changes are not queued for
// source.
func (sm *sharedMailbox) syncLocked(ctx context.Context, source *imapserver.SessionTracker) error {
	// Every command syncs: first the mailbox record alone, which tells
	// whether anything changed, before reading every message.
	if cur, err := sm.st.MailboxByID(ctx, sm.key.user, sm.key.id); err == nil {
		sm.mu.Lock()
		same := cur.ModSeq <= sm.modseq && cur.Name == sm.mb.Name
		sm.mu.Unlock()
		if same {
			return nil
		}
	}
	mb, msgs, err := sm.st.MessagesByID(ctx, sm.key.user, sm.key.id)
	if errors.Is(err, store.ErrNoSuchMailbox) {
		// Deleted while selected: every message is gone.
		sm.mu.Lock()
		mb, msgs, err = sm.mb, nil, nil
		mb.ModSeq = sm.modseq + 1
		sm.mu.Unlock()
	}
	if err != nil {
		return err
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if mb.ModSeq <= sm.modseq {
		return nil // nothing new, or an older snapshot than ours
	}
	present := make(map[goimap.UID]int, len(msgs))
	for i, m := range msgs {
		present[goimap.UID(m.UID)] = i
	}
	// Expunges from the highest sequence number down, so that each one
	// is valid when queued.
	kept := make([]store.Message, 0, len(sm.msgs))
	for i := len(sm.msgs) - 1; i >= 0; i-- {
		if _, ok := present[goimap.UID(sm.msgs[i].UID)]; !ok {
			sm.tracker.QueueExpunge(uint32(i) + 1)
			sm.shape++
		}
	}
	for _, m := range sm.msgs {
		if j, ok := present[goimap.UID(m.UID)]; ok {
			kept = append(kept, msgs[j])
		}
	}
	for i, m := range kept {
		if m.ModSeq > sm.modseq {
			sm.tracker.QueueMessageFlags(uint32(i)+1, goimap.UID(m.UID), imapFlags(m.Flags), source)
		}
	}
	// One EXISTS per new message: the library's SessionTracker hides
	// only the last message of each pending EXISTS from a session.
	for n := len(kept) + 1; n <= len(msgs); n++ {
		sm.tracker.QueueNumMessages(uint32(n))
		sm.shape++
	}
	sm.mb, sm.msgs, sm.modseq = mb, msgs, mb.ModSeq
	return nil
}

func imapFlags(flags []string) []goimap.Flag {
	out := make([]goimap.Flag, len(flags))
	for i, f := range flags {
		out[i] = goimap.Flag(f)
	}
	return out
}

func storeFlags(flags []goimap.Flag) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = string(f)
	}
	return out
}

// view is a session's view of its selected mailbox.
type view struct {
	sm        *sharedMailbox
	tracker   *imapserver.SessionTracker
	readOnly  bool
	searchRes goimap.UIDSet
	shape     uint64 // sm.shape when the tracker last had no EXPUNGE or EXISTS pending; guarded by sm.mu
}

// clientSeqLocked returns the sequence number in the client's view of the
// message at seq in the server view (0: not yet announced). sm.mu must be
// held. The tracker's EncodeSeqNum walks the session's whole queue of
// pending updates, flag changes included, which other sessions fill with
// one entry per message they change: per message of a big mailbox, that
// is quadratic. When no EXPUNGE or EXISTS is pending for the session, the
// two views are the same.
func (v *view) clientSeqLocked(seq uint32) uint32 {
	if v.shape == v.sm.shape {
		if seq > uint32(len(v.sm.msgs)) {
			return 0
		}
		return seq
	}
	return v.tracker.EncodeSeqNum(seq)
}

// poll writes the session's pending updates (tracker.Poll), and records
// when that left no EXPUNGE or EXISTS pending.
func (v *view) poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	v.sm.mu.Lock()
	shape := v.sm.shape
	v.sm.mu.Unlock()
	if err := v.tracker.Poll(w, allowExpunge); err != nil {
		return err
	}
	if allowExpunge {
		// Everything queued up to shape has been written (perhaps more:
		// then the next poll catches up).
		v.sm.mu.Lock()
		v.shape = shape
		v.sm.mu.Unlock()
	}
	return nil
}

// item is a message of the server view with its sequence numbers.
type item struct {
	seq       uint32 // server view
	clientSeq uint32 // this session's view; 0 if not yet announced
	msg       store.Message
}

// resolve returns the messages in numSet (sequence numbers in the
// client's view, or UIDs), in sequence order. It holds sm.mu so that the
// sequence numbers match the tracker.
func (v *view) resolve(numSet goimap.NumSet) []item {
	v.sm.mu.Lock()
	defer v.sm.mu.Unlock()
	return v.resolveLocked(numSet)
}

func (v *view) resolveLocked(numSet goimap.NumSet) []item {
	numSet = v.staticNumSetLocked(numSet)
	// A set of one range (1:*, a chunk, a UID range) selects a run of
	// msgs: only that run is tested.
	msgs := v.sm.msgs
	lo, hi := 0, len(msgs)
	switch ns := numSet.(type) {
	case goimap.SeqSet:
		// Only when the client numbers the messages as msgs does.
		if len(ns) == 1 && v.shape == v.sm.shape {
			a, b := min(ns[0].Start, ns[0].Stop), max(ns[0].Start, ns[0].Stop)
			lo, hi = min(int(max(a, 1))-1, len(msgs)), min(int(b), len(msgs))
		}
	case goimap.UIDSet:
		if len(ns) == 1 {
			a, b := min(ns[0].Start, ns[0].Stop), max(ns[0].Start, ns[0].Stop)
			lo = sort.Search(len(msgs), func(i int) bool { return goimap.UID(msgs[i].UID) >= a })
			hi = sort.Search(len(msgs), func(i int) bool { return goimap.UID(msgs[i].UID) > b })
		}
	}
	out := make([]item, 0, max(hi-lo, 0))
	for i := lo; i < hi; i++ {
		m := msgs[i]
		seq := uint32(i) + 1
		cseq := v.clientSeqLocked(seq)
		var ok bool
		switch ns := numSet.(type) {
		case goimap.SeqSet:
			ok = cseq != 0 && ns.Contains(cseq)
		case goimap.UIDSet:
			ok = ns.Contains(goimap.UID(m.UID))
		}
		if ok {
			out = append(out, item{seq: seq, clientSeq: cseq, msg: m})
		}
	}
	return out
}

// staticNumSetLocked replaces "*" by the highest number and "$" by the
// saved search result (RFC 5182).
func (v *view) staticNumSetLocked(numSet goimap.NumSet) goimap.NumSet {
	if goimap.IsSearchRes(numSet) {
		return v.searchRes
	}
	switch ns := numSet.(type) {
	case goimap.SeqSet:
		out := make(goimap.SeqSet, len(ns))
		copy(out, ns)
		max := uint32(len(v.sm.msgs))
		for i := range out {
			staticRange(&out[i].Start, &out[i].Stop, max)
		}
		return out
	case goimap.UIDSet:
		out := make(goimap.UIDSet, len(ns))
		copy(out, ns)
		max := v.sm.mb.UIDNext - 1
		if n := len(v.sm.msgs); n > 0 {
			max = v.sm.msgs[n-1].UID
		}
		for i := range out {
			staticRange((*uint32)(&out[i].Start), (*uint32)(&out[i].Stop), max)
		}
		return out
	}
	return numSet
}

func staticRange(start, stop *uint32, max uint32) {
	dyn := false
	if *start == 0 {
		*start, dyn = max, true
	}
	if *stop == 0 {
		*stop, dyn = max, true
	}
	if dyn && *start > *stop {
		*start, *stop = *stop, *start
	}
}
