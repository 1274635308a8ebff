package pgstore

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// The tests of the methods server/imap needs beyond schema 1, ported
// from server/store's tests of the same methods.

const alice = "alice@example.test"

func msg(subject string) string {
	return "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
}

func deliver(t *testing.T, s *Store, mailbox, body string, flags ...string) uint32 {
	t.Helper()
	uid, err := s.Deliver(ctxT(t), alice, mailbox, strings.NewReader(body), flags, time.Time{})
	if err != nil {
		t.Fatalf("Deliver to %q: %v", mailbox, err)
	}
	return uid
}

func newUser(t *testing.T, url string, quota int64) *Store {
	t.Helper()
	s := migrated(t, url)
	if err := s.EnsureUser(ctxT(t), alice, quota); err != nil {
		t.Fatal(err)
	}
	return s
}

func mailboxOf(t *testing.T, s *Store, name string) store.Mailbox {
	t.Helper()
	mb, err := s.Mailbox(ctxT(t), alice, name)
	if err != nil {
		t.Fatalf("Mailbox(%q): %v", name, err)
	}
	return mb
}

func uidsOf(msgs []store.Message) []uint32 {
	var out []uint32
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	return out
}

func countRows(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(ctxT(t), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// testMailboxOps: create, rename (children, INBOX), delete, subscribe,
// as server/store's TestMailboxOps and TestFlagsExpungeCopyMove.
func testMailboxOps(t *testing.T, url string) {
	ctx := ctxT(t)
	s := newUser(t, url, 0)
	for _, name := range []string{"Work", "Work/2025", "Work/2026"} {
		if err := s.CreateMailbox(ctx, alice, name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateMailbox(ctx, alice, "work/2025", ""); err != nil {
		t.Errorf("names are case-sensitive except INBOX: %v", err)
	}
	deliver(t, s, "Work/2025", msg("old"))
	w25 := mailboxOf(t, s, "Work/2025")
	if err := s.RenameMailbox(ctx, alice, "Work", "Job"); err != nil {
		t.Fatal(err)
	}
	_, msgs, err := s.Messages(ctx, alice, "Job/2025")
	if err != nil || len(msgs) != 1 {
		t.Errorf("Messages(Job/2025) = %v, %v", msgs, err)
	}
	if _, err := s.Mailbox(ctx, alice, "Work/2026"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("old child still there: %v", err)
	}
	// The mailbox keeps its ID; its MODSEQ moves so sessions notice.
	j25, err := s.MailboxByID(ctx, alice, w25.ID)
	if err != nil || j25.Name != "Job/2025" || j25.ModSeq != w25.ModSeq+1 || j25.UIDValidity != w25.UIDValidity {
		t.Errorf("MailboxByID after the rename: %+v, %v; was %+v", j25, err, w25)
	}
	if mb, msgs, err := s.MessagesByID(ctx, alice, w25.ID); err != nil || mb.Name != "Job/2025" || len(msgs) != 1 {
		t.Errorf("MessagesByID after the rename: %+v %v, %v", mb, msgs, err)
	}
	if _, err := s.MailboxByID(ctx, alice, 999999); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("MailboxByID of no mailbox: %v", err)
	}
	if _, err := s.MailboxByID(ctx, "nobody", w25.ID); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("MailboxByID of no user: %v", err)
	}
	if err := s.RenameMailbox(ctx, alice, "Job/2025", "Job/2026"); !errors.Is(err, store.ErrMailboxExists) {
		t.Errorf("rename onto an existing mailbox: %v", err)
	}
	if err := s.RenameMailbox(ctx, alice, "Job", "inbox"); !errors.Is(err, store.ErrInboxNotAllowed) {
		t.Errorf("rename to INBOX: %v", err)
	}
	if err := s.RenameMailbox(ctx, alice, "Nope", "Other"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("rename of no mailbox: %v", err)
	}
	if err := s.RenameMailbox(ctx, alice, "Job", "Box"); err != nil {
		t.Fatal(err)
	}
	// A rename that fails half-way changes nothing.
	if err := s.CreateMailbox(ctx, alice, "A", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, alice, "A/2026", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, alice, "C/2026", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, alice, "A", "C"); !errors.Is(err, store.ErrMailboxExists) {
		t.Errorf("rename whose child collides: %v", err)
	}
	if _, err := s.Mailbox(ctx, alice, "A"); err != nil {
		t.Errorf("A after a refused rename: %v", err)
	}

	// Renaming INBOX moves its messages and leaves an empty INBOX.
	deliver(t, s, "", msg("in"))
	old := mailboxOf(t, s, "INBOX")
	if err := s.RenameMailbox(ctx, alice, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	inbox, moved := mailboxOf(t, s, "INBOX"), mailboxOf(t, s, "Old")
	if inbox.Messages != 0 || moved.Messages != 1 || moved.UIDValidity != old.UIDValidity || inbox.UIDValidity == old.UIDValidity || moved.ID != old.ID {
		t.Errorf("INBOX %+v, Old %+v", inbox, moved)
	}

	// Subscriptions: kept by name for a deleted mailbox.
	if err := s.SetSubscribed(ctx, alice, "Old", false); err != nil {
		t.Fatal(err)
	}
	if mb := mailboxOf(t, s, "Old"); mb.Subscribed {
		t.Error("still subscribed")
	}
	if err := s.SetSubscribed(ctx, alice, "Nope", true); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("subscribe to no mailbox: %v", err)
	}
	if err := s.DeleteMailbox(ctx, alice, "Old"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, alice, "A/2026"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, alice, "Box/2025"); err != nil {
		t.Fatal(err)
	}
	gone, err := s.GoneSubscriptions(ctx, alice)
	if err != nil || !slices.Equal(gone, []string{"A/2026", "Box/2025"}) {
		t.Errorf("GoneSubscriptions = %v, %v; want the subscribed ones deleted", gone, err)
	}
	if err := s.SetSubscribed(ctx, alice, "A/2026", false); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, alice, "Box/2025", ""); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.GoneSubscriptions(ctx, alice); err != nil || len(gone) != 0 {
		t.Errorf("GoneSubscriptions after UNSUBSCRIBE and a new mailbox = %v, %v", gone, err)
	}
	if _, err := s.GoneSubscriptions(ctx, "nobody"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("GoneSubscriptions of no user: %v", err)
	}

	// Deletion: not INBOX, not a parent; messages and bodies go.
	if err := s.DeleteMailbox(ctx, alice, "inbox"); !errors.Is(err, store.ErrInboxNotAllowed) {
		t.Errorf("DeleteMailbox(INBOX) = %v", err)
	}
	if err := s.DeleteMailbox(ctx, alice, "Box"); !errors.Is(err, store.ErrHasChildren) {
		t.Errorf("DeleteMailbox(parent) = %v, want ErrHasChildren", err)
	}
	if err := s.DeleteMailbox(ctx, alice, "Nope"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("DeleteMailbox(none) = %v", err)
	}
	if used, n, err := s.Usage(ctx, alice); err != nil || used != 0 || n != 0 || countRows(t, s, "bodies WHERE released_at IS NULL") != 0 {
		t.Errorf("after deleting every message's mailbox: %d bytes, %d messages, %d bodies, %v", used, n, countRows(t, s, "bodies WHERE released_at IS NULL"), err)
	}
}

// testCopyMove ports TestFlagsExpungeCopyMove: COPYUID results, bodies
// shared and freed with their last message, counters, quota.
func testCopyMove(t *testing.T, url string) {
	ctx := ctxT(t)
	s := newUser(t, url, 0)
	for i := 1; i <= 5; i++ {
		deliver(t, s, "", msg(fmt.Sprint(i)))
	}
	cr, err := s.Copy(ctx, alice, "INBOX", []uint32{1, 3, 99}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	arch := mailboxOf(t, s, "Archive")
	if !slices.Equal(cr.SourceUIDs, []uint32{1, 3}) || !slices.Equal(cr.DestUIDs, []uint32{1, 2}) || cr.UIDValidity != arch.UIDValidity {
		t.Errorf("Copy = %+v", cr)
	}
	inboxBefore := mailboxOf(t, s, "INBOX")
	mr, err := s.Move(ctx, alice, "INBOX", []uint32{5, 3}, "Trash")
	if err != nil || !slices.Equal(mr.SourceUIDs, []uint32{3, 5}) || !slices.Equal(mr.DestUIDs, []uint32{1, 2}) {
		t.Errorf("Move = %+v, %v", mr, err)
	}
	_, inbox, _ := s.Messages(ctx, alice, "INBOX")
	trashBox, trash, _ := s.Messages(ctx, alice, "Trash")
	archBox, archive, _ := s.Messages(ctx, alice, "Archive")
	if !slices.Equal(uidsOf(inbox), []uint32{1, 2, 4}) || len(trash) != 2 || len(archive) != 2 {
		t.Errorf("INBOX %v, Trash %v, Archive %v", uidsOf(inbox), uidsOf(trash), uidsOf(archive))
	}
	if inboxAfter := mailboxOf(t, s, "INBOX"); inboxAfter.ModSeq != inboxBefore.ModSeq+1 || inboxAfter.Messages != 3 {
		t.Errorf("INBOX after MOVE: %+v, was %+v", inboxAfter, inboxBefore)
	}
	if trash[0].ModSeq != trashBox.ModSeq || archive[1].ModSeq != archBox.ModSeq || trashBox.UIDNext != 3 {
		t.Errorf("moved/copied messages' MODSEQ %d/%d, mailboxes at %d/%d", trash[0].ModSeq, archive[1].ModSeq, trashBox.ModSeq, archBox.ModSeq)
	}
	if b := readBody(t, s, trash[1]); b != msg("5") {
		t.Errorf("moved body = %q", b)
	}
	if b := readBody(t, s, archive[1]); b != msg("3") {
		t.Errorf("copied body = %q", b)
	}
	used, n, _ := s.Usage(ctx, alice)
	if want := int64(5*len(msg("1")) + len(msg("1")) + len(msg("3"))); n != 7 || used != want || countRows(t, s, "bodies WHERE released_at IS NULL") != 5 {
		t.Errorf("usage %d messages, %d bytes, %d bodies; want 7, %d, 5 (copies share)", n, used, countRows(t, s, "bodies WHERE released_at IS NULL"), want)
	}
	// Within one mailbox: copies get new UIDs.
	cr, err = s.Copy(ctx, alice, "INBOX", []uint32{1}, "inbox")
	if err != nil || !slices.Equal(cr.DestUIDs, []uint32{6}) {
		t.Errorf("Copy within INBOX = %+v, %v", cr, err)
	}
	mr, err = s.Move(ctx, alice, "INBOX", []uint32{2}, "INBOX")
	if err != nil || !slices.Equal(mr.DestUIDs, []uint32{7}) {
		t.Errorf("Move within INBOX = %+v, %v", mr, err)
	}
	_, inbox, _ = s.Messages(ctx, alice, "INBOX")
	if !slices.Equal(uidsOf(inbox), []uint32{1, 4, 6, 7}) || readBody(t, s, inbox[3]) != msg("2") {
		t.Errorf("INBOX after copy and move within: %v", uidsOf(inbox))
	}
	// The body of message 1 is now in INBOX 1, INBOX 6 and Archive 1:
	// it stays while one of them does.
	for _, box := range []string{"INBOX", "Archive"} {
		if _, err := s.SetFlags(ctx, alice, box, []uint32{1}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Expunge(ctx, alice, box, []uint32{1}); err != nil {
			t.Fatal(err)
		}
	}
	if b := readBody(t, s, inbox[2]); b != msg("1") {
		t.Errorf("last copy of a body: %q", b)
	}
	if err := s.DeleteMailbox(ctx, alice, "Trash"); err != nil {
		t.Fatal(err)
	}
	_, n, _ = s.Usage(ctx, alice)
	if n != 4 || countRows(t, s, "bodies WHERE released_at IS NULL") != 4 {
		t.Errorf("after delete: %d messages, %d bodies; want 4, 4 (INBOX 4, 6, 7, Archive 2)", n, countRows(t, s, "bodies WHERE released_at IS NULL"))
	}
	if _, err := s.Copy(ctx, alice, "INBOX", []uint32{1}, "Nope"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("Copy to no mailbox: %v", err)
	}
	if _, err := s.Move(ctx, "nobody", "INBOX", []uint32{1}, "Archive"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("Move of no user: %v", err)
	}
	// Nothing to copy: nothing changes.
	arch = mailboxOf(t, s, "Archive")
	if cr, err := s.Copy(ctx, alice, "INBOX", []uint32{99}, "Archive"); err != nil || len(cr.SourceUIDs) != 0 || mailboxOf(t, s, "Archive").ModSeq != arch.ModSeq {
		t.Errorf("Copy of nothing = %+v, %v", cr, err)
	}
}

// testCopyQuota: a copy counts against the quota and is refused whole
// beyond it.
func testCopyQuota(t *testing.T, url string) {
	ctx := ctxT(t)
	s := newUser(t, url, 100)
	deliver(t, s, "", strings.Repeat("a", 40))
	if _, err := s.Copy(ctx, alice, "INBOX", []uint32{1}, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy(ctx, alice, "INBOX", []uint32{1}, "Archive"); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Fatalf("Copy beyond the quota: %v", err)
	}
	if used, n, _ := s.Usage(ctx, alice); used != 80 || n != 2 {
		t.Errorf("after a refused copy: %d bytes, %d messages; want 80, 2", used, n)
	}
	if _, err := s.Move(ctx, alice, "INBOX", []uint32{1}, "Trash"); err != nil {
		t.Errorf("Move at the quota (takes no room): %v", err)
	}
}

// testClaimRecent ports TestClaimRecent, and claims from two nodes at
// once: each UID is \Recent in one session only.
func testClaimRecent(t *testing.T, url string) {
	ctx := ctxT(t)
	s := newUser(t, url, 0)
	for range 3 {
		deliver(t, s, "INBOX", msg("recent"))
	}
	mb := mailboxOf(t, s, "INBOX")
	if mb.RecentUID != 1 {
		t.Errorf("RecentUID of a new mailbox = %d, want 1", mb.RecentUID)
	}
	if first, err := s.ClaimRecent(ctx, alice, mb.ID, 3); err != nil || first != 1 {
		t.Errorf("ClaimRecent(3) = %d, %v, want 1", first, err)
	}
	if first, err := s.ClaimRecent(ctx, alice, mb.ID, 10); err != nil || first != 3 {
		t.Errorf("ClaimRecent(10) = %d, %v, want 3", first, err)
	}
	if first, err := s.ClaimRecent(ctx, alice, mb.ID, 4); err != nil || first != 4 {
		t.Errorf("ClaimRecent(4) again = %d, %v, want 4 (nothing)", first, err)
	}
	after := mailboxOf(t, s, "INBOX")
	if after.RecentUID != 4 || after.ModSeq != mb.ModSeq {
		t.Errorf("after the claims: RecentUID %d ModSeq %d, want 4 and %d", after.RecentUID, after.ModSeq, mb.ModSeq)
	}
	if _, err := s.ClaimRecent(ctx, alice, 999999, 5); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("ClaimRecent of a missing mailbox = %v", err)
	}

	b := open(t, url)
	for range 20 {
		deliver(t, s, "INBOX", msg("more"))
	}
	const sessions = 8
	claimed := make([][2]uint32, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		node := []*Store{s, b}[i%2]
		wg.Go(func() {
			upTo := uint32(4 + 3*i) // sessions see different UIDNEXTs
			first, err := node.ClaimRecent(ctx, alice, mb.ID, upTo)
			if err != nil {
				t.Error(err)
			}
			claimed[i] = [2]uint32{first, upTo}
		})
	}
	wg.Wait()
	seen := map[uint32]int{}
	for i, c := range claimed {
		for uid := c[0]; uid < c[1]; uid++ {
			if j, dup := seen[uid]; dup {
				t.Errorf("UID %d \\Recent in sessions %d and %d", uid, j, i)
			}
			seen[uid] = i
		}
	}
	for uid := uint32(4); uid < 4+3*(sessions-1); uid++ {
		if _, ok := seen[uid]; !ok {
			t.Errorf("UID %d \\Recent in no session", uid)
		}
	}
}

func expungeUIDs(t *testing.T, s *Store, mailbox string, uids ...uint32) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := s.SetFlags(ctx, alice, mailbox, uids, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatalf("SetFlags: %v", err)
	}
	got, err := s.Expunge(ctx, alice, mailbox, uids)
	if err != nil || len(got) != len(uids) {
		t.Fatalf("Expunge(%v) = %v, %v", uids, got, err)
	}
}

func checkVanished(t *testing.T, s *Store, mb store.Mailbox, since uint64, want [][2]uint32, wantComplete bool) {
	t.Helper()
	got, complete, err := s.Vanished(ctxT(t), alice, mb.ID, since)
	if err != nil {
		t.Fatalf("Vanished(%d): %v", since, err)
	}
	if !reflect.DeepEqual(got, want) || complete != wantComplete {
		t.Errorf("Vanished(since %d) = %v complete %v, want %v complete %v", since, got, complete, want, wantComplete)
	}
}

func fill(t *testing.T, s *Store, mailbox string, n int) []uint32 {
	var uids []uint32
	for range n {
		uids = append(uids, deliver(t, s, mailbox, "Subject: m\r\n\r\nbody\r\n"))
	}
	return uids
}

// testVanished ports TestVanishedRecordsExpungeAndMove and
// TestVanishedBounded.
func testVanished(t *testing.T, url string) {
	ctx := ctxT(t)
	s := newUser(t, url, 0)
	uids := fill(t, s, store.Inbox, 8)
	start := mailboxOf(t, s, store.Inbox).ModSeq
	expungeUIDs(t, s, store.Inbox, uids[1], uids[2], uids[5])
	mid := mailboxOf(t, s, store.Inbox).ModSeq
	if _, err := s.Move(ctx, alice, store.Inbox, []uint32{uids[7]}, "Trash"); err != nil {
		t.Fatal(err)
	}
	mb := mailboxOf(t, s, store.Inbox)
	checkVanished(t, s, mb, start, [][2]uint32{{uids[1], uids[2]}, {uids[5], uids[5]}, {uids[7], uids[7]}}, true)
	checkVanished(t, s, mb, mid, [][2]uint32{{uids[7], uids[7]}}, true)
	checkVanished(t, s, mb, mb.ModSeq, nil, true)
	if _, err := s.Copy(ctx, alice, store.Inbox, []uint32{uids[0]}, "Trash"); err != nil {
		t.Fatal(err)
	}
	checkVanished(t, s, mailboxOf(t, s, store.Inbox), mb.ModSeq, nil, true)
	// Deleted and created again: a new mailbox with no records.
	if err := s.CreateMailbox(ctx, alice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	b := fill(t, s, "Box", 2)
	expungeUIDs(t, s, "Box", b[0])
	if err := s.DeleteMailbox(ctx, alice, "Box"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, alice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	checkVanished(t, s, mailboxOf(t, s, "Box"), 0, nil, true)
	if _, _, err := s.Vanished(ctx, "nobody", mb.ID, 0); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("Vanished of no user: %v", err)
	}

	// Bounded: three records kept.
	defer func(m, k int) { maxVanishedRows, vanishedKeep = m, k }(maxVanishedRows, vanishedKeep)
	maxVanishedRows, vanishedKeep = 3, 3
	if err := s.CreateMailbox(ctx, alice, "Bounded", ""); err != nil {
		t.Fatal(err)
	}
	uids = fill(t, s, "Bounded", 6)
	var before []uint64
	for _, uid := range uids[:5] {
		before = append(before, mailboxOf(t, s, "Bounded").ModSeq)
		expungeUIDs(t, s, "Bounded", uid)
	}
	mb = mailboxOf(t, s, "Bounded")
	checkVanished(t, s, mb, before[2], [][2]uint32{{uids[2], uids[4]}}, true)
	checkVanished(t, s, mb, before[3], [][2]uint32{{uids[3], uids[4]}}, true)
	checkVanished(t, s, mb, before[0], [][2]uint32{{uids[2], uids[4]}}, false)
	checkVanished(t, s, mb, 0, [][2]uint32{{uids[2], uids[4]}}, false)
	// One transaction alone beyond the bound is kept whole.
	if err := s.CreateMailbox(ctx, alice, "Big", ""); err != nil {
		t.Fatal(err)
	}
	uids = fill(t, s, "Big", 9)
	start = mailboxOf(t, s, "Big").ModSeq
	expungeUIDs(t, s, "Big", uids[0], uids[2], uids[4], uids[6], uids[8])
	checkVanished(t, s, mailboxOf(t, s, "Big"), start, [][2]uint32{{uids[0], uids[0]}, {uids[2], uids[2]}, {uids[4], uids[4]}, {uids[6], uids[6]}, {uids[8], uids[8]}}, true)
}

func headers(t *testing.T, s *Store, mailbox string, uids ...uint32) []string {
	t.Helper()
	mb := mailboxOf(t, s, mailbox)
	hs, err := s.Headers(ctxT(t), alice, mb.ID, uids)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = "-"
		if h != nil {
			out[i] = string(h)
		}
	}
	return out
}

// testHeaderCache ports TestHeaderCaptured, TestHeaderCacheFollowsMessages,
// TestHeaderSummary and TestHeadersOrder.
func testHeaderCache(t *testing.T, url string) {
	ctx := ctxT(t)
	s := newUser(t, url, 0)
	long := "X-Long: " + strings.Repeat("a", store.MaxCachedHeader) + "\r\n\r\nbody\r\n"
	for _, tt := range []struct{ name, body, want string }{
		{"CRLF", "Subject: a\r\nFrom: b@example.test\r\n\r\nbody\r\n\r\nmore\r\n", "Subject: a\r\nFrom: b@example.test\r\n\r\n"},
		{"LF", "Subject: a\nTo: c@example.test\n\nbody\n", "Subject: a\nTo: c@example.test\n\n"},
		{"folded", "Subject: a\r\n b\r\n\r\nx", "Subject: a\r\n b\r\n\r\n"},
		{"no header", "\r\nbody only\r\n", "\r\n"},
		{"no body", "Subject: header only\r\n", "Subject: header only\r\n"},
		{"too long", long, "-"},
		{"too long without body", long[:len(long)-10], "-"},
	} {
		uid := deliver(t, s, "", tt.body)
		if got := headers(t, s, store.Inbox, uid)[0]; got != tt.want {
			t.Errorf("%s: cached header = %.80q, want %.80q", tt.name, got, tt.want)
		}
	}

	if err := s.CreateMailbox(ctx, alice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	u1, u2 := deliver(t, s, "Box", msg("one")), deliver(t, s, "Box", msg("two"))
	s.SetHeaderSummary(func(hdr []byte) []byte { return fmt.Appendf(nil, "%d bytes", len(hdr)) })
	u3 := deliver(t, s, "Box", msg("three"))
	hdr := func(subject string) string { m := msg(subject); return m[:strings.Index(m, "\r\n\r\n")+4] }
	if got, want := headers(t, s, "Box", u1, u2, u3, 99), []string{hdr("one"), hdr("two"), hdr("three"), "-"}; !slices.Equal(got, want) {
		t.Fatalf("headers = %q, want %q", got, want)
	}
	cp, err := s.Copy(ctx, alice, "Box", []uint32{u1, u3}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	mv, err := s.Move(ctx, alice, "Box", []uint32{u3}, "Trash")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := headers(t, s, "Archive", cp.DestUIDs...), []string{hdr("one"), hdr("three")}; !slices.Equal(got, want) {
		t.Errorf("copied headers = %q, want %q", got, want)
	}
	if got, want := headers(t, s, "Trash", mv.DestUIDs...), []string{hdr("three")}; !slices.Equal(got, want) {
		t.Errorf("moved header = %q, want %q", got, want)
	}
	if got, want := headers(t, s, "Box", u1, u2, u3), []string{hdr("one"), hdr("two"), "-"}; !slices.Equal(got, want) {
		t.Errorf("headers after move = %q, want %q", got, want)
	}
	summaries := func(mailbox string, uids ...uint32) []string {
		t.Helper()
		ss, err := s.Summaries(ctx, alice, mailboxOf(t, s, mailbox).ID, uids)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(ss))
		for i, x := range ss {
			out[i] = "-"
			if x != nil {
				out[i] = string(x)
			}
		}
		return out
	}
	want3 := fmt.Sprintf("%d bytes", len(hdr("three")))
	if got := summaries("Archive", cp.DestUIDs...); !slices.Equal(got, []string{"-", want3}) {
		t.Errorf("summaries of the copies = %q, want [- %q]", got, want3)
	}
	if got := summaries("Trash", mv.DestUIDs...); !slices.Equal(got, []string{want3}) {
		t.Errorf("summary of the moved message = %q", got)
	}
	// Any order, repeats, gaps.
	if got, want := headers(t, s, "Box", u2, 0, u1, u2, 1000), []string{hdr("two"), "-", hdr("one"), hdr("two"), "-"}; !slices.Equal(got, want) {
		t.Errorf("headers in any order = %q, want %q", got, want)
	}
	if err := s.RenameMailbox(ctx, alice, "Archive", "Old"); err != nil {
		t.Fatal(err)
	}
	if got, want := headers(t, s, "Old", cp.DestUIDs...), []string{hdr("one"), hdr("three")}; !slices.Equal(got, want) {
		t.Errorf("headers after rename = %q, want %q", got, want)
	}
	old := mailboxOf(t, s, "Old")
	if err := s.DeleteMailbox(ctx, alice, "Old"); err != nil {
		t.Fatal(err)
	}
	if hs, err := s.Headers(ctx, alice, old.ID, cp.DestUIDs); err != nil || hs[0] != nil || hs[1] != nil {
		t.Errorf("headers of a deleted mailbox = %q, %v", hs, err)
	}
	if _, err := s.Headers(ctx, "nobody", old.ID, cp.DestUIDs); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("Headers of no user: %v", err)
	}
}
