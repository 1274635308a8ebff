package imap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailctl/mailctl/server/store"
)

// Sessions and the store
//
// A sharedMailbox holds the latest snapshot of a mailbox read from the
// store (msgs, in UID order, never changed in place: a newer snapshot
// replaces the slice). Each session's view holds the snapshot its client
// knows (view.msgs): its sequence numbers are that slice's indexes. At
// every command boundary (Poll, and Idle on every store change) the
// session reads the store if it changed (sync), then tells its client the
// difference between the two: EXPUNGE for the messages gone, EXISTS for the
// new ones, FETCH FLAGS for those whose ModSeq is above the last snapshot
// the client was brought up to date with, FLAGS for new keywords. Updates
// are computed from the newest state, never queued, so they cannot reach a
// client out of order or stale; and a change committed by another session
// before this session's command started is seen by that command, since
// sync reads the store then.
//
// The library's MailboxTracker and SessionTracker queue one update per
// change for every session and hand them out later; they could not tell a
// session's own changes from the others' made meanwhile, and their queue
// delivered an older FETCH FLAGS after the answer to the session's own
// STORE. Hence this diff against the store instead.
type sharedMailbox struct {
	key  mailboxKey
	st   store.Backend
	refs int           // guarded by Server.mu
	done chan struct{} // guarded by Server.mu; closed when refs drops to 0
	wake chan struct{}

	opMu sync.Mutex // serialises reads of the store by sync
	// syncs counts the calls of sync; syncedUpTo (guarded by opMu) is
	// the count when the last read of the store that succeeded began:
	// every call counted up to it is answered by that read.
	syncs      atomic.Uint64
	syncedUpTo uint64
	// own counts the flag writes of this node's sessions under way
	// (beginOwn, endOwn); while there is one, watch leaves the changes it
	// is told of for endOwn (deferred), so that a session's own write,
	// announced by the change feed before SetFlags has returned, is not
	// read back from the store (applyOwn has it).
	own      atomic.Int32
	deferred atomic.Bool

	mu     sync.Mutex // guards the fields below; held briefly
	mb     store.Mailbox
	msgs   []store.Message // UID order; replaced, never changed in place
	modseq uint64          // state of the store that msgs reflects
	gen    uint64          // incremented with every new msgs
	// flags is every flag and keyword used in the mailbox since the first
	// session selected it, sorted; it only grows. flagGen counts its
	// changes.
	flags   []goimap.Flag
	flagSet map[string]bool // lower-case
	flagGen uint64
	views   map[*view]struct{}
	// recentDirty: mb.RecentUID moved since the store last had it.
	recentDirty bool
}

func newSharedMailbox(ctx context.Context, st store.Backend, key mailboxKey) (*sharedMailbox, error) {
	mb, msgs, err := st.MessagesByID(ctx, key.user, key.id)
	if err != nil {
		return nil, err
	}
	sm := &sharedMailbox{
		key:    key,
		st:     st,
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		mb:     mb,
		msgs:   msgs,
		modseq: mb.ModSeq,
		gen:    1,
		views:  map[*view]struct{}{},
	}
	sm.resetFlagsLocked()
	return sm, nil
}

// resetFlagsLocked makes the list of flags again: the system flags and
// those of the messages of the snapshot. sm.mu is held, or sm not shared.
func (sm *sharedMailbox) resetFlagsLocked() {
	sm.flags, sm.flagSet = nil, map[string]bool{}
	for _, f := range []string{store.FlagSeen, store.FlagAnswered, store.FlagFlagged, store.FlagDeleted, store.FlagDraft} {
		sm.addFlagLocked(f)
	}
	for _, m := range sm.msgs {
		for _, f := range m.Flags {
			sm.addFlagLocked(f)
		}
	}
}

func (sm *sharedMailbox) addFlagLocked(f string) {
	k := strings.ToLower(f)
	if sm.flagSet[k] {
		return
	}
	sm.flagSet[k] = true
	// A new slice: sessions read the old one without the lock.
	flags := append(slices.Clone(sm.flags), goimap.Flag(f))
	slices.Sort(flags)
	sm.flags = flags
	sm.flagGen++
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

// watch syncs on every store change until the last session leaves
// (done, the sm.done of when it started: a snapshot kept idle and taken
// up again gets a new one), which wakes the sessions in IDLE.
func (sm *sharedMailbox) watch(ctx context.Context, logger *slog.Logger, done <-chan struct{}) {
	for {
		select {
		case <-sm.wake:
			if sm.own.Load() > 0 {
				sm.deferred.Store(true)
				if sm.own.Load() > 0 {
					continue // endOwn kicks again
				}
			}
			if err := sm.sync(ctx); err != nil && ctx.Err() == nil {
				logger.WarnContext(ctx, "imap: refresh mailbox", "user", sm.key.user, "err", err)
			}
		case <-done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// sync brings the snapshot up to date with the store, and wakes the
// sessions in IDLE when it changed.
func (sm *sharedMailbox) sync(ctx context.Context) error {
	return sm.syncWith(ctx, nil)
}

// syncWith is sync given the mailbox's record (cur, when not nil) as read
// from the store after the command began (SELECT reads it to find the
// mailbox): when it shows no change, the store is not asked again.
//
// Without cur, a sync that waited for another one which began reading
// the store after this one was called is answered by it: that read saw
// every change committed before this call (4 sessions that start a
// command at once make 2 reads, not 4 one after the other).
func (sm *sharedMailbox) syncWith(ctx context.Context, cur *store.Mailbox) error {
	ticket := sm.syncs.Add(1)
	sm.opMu.Lock()
	defer sm.opMu.Unlock()
	if cur != nil {
		return sm.syncOpLocked(ctx, cur, true)
	}
	if sm.syncedUpTo >= ticket {
		return nil
	}
	begin := sm.syncs.Load()
	if err := sm.syncOpLocked(ctx, nil, true); err != nil {
		return err
	}
	sm.syncedUpTo = begin
	return nil
}

// syncOpLocked is syncWith with sm.opMu held. A mailbox gone is one
// emptied when selected is true (sessions have it), else an error.
func (sm *sharedMailbox) syncOpLocked(ctx context.Context, cur *store.Mailbox, selected bool) error {
	// The mailbox record alone tells whether anything changed, before
	// reading every message.
	if cur == nil {
		if mb, err := sm.st.MailboxByID(ctx, sm.key.user, sm.key.id); err == nil {
			cur = &mb
		}
	}
	if cur != nil {
		sm.mu.Lock()
		same := cur.ModSeq <= sm.modseq && cur.Name == sm.mb.Name
		sm.mu.Unlock()
		if same {
			return nil
		}
	}
	sm.mu.Lock()
	old, since := sm.msgs, sm.modseq
	sm.mu.Unlock()
	mb, msgs, changed, err := sm.read(ctx, old, since)
	if selected && errors.Is(err, store.ErrNoSuchMailbox) {
		// Deleted while selected: every message is gone.
		sm.mu.Lock()
		mb, msgs, changed, err = sm.mb, nil, nil, nil
		mb.ModSeq = sm.modseq + 1
		sm.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("read mailbox %d: %w", sm.key.id, err)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if mb.ModSeq <= sm.modseq && mb.Name == sm.mb.Name {
		return nil // nothing new, or an older snapshot than ours
	}
	for _, m := range changed {
		if m.ModSeq > sm.modseq {
			for _, f := range m.Flags {
				sm.addFlagLocked(f)
			}
		}
	}
	mb.RecentUID = max(mb.RecentUID, sm.mb.RecentUID)
	sm.mb, sm.msgs, sm.modseq = mb, msgs, mb.ModSeq
	sm.gen++
	sm.wakeViewsLocked()
	return nil
}

// wakeViewsLocked wakes the sessions waiting in IDLE for a new snapshot.
func (sm *sharedMailbox) wakeViewsLocked() {
	for v := range sm.views {
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

// beginOwn and endOwn surround a session's flag write: while one is
// under way, watch leaves the changes it is told of for endOwn, so that
// the change feed's announcement of the session's own write, which can
// arrive before the write's answer, is not read back from the store.
// endOwn applies the write (before and after as
// store.FlagWriteReporter tells them; 0 and 0 when unknown or after an
// error) with applyOwn, then lets watch sync what it was told of
// meanwhile. It reports whether the snapshot is then the store's state
// after the write or a later one (current): the write applied, or a
// write that changed nothing on a snapshot at before.
func (sm *sharedMailbox) beginOwn() { sm.own.Add(1) }

func (sm *sharedMailbox) endOwn(updated []store.Message, before, after uint64) (current bool) {
	switch {
	case after > before:
		current = sm.applyOwn(updated, before, after)
	case before != 0:
		sm.mu.Lock()
		current = sm.modseq >= before && sm.mb.ModSeq == sm.modseq
		sm.mu.Unlock()
	}
	sm.doneOwn()
	return current
}

// doneOwn ends a flag write begun by beginOwn and lets watch sync what it
// was told of meanwhile.
func (sm *sharedMailbox) doneOwn() {
	if sm.own.Add(-1) == 0 && sm.deferred.Swap(false) {
		sm.kick()
	}
}

// applyOwn brings the snapshot up to date with a session's own flag
// write without reading the store: when the snapshot is at before, the
// mailbox's HIGHESTMODSEQ when the write took it, no other write came
// between them, and the snapshot with the flags and MODSEQ (after) of
// the messages the write changed is the store's state after it.
// Otherwise it does nothing and the next sync reads the changes. Only
// sm.mu is taken: a sync reading the store meanwhile drops its answer
// when it is not newer (syncOpLocked), and a newer one includes the
// write. It reports whether the snapshot includes the write: applied
// now, or read from the store after it.
func (sm *sharedMailbox) applyOwn(updated []store.Message, before, after uint64) bool {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.modseq >= after && sm.mb.ModSeq == sm.modseq {
		return true
	}
	if sm.modseq != before || sm.mb.ModSeq != before {
		return false
	}
	msgs := slices.Clone(sm.msgs)
	for i := range updated {
		u := &updated[i]
		if u.ModSeq != after {
			continue // unchanged by this write
		}
		k, ok := indexOfUID(msgs, u.UID)
		if !ok {
			return false // not in the snapshot: let a sync read it
		}
		msgs[k].Flags, msgs[k].ModSeq = u.Flags, u.ModSeq
	}
	sm.addFlagsOfLocked(updated, after)
	sm.msgs, sm.modseq, sm.mb.ModSeq = msgs, after, after
	sm.gen++
	sm.wakeViewsLocked()
	return true
}

// endOwnCounted is endOwn for a write that the store told as the number
// of messages it changed (store.FlagWriteCounter): with the snapshot at
// before, it works out which messages changed and how with the store's
// rules (store.ApplyFlags), checks that they are n, applies them, and
// returns the messages of uids as the write left them; with a snapshot
// read after the write, those of the snapshot. ok is false otherwise
// (another write came between, or the count differs: the caller syncs).
func (sm *sharedMailbox) endOwnCounted(uids []uint32, op store.FlagOp, flags []string, n int, before, after uint64) (updated []store.Message, ok bool) {
	updated, ok = sm.applyCounted(uids, op, flags, n, before, after)
	sm.doneOwn()
	return updated, ok
}

func (sm *sharedMailbox) applyCounted(uids []uint32, op store.FlagOp, flags []string, n int, before, after uint64) ([]store.Message, bool) {
	if before == 0 {
		return nil, false // not told
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.modseq >= after && sm.modseq > before && sm.mb.ModSeq == sm.modseq {
		return messagesOfLocked(sm.msgs, uids), true
	}
	if sm.modseq != before || sm.mb.ModSeq != before {
		return nil, false
	}
	var msgs []store.Message // the new snapshot, made when a message changes
	updated := make([]store.Message, 0, len(uids))
	// The messages of a STORE mostly have the same few sets of flags.
	type result struct{ cur, next []string }
	var memo []result
	apply := func(cur []string) []string {
		for _, r := range memo {
			if slices.Equal(r.cur, cur) {
				return r.next
			}
		}
		next := store.ApplyFlags(cur, op, flags)
		if sameFlagSet(next, cur) {
			next = cur
		}
		if len(memo) < 16 {
			memo = append(memo, result{cur, next})
		}
		return next
	}
	changed := 0
	for _, uid := range sortedUIDs(uids) {
		k, found := indexOfUID(sm.msgs, uid)
		if !found {
			continue
		}
		m := sm.msgs[k]
		if next := apply(m.Flags); !slices.Equal(next, m.Flags) {
			changed++
			if msgs == nil {
				msgs = slices.Clone(sm.msgs)
			}
			m.Flags, m.ModSeq = next, after
			msgs[k] = m
		}
		updated = append(updated, m)
	}
	if changed != n || (changed > 0) != (after > before) {
		return nil, false // the store's count is not ours: read it
	}
	if changed > 0 {
		sm.addFlagsOfLocked(updated, after)
		sm.msgs, sm.modseq, sm.mb.ModSeq = msgs, after, after
		sm.gen++
		sm.wakeViewsLocked()
	}
	return updated, true
}

// addFlagsOfLocked adds to the mailbox's list of flags those of the
// messages of a write whose MODSEQ is its after, each spelling once (a
// STORE has few).
func (sm *sharedMailbox) addFlagsOfLocked(msgs []store.Message, after uint64) {
	var seen []string
	for i := range msgs {
		if msgs[i].ModSeq != after {
			continue
		}
		for _, f := range msgs[i].Flags {
			if !slices.Contains(seen, f) {
				seen = append(seen, f)
				sm.addFlagLocked(f)
			}
		}
	}
}

// indexOfUID returns the index of the message of uid in msgs (UID order)
// and whether it is there.
func indexOfUID(msgs []store.Message, uid uint32) (int, bool) {
	return slices.BinarySearchFunc(msgs, uid, func(m store.Message, uid uint32) int { return cmp.Compare(m.UID, uid) })
}

// messagesOf returns the messages of uids in the snapshot.
func (sm *sharedMailbox) messagesOf(uids []uint32) []store.Message {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return messagesOfLocked(sm.msgs, uids)
}

func messagesOfLocked(msgs []store.Message, uids []uint32) []store.Message {
	out := make([]store.Message, 0, len(uids))
	for _, uid := range sortedUIDs(uids) {
		if k, ok := indexOfUID(msgs, uid); ok {
			out = append(out, msgs[k])
		}
	}
	return out
}

// sortedUIDs returns uids in ascending order (uids itself when it is).
func sortedUIDs(uids []uint32) []uint32 {
	if slices.IsSorted(uids) {
		return uids
	}
	return slices.Sorted(slices.Values(uids))
}

// read returns the mailbox and its messages as the store has them now,
// and the messages among them that may have changed since the snapshot
// old (at MODSEQ since): on a store.ChangeReader, old brought up to date
// with the changes since (a new slice: old is shared with sessions that
// read it without a lock), else the whole mailbox read again.
func (sm *sharedMailbox) read(ctx context.Context, old []store.Message, since uint64) (mb store.Mailbox, msgs, changed []store.Message, err error) {
	if cr, ok := sm.st.(store.ChangeReader); ok {
		mb, changed, vanished, complete, err := cr.ChangesSince(ctx, sm.key.user, sm.key.id, since)
		if err != nil {
			return store.Mailbox{}, nil, nil, err
		}
		if complete {
			if mb.ModSeq <= since {
				return mb, old, nil, nil
			}
			return mb, store.ApplyChanges(old, changed, vanished), changed, nil
		}
		// The expunge records do not go back to since: read it all.
	}
	mb, msgs, err = sm.st.MessagesByID(ctx, sm.key.user, sm.key.id)
	return mb, msgs, msgs, err
}

func imapFlags(flags []string) []goimap.Flag {
	out := make([]goimap.Flag, len(flags))
	for i, f := range flags {
		out[i] = goimap.Flag(f)
	}
	return out
}

func storeFlags(flags []goimap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if strings.EqualFold(string(f), string(flagRecent)) {
			continue // not stored: a session's own (see view.recent)
		}
		out = append(out, string(f))
	}
	return out
}

// flagRecent is IMAP4rev1's \Recent (RFC 3501 section 2.3.2), which the
// library keeps to itself.
const flagRecent = goimap.Flag(`\Recent`)

// uidRange is a range of UIDs [lo, hi).
type uidRange struct{ lo, hi uint32 }

// view is a session's view of its selected mailbox. Only the session's
// goroutine uses it (IDLE's goroutine while the session waits for DONE).
type view struct {
	sm        *sharedMailbox
	readOnly  bool
	rev1      bool // the client has not enabled IMAP4rev2: \Recent applies
	searchRes goimap.UIDSet
	wake      chan struct{} // signalled by sync

	// msgs are the messages the client knows, in its sequence order: a
	// snapshot of sm, plus, while EXPUNGE responses may not be sent, the
	// messages expunged since (ghosts).
	msgs   []store.Message
	gen    uint64 // sm.gen of msgs when msgs is that snapshot exactly, else 0
	ghosts int    // messages of msgs that are expunged
	modseq uint64 // the client has the flags of every change up to this
	// lastFull is modseq when the client was last told every expunge:
	// it knows the whole mailbox state up to it (condstore.go,
	// noteHighest).
	lastFull uint64
	// told is the highest mod-sequence the client was told (QRESYNC).
	told uint64
	// self are the session's own changes since the last update, UID to
	// ModSeq: the client knows their flags (the command's answer showed
	// them, or STORE .SILENT left them as the client expects).
	self    map[uint32]uint64
	flagGen uint64 // sm.flagGen that the client was sent FLAGS for
	// recent are the UIDs this session has \Recent for (rev1 only),
	// written with sm.mu held.
	recent []uidRange
}

// item is a message of the client's view.
type item struct {
	clientSeq uint32
	gone      bool // expunged (msg is as the client last knew it)
	// msg points into the snapshot (or the view's copy of it), which is
	// never changed in place: 16 bytes an item instead of a copy of the
	// message (a FETCH 1:* of 10 000 messages held 1.1 MB of copies).
	msg *store.Message // as in the latest snapshot
}

// current returns the client's view with each message as in the latest
// snapshot: msgs[i] has sequence number i+1; gone (nil when none is)
// tells which are expunged. sm.mu must be held. When the view is the
// latest snapshot, msgs is that snapshot, not a copy.
func (v *view) currentLocked() (msgs []store.Message, gone []bool) {
	sm := v.sm
	if v.gen == sm.gen {
		return v.msgs, nil
	}
	msgs = make([]store.Message, len(v.msgs))
	cur := sm.msgs
	j := 0
	for i, m := range v.msgs {
		for j < len(cur) && cur[j].UID < m.UID {
			j++
		}
		if j < len(cur) && cur[j].UID == m.UID {
			msgs[i] = cur[j]
			continue
		}
		msgs[i] = m
		if gone == nil {
			gone = make([]bool, len(v.msgs))
		}
		gone[i] = true
	}
	return msgs, gone
}

// errBadSeq answers a sequence number above the client's EXISTS (RFC 9051
// section 6.4.5 and 9: "BAD" for an invalid sequence number).
var errBadSeq = &goimap.Error{Type: goimap.StatusResponseTypeBad, Code: goimap.ResponseCodeClientBug, Text: "Invalid sequence number: above the number of messages"}

// resolve returns the messages in numSet (sequence numbers in the
// client's view, or UIDs), in sequence order; errBadSeq for a sequence
// number above the client's number of messages.
func (v *view) resolve(numSet goimap.NumSet) ([]item, error) {
	v.sm.mu.Lock()
	defer v.sm.mu.Unlock()
	msgs, gone := v.currentLocked()
	numSet = v.staticNumSetLocked(numSet)
	lo, hi := 0, len(msgs)
	switch ns := numSet.(type) {
	case goimap.SeqSet:
		for _, r := range ns {
			if max(r.Start, r.Stop) > uint32(len(msgs)) {
				return nil, errBadSeq
			}
		}
		if len(ns) == 1 {
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
		m := &msgs[i]
		seq := uint32(i) + 1
		var ok bool
		switch ns := numSet.(type) {
		case goimap.SeqSet:
			ok = ns.Contains(seq)
		case goimap.UIDSet:
			ok = ns.Contains(goimap.UID(m.UID))
		}
		if ok {
			out = append(out, item{clientSeq: seq, msg: m, gone: gone != nil && gone[i]})
		}
	}
	return out, nil
}

// staticNumSetLocked replaces "*" by the highest number and "$" by the
// saved search result (RFC 5182), in the client's view.
func (v *view) staticNumSetLocked(numSet goimap.NumSet) goimap.NumSet {
	if goimap.IsSearchRes(numSet) {
		return v.searchRes
	}
	switch ns := numSet.(type) {
	case goimap.SeqSet:
		out := make(goimap.SeqSet, len(ns))
		copy(out, ns)
		max := uint32(len(v.msgs))
		for i := range out {
			staticRange(&out[i].Start, &out[i].Stop, max)
		}
		return out
	case goimap.UIDSet:
		out := make(goimap.UIDSet, len(ns))
		copy(out, ns)
		max := v.sm.mb.UIDNext - 1
		if n := len(v.msgs); n > 0 {
			max = v.msgs[n-1].UID
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

// isRecent reports whether the message with uid is \Recent in this session.
func (v *view) isRecent(uid uint32) bool {
	for _, r := range v.recent {
		if uid >= r.lo && uid < r.hi {
			return true
		}
	}
	return false
}

// countRecent counts the messages of msgs that are \Recent here.
func (v *view) countRecent(msgs []store.Message) uint32 {
	if len(v.recent) == 0 {
		return 0
	}
	var n uint32
	for _, m := range msgs {
		if v.isRecent(m.UID) {
			n++
		}
	}
	return n
}

// flags returns m's flags as this session shows them: with \Recent for
// an IMAP4rev1 session that has it.
func (v *view) flags(m *store.Message) []goimap.Flag {
	out := make([]goimap.Flag, len(m.Flags), len(m.Flags)+1)
	for i, f := range m.Flags {
		out[i] = goimap.Flag(f)
	}
	if v.rev1 && v.isRecent(m.UID) {
		out = append(out, flagRecent)
	}
	return out
}

// claimRecent takes \Recent for this session of the messages of its view
// that no session has had it for (a read-write IMAP4rev1 session only).
// Claims are made in memory, under sm.mu, so that exactly one session
// gets each message; the store learns the first unclaimed UID when the
// last session leaves the mailbox (Server.release), so that messages
// that arrive meanwhile are \Recent for the next session. After a crash,
// messages claimed since the last release are \Recent once more: a
// write to the index per new message seen was not worth avoiding that.
func (v *view) claimRecent() {
	if !v.rev1 || v.readOnly || len(v.msgs) == 0 {
		return
	}
	sm := v.sm
	upTo := v.msgs[len(v.msgs)-1].UID + 1
	sm.mu.Lock()
	defer sm.mu.Unlock()
	first := max(sm.mb.RecentUID, 1)
	if first >= upTo {
		return
	}
	sm.mb.RecentUID = upTo
	sm.recentDirty = true
	v.recent = append(v.recent, uidRange{first, upTo})
}

// flagResponses are the FLAGS and PERMANENTFLAGS responses that announce
// the mailbox's flags and keywords.
func flagResponses(flags []goimap.Flag, readOnly bool) []byte {
	var b []byte
	b = append(b, "* FLAGS ("...)
	for i, f := range flags {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	b = append(b, ")\r\n* OK [PERMANENTFLAGS ("...)
	if !readOnly {
		for _, f := range flags {
			b = append(b, f...)
			b = append(b, ' ')
		}
		b = append(b, `\*`...)
	}
	b = append(b, ")] Flags permitted\r\n"...)
	return b
}

// announceFlags sends FLAGS and PERMANENTFLAGS when a flag or keyword that
// the client was not told of is in the mailbox: before any FETCH shows it
// (RFC 9051 section 7.3.5).
func (v *view) announceFlags(c *conn) error {
	v.sm.mu.Lock()
	gen, flags := v.sm.flagGen, v.sm.flags
	v.sm.mu.Unlock()
	if gen == v.flagGen {
		return nil
	}
	if err := c.writeResponses(flagResponses(flags, v.readOnly)); err != nil {
		return err
	}
	v.flagGen = gen
	return nil
}

// flagChange is a FETCH FLAGS update to send.
type flagChange struct {
	seq uint32
	msg store.Message
}

// update brings the client's view up to the latest snapshot (read from
// the store first): EXPUNGE (when allowed), FLAGS, EXISTS, RECENT and
// FETCH FLAGS responses.
func (v *view) update(ctx context.Context, c *conn, w *imapserver.UpdateWriter, allowExpunge, synced bool) error {
	sm := v.sm
	if !synced { // the command just synced: the snapshot is as fresh
		if err := sm.sync(ctx); err != nil {
			return err
		}
	}
	sm.mu.Lock()
	cur, gen, modseq := sm.msgs, sm.gen, sm.modseq
	sm.mu.Unlock()
	if err := v.announceFlags(c); err != nil {
		return err
	}
	if gen == v.gen {
		return nil
	}
	// Merge the client's view with the snapshot, both in UID order.
	var expunged []uint32 // sequence numbers in the client's view, ascending
	var changed []flagChange
	var next []store.Message // the new view, when it keeps ghosts
	ghosts := 0
	if !allowExpunge {
		next = make([]store.Message, 0, len(v.msgs)+len(cur))
	}
	seq := uint32(0) // in the view once the expunges are sent
	j := 0
	for i := range v.msgs {
		m := &v.msgs[i]
		for j < len(cur) && cur[j].UID < m.UID {
			j++ // cannot be: UIDs only grow
		}
		if j < len(cur) && cur[j].UID == m.UID {
			seq++
			if cm := cur[j]; cm.ModSeq > v.modseq && v.self[cm.UID] != cm.ModSeq {
				changed = append(changed, flagChange{seq, cm})
			}
			if next != nil {
				next = append(next, cur[j])
			}
			j++
			continue
		}
		if allowExpunge {
			expunged = append(expunged, uint32(i)+1)
			continue
		}
		// Not yet expungeable: stays in the view as a ghost.
		seq++
		ghosts++
		next = append(next, *m)
	}
	added := cur[j:]
	if ghosts > 0 {
		next = append(next, added...)
	} else {
		next = nil
	}
	if c.cs.qresync.Load() && len(expunged) > 0 {
		// VANISHED instead of EXPUNGE (RFC 7162 section 3.2.10).
		if err := c.writeResponses(vanishedLine(v.msgs, expunged)); err != nil {
			return err
		}
		expunged = nil
	}
	for k := len(expunged) - 1; k >= 0; k-- {
		if err := w.WriteExpunge(expunged[k]); err != nil {
			return err
		}
	}
	if next != nil {
		v.msgs, v.gen = next, 0
	} else {
		v.msgs, v.gen = cur, gen
	}
	v.ghosts, v.modseq = ghosts, modseq
	clear(v.self)
	if len(added) > 0 {
		if err := w.WriteNumMessages(seq + uint32(len(added))); err != nil {
			return err
		}
		v.claimRecent()
	}
	if v.rev1 && len(added) > 0 {
		// RECENT goes with EXISTS, as Dovecot sends it; an expunge
		// lowers the count silently.
		if err := w.WriteNumRecent(v.countRecent(v.msgs)); err != nil {
			return err
		}
	}
	condOn := c.cs.condstore.Load()
	for _, ch := range changed {
		if condOn {
			c.queueModSeq(ch.seq, ch.msg.ModSeq)
		}
		if err := w.WriteMessageFlags(ch.seq, goimap.UID(ch.msg.UID), v.flags(&ch.msg)); err != nil {
			return err
		}
	}
	return nil
}

// changed records changes the session made whose new flags its answer
// showed: they are not sent again.
func (v *view) changed(msgs []store.Message) {
	if v.self == nil {
		v.self = map[uint32]uint64{}
	}
	for _, m := range msgs {
		v.self[m.UID] = m.ModSeq
	}
}

// changedSilently records the changes of a STORE .SILENT, whose answer
// shows nothing (RFC 9051 section 6.4.6): a message whose new flags are
// what the client expects (its flags as last sent, changed by the STORE)
// is not sent; one that another session changed too is, so that the
// client does not keep a wrong guess.
func (v *view) changedSilently(items []item, updated []store.Message, op store.FlagOp, flags []string) {
	if v.self == nil {
		v.self = map[uint32]uint64{}
	}
	before := make(map[uint32]*store.Message, len(items))
	for i := range items {
		before[items[i].msg.UID] = items[i].msg
	}
	for _, m := range updated {
		b := before[m.UID]
		if b == nil || b.ModSeq > v.modseq {
			continue // the client had not been told the state changed
		}
		if sameFlagSet(m.Flags, store.ApplyFlags(b.Flags, op, flags)) {
			v.self[m.UID] = m.ModSeq
		}
	}
}

func sameFlagSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !slices.ContainsFunc(b, func(g string) bool { return strings.EqualFold(f, g) }) {
			return false
		}
	}
	return true
}

// Idle snapshots
//
// When the last session of a node leaves a mailbox, its snapshot is kept
// a while (idleTTL), so that the next SELECT of the mailbox (a client
// that logs in, selects, logs out and comes back, as mail clients poll)
// does not read every message again: the mailbox record that SELECT reads
// anyway tells whether the snapshot is still the mailbox (same
// UIDVALIDITY, name and MODSEQ: nothing changed, not one more read), or
// how far behind it is (a ChangeReader store then sends the changes
// since). The snapshot then is what a fresh read gives: its \Recent
// state is the store's (release wrote this node's claims there), and its
// list of flags is made again from its messages. The kept snapshots are
// bounded in number and in messages, so that a node's idle memory stays
// what it was once they expire.
var (
	idleTTL          = 60 * time.Second
	idleMaxMailboxes = 16
	idleMaxMessages  = 32768 // in all the kept snapshots, about 120 bytes each
)

// idleCache holds the snapshots of the mailboxes no session of the node
// has selected. Guarded by Server.mu.
type idleCache struct {
	entries  map[mailboxKey]*idleEntry
	messages int
}

type idleEntry struct {
	sm *sharedMailbox
	n  int // messages of sm when kept
	// changed: the store told of a change since sm was kept. The mailbox
	// record a SELECT read may be older than that change, whose
	// notification found no session to wake: the snapshot is then
	// checked against the store once more.
	changed bool
	timer   *time.Timer
	since   time.Time
}

// keepIdleLocked keeps sm, which no session uses any more, for idleTTL,
// dropping the oldest kept snapshots beyond the bounds. s.mu is held.
func (s *Server) keepIdleLocked(sm *sharedMailbox) {
	c := &s.idle
	sm.mu.Lock()
	n := len(sm.msgs)
	sm.mu.Unlock()
	if n > idleMaxMessages || idleTTL <= 0 {
		return
	}
	if c.entries == nil {
		c.entries = map[mailboxKey]*idleEntry{}
	}
	c.dropLocked(sm.key)
	for len(c.entries) > 0 && (len(c.entries) >= idleMaxMailboxes || c.messages+n > idleMaxMessages) {
		var oldest *idleEntry
		for _, e := range c.entries {
			if oldest == nil || e.since.Before(oldest.since) {
				oldest = e
			}
		}
		c.dropLocked(oldest.sm.key)
	}
	e := &idleEntry{sm: sm, n: n, since: time.Now()}
	e.timer = time.AfterFunc(idleTTL, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.entries[sm.key] == e {
			c.dropLocked(sm.key)
		}
	})
	c.entries[sm.key] = e
	c.messages += n
}

// dropLocked forgets the snapshot kept for key, if any.
func (c *idleCache) dropLocked(key mailboxKey) {
	e := c.entries[key]
	if e == nil {
		return
	}
	e.timer.Stop()
	delete(c.entries, key)
	c.messages -= e.n
}

// changedLocked notes a change of the mailbox of key, if its snapshot
// is kept.
func (c *idleCache) changedLocked(key mailboxKey) {
	if e := c.entries[key]; e != nil {
		e.changed = true
	}
}

// dropAllLocked forgets every kept snapshot (the server shuts down).
func (c *idleCache) dropAllLocked() {
	for key := range c.entries {
		c.dropLocked(key)
	}
}

// takeIdleLocked returns the snapshot kept for key brought up to date
// with the store (cur: the mailbox's record read by the SELECT that wants
// it), or nil when none is kept or it cannot be brought up to date for
// less than a fresh read. s.mu is held.
func (s *Server) takeIdleLocked(ctx context.Context, key mailboxKey, cur store.Mailbox) *sharedMailbox {
	e := s.idle.entries[key]
	if e == nil {
		return nil
	}
	s.idle.dropLocked(key)
	sm := e.sm
	if !sm.revive(ctx, cur, e.changed) {
		return nil
	}
	return sm
}

// revive brings a kept snapshot up to date (see Idle snapshots above)
// and reports whether it could. changed: the store told of a change
// while it was kept, maybe after cur was read.
func (sm *sharedMailbox) revive(ctx context.Context, cur store.Mailbox, changed bool) bool {
	sm.opMu.Lock()
	defer sm.opMu.Unlock()
	sm.mu.Lock()
	validity := sm.mb.UIDValidity
	valid := cur.UIDValidity == validity && cur.ModSeq >= sm.modseq
	same := valid && !changed && cur.Name == sm.mb.Name && cur.ModSeq == sm.modseq
	// The store's \Recent state: release wrote this node's claims there
	// before keeping the snapshot (cur may have been read before that),
	// and another node's may have gone further since.
	recent := max(cur.RecentUID, sm.mb.RecentUID)
	if same {
		sm.mb = cur
	}
	sm.mb.RecentUID, sm.recentDirty = recent, false
	sm.mu.Unlock()
	if !same {
		if _, ok := sm.st.(store.ChangeReader); !ok || !valid {
			return false
		}
		rec := &cur
		if changed {
			rec = nil // read again
		}
		if err := sm.syncOpLocked(ctx, rec, false); err != nil {
			return false
		}
		sm.mu.Lock()
		validity = sm.mb.UIDValidity
		sm.mu.Unlock()
		if validity != cur.UIDValidity {
			return false
		}
	}
	// The flags of a fresh read: those of the messages it has now.
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.resetFlagsLocked()
	sm.done = make(chan struct{})
	return true
}
