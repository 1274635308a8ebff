package pgstore

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestPostgresPerf runs the tests of the statement-count and change-feed
// work of issue 20's benchmark on one private cluster.
func TestPostgresPerf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	testenv.StartPostgres(t).RunOnDatabases(t, []testenv.DatabaseTest{
		{Name: "StoreManyMessages", Fn: testStoreManyMessages},
		{Name: "FeedPollsUnnotified", Fn: testFeedPollsUnnotified},
		{Name: "FeedCloseSendsQueued", Fn: testFeedCloseSendsQueued},
	})
}

// importN makes mailbox INBOX of user u with n messages (UIDs 1..n, MODSEQ
// 1..n) in one import transaction, flags from flagsOf(uid).
func importN(t *testing.T, s *Store, user string, n int, flagsOf func(uid uint32) []string) {
	t.Helper()
	ctx := ctxT(t)
	if err := s.ImportUser(ctx, user, 0); err != nil {
		t.Fatal(err)
	}
	mb := store.Mailbox{Name: "INBOX", UIDValidity: 1700000000, UIDNext: uint32(n + 1), ModSeq: uint64(n), Messages: n, RecentUID: uint32(n + 1)}
	i := 0
	date := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	_, err := s.ImportMailbox(ctx, user, mb, func() (store.Message, io.Reader, error) {
		if i == n {
			return store.Message{}, nil, io.EOF
		}
		i++
		uid := uint32(i)
		return store.Message{UID: uid, ModSeq: uint64(i), Flags: flagsOf(uid), InternalDate: date},
			strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", uid, uid)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testStoreManyMessages: STORE on 5000 messages (as IMAP's STORE 1:*)
// sets, adds and removes flags on every message, with one new MODSEQ, an
// empty set stored as no flag at all, UNCHANGEDSINCE leaving the newer
// messages alone; the time of each call is logged (the figure of
// bench/RESULTS.md: one UPDATE per message before, one per call after).
func testStoreManyMessages(t *testing.T, url string) {
	const n = 5000
	ctx := ctxT(t)
	s := migrated(t, url)
	importN(t, s, "u", n, func(uid uint32) []string {
		switch uid % 3 {
		case 0:
			return []string{store.FlagSeen}
		case 1:
			return []string{"$Junk", store.FlagAnswered}
		}
		return nil
	})
	all := make([]uint32, n)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	check := func(what string, want func(uid uint32) []string, modseq func(uid uint32) uint64) {
		t.Helper()
		mb, msgs, err := s.Messages(ctx, "u", "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != n {
			t.Fatalf("%s: %d messages, want %d", what, len(msgs), n)
		}
		var top uint64
		for _, m := range msgs {
			w := want(m.UID)
			got := slices.Clone(m.Flags)
			slices.Sort(got)
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Fatalf("%s: UID %d has flags %q, want %q", what, m.UID, m.Flags, w)
			}
			if m.ModSeq != modseq(m.UID) {
				t.Fatalf("%s: UID %d has MODSEQ %d, want %d", what, m.UID, m.ModSeq, modseq(m.UID))
			}
			top = max(top, m.ModSeq)
		}
		if mb.ModSeq != top {
			t.Fatalf("%s: HIGHESTMODSEQ %d, the messages' highest %d", what, mb.ModSeq, top)
		}
	}
	timed := func(what string, fn func() ([]store.Message, error)) []store.Message {
		t.Helper()
		start := time.Now()
		out, err := fn()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s on %d messages: %v", what, n, time.Since(start).Round(time.Millisecond))
		return out
	}

	// +FLAGS (\Flagged): every message changes, one MODSEQ for all.
	out := timed("STORE +FLAGS (\\Flagged)", func() ([]store.Message, error) {
		return s.SetFlags(ctx, "u", "INBOX", all, store.FlagsAdd, []string{store.FlagFlagged})
	})
	if len(out) != n || out[0].UID != 1 || out[n-1].UID != n || out[0].ModSeq != n+1 {
		t.Fatalf("STORE +FLAGS returned %d messages, first %+v", len(out), out[0])
	}
	base := func(uid uint32) []string {
		switch uid % 3 {
		case 0:
			return []string{store.FlagSeen}
		case 1:
			return []string{"$Junk", store.FlagAnswered}
		}
		return nil
	}
	check("after +FLAGS", func(uid uint32) []string { return append(base(uid), store.FlagFlagged) },
		func(uint32) uint64 { return n + 1 })

	// -FLAGS of everything the messages have: an empty set, not {""}.
	timed("STORE -FLAGS (all)", func() ([]store.Message, error) {
		return s.SetFlags(ctx, "u", "INBOX", all, store.FlagsRemove, []string{store.FlagFlagged, store.FlagSeen, store.FlagAnswered, "$Junk"})
	})
	check("after -FLAGS", func(uint32) []string { return []string{} }, func(uint32) uint64 { return n + 2 })

	// Unchanged flags: no new MODSEQ for anyone.
	timed("STORE -FLAGS (none left)", func() ([]store.Message, error) {
		return s.SetFlags(ctx, "u", "INBOX", all, store.FlagsRemove, []string{store.FlagSeen})
	})
	check("after a STORE that changes nothing", func(uint32) []string { return []string{} }, func(uint32) uint64 { return n + 2 })

	// Odd UIDs get a MODSEQ above n+2; UNCHANGEDSINCE n+2 then changes
	// only the even ones and reports the odd ones as modified.
	var odd []uint32
	for _, u := range all {
		if u%2 == 1 {
			odd = append(odd, u)
		}
	}
	if _, err := s.SetFlags(ctx, "u", "INBOX", odd, store.FlagsReplace, []string{"$Odd"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	updated, modified, err := s.SetFlagsUnchangedSince(ctx, "u", "INBOX", all, store.FlagsReplace, []string{store.FlagSeen, "$Even"}, n+2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("STORE (UNCHANGEDSINCE) FLAGS on %d messages: %v", n, time.Since(start).Round(time.Millisecond))
	if !slices.Equal(modified, odd) || len(updated) != n/2 {
		t.Fatalf("UNCHANGEDSINCE: %d updated, modified %d (want %d)", len(updated), len(modified), len(odd))
	}
	check("after UNCHANGEDSINCE", func(uid uint32) []string {
		if uid%2 == 1 {
			return []string{"$Odd"}
		}
		return []string{store.FlagSeen, "$Even"}
	}, func(uid uint32) uint64 { return n + 3 + uint64(1-uid%2) })
}

// testFeedPollsUnnotified: a change committed without its notification
// (its node died between COMMIT and pg_notify: here a plain SQL UPDATE
// that stamps the mailbox and changes it) is announced to a Watch of
// another node by that node's poll within ~1.5 s; a change through the
// store is announced (by its notification) as before.
func testFeedPollsUnnotified(t *testing.T, url string) {
	ctx := ctxT(t)
	a := migrated(t, url)
	b := open(t, url)
	if err := b.EnsureUser(ctx, "p", 0); err != nil {
		t.Fatal(err)
	}
	inbox, err := b.Mailbox(ctx, "p", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	heard := map[store.Change][]time.Time{}
	defer a.Watch(func(c store.Change) {
		mu.Lock()
		heard[c] = append(heard[c], time.Now())
		mu.Unlock()
	})()
	want := store.Change{User: "p", MailboxID: inbox.ID}
	waitHeard := func(what string, n int, since time.Time, within time.Duration) time.Duration {
		t.Helper()
		for {
			mu.Lock()
			got := len(heard[want])
			var at time.Time
			if got >= n {
				at = heard[want][n-1]
			}
			mu.Unlock()
			if got >= n {
				return at.Sub(since)
			}
			if time.Since(since) > within {
				t.Fatalf("%s: not announced within %v (%d announcements)", what, within, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	start := time.Now()
	if _, err := b.Deliver(ctx, "p", "", strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("a delivery on the other node announced after %v", waitHeard("delivery", 1, start, 5*time.Second).Round(time.Millisecond))
	time.Sleep(2 * pollInterval) // the poll has passed the delivery
	mu.Lock()
	n := len(heard[want])
	mu.Unlock()

	start = time.Now()
	exec(t, url, `UPDATE mailboxes SET highestmodseq = highestmodseq + 1, change_xid = pg_current_xact_id()::text::bigint WHERE id = $1`, int64(inbox.ID))
	d := waitHeard("change without a notification", n+1, start, pollInterval*3/2+500*time.Millisecond)
	t.Logf("a change without a notification announced after %v (poll every %v)", d.Round(time.Millisecond), pollInterval)
}

// testFeedCloseSendsQueued: a write returns before its notification is
// sent (the notifier sends it from its goroutine), and a node closed right
// after its writes still sends them: another node hears every one by its
// notification, long before its poll (every minute here) would.
func testFeedCloseSendsQueued(t *testing.T, url string) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = time.Minute
	ctx := ctxT(t)
	a := migrated(t, url)
	b, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.EnsureUser(ctx, "q", 0); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var ids []uint64
	for i := range n {
		name := fmt.Sprintf("Box%d", i)
		if err := b.CreateMailbox(ctx, "q", name, ""); err != nil {
			t.Fatal(err)
		}
		mb, err := b.Mailbox(ctx, "q", name)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, mb.ID)
	}
	var mu sync.Mutex
	heard := map[uint64]bool{}
	defer a.Watch(func(c store.Change) {
		mu.Lock()
		heard[c.MailboxID] = true
		mu.Unlock()
	})()
	for i := range n {
		if _, err := b.Deliver(ctx, "q", fmt.Sprintf("Box%d", i), strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var missing []uint64
		for _, id := range ids {
			if !heard[id] {
				missing = append(missing, id)
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries then Close: mailboxes %v not announced within 5 s (poll every %v)", n, missing, pollInterval)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHeardBounded: the notifications remembered for the poll stay below
// maxHeard however long the poll's mark is held back; the latest one is
// kept.
func TestHeardBounded(t *testing.T) {
	defer func(n int) { maxHeard = n }(maxHeard)
	maxHeard = 3
	l := &listener{heard: map[heardKey]struct{}{}}
	for i := 1; i <= 10; i++ {
		l.hear(changeNote{User: "u", Mailbox: 7, Xid: int64(i)})
		if len(l.heard) > maxHeard {
			t.Fatalf("after %d notifications: %d remembered, bound %d", i, len(l.heard), maxHeard)
		}
	}
	if _, ok := l.heard[heardKey{7, 10}]; !ok {
		t.Fatalf("the latest notification is forgotten: %v", l.heard)
	}
	l.hear(changeNote{User: "u", Mailbox: 8}) // no xid: an old node's
	if _, ok := l.heard[heardKey{8, 0}]; ok {
		t.Fatal("a notification without a transaction id is remembered")
	}
}
