package store_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// fillMailbox delivers n messages to mailbox of alice and returns their UIDs.
func fillMailbox(t *testing.T, st *store.Store, mailbox string, n int) []uint32 {
	t.Helper()
	ctx := context.Background()
	var uids []uint32
	for i := 0; i < n; i++ {
		uid, err := st.Deliver(ctx, alice, mailbox, strings.NewReader("Subject: m\r\n\r\nbody\r\n"), nil, time.Now())
		if err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		uids = append(uids, uid)
	}
	return uids
}

func expungeUIDs(t *testing.T, st *store.Store, mailbox string, uids ...uint32) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.SetFlags(ctx, alice, mailbox, uids, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatalf("SetFlags: %v", err)
	}
	got, err := st.Expunge(ctx, alice, mailbox, uids)
	if err != nil || len(got) != len(uids) {
		t.Fatalf("Expunge(%v) = %v, %v", uids, got, err)
	}
}

func mailboxOf(t *testing.T, st *store.Store, name string) store.Mailbox {
	t.Helper()
	mb, err := st.Mailbox(context.Background(), alice, name)
	if err != nil {
		t.Fatalf("Mailbox(%q): %v", name, err)
	}
	return mb
}

func checkVanished(t *testing.T, st *store.Store, mb store.Mailbox, since uint64, want [][2]uint32, wantComplete bool) {
	t.Helper()
	got, complete, err := st.Vanished(context.Background(), alice, mb.ID, since)
	if err != nil {
		t.Fatalf("Vanished(%d): %v", since, err)
	}
	if !reflect.DeepEqual(got, want) || complete != wantComplete {
		t.Errorf("Vanished(since %d) = %v complete %v, want %v complete %v", since, got, complete, want, wantComplete)
	}
}

func TestVanishedRecordsExpungeAndMove(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	uids := fillMailbox(t, st, store.Inbox, 8)
	start := mailboxOf(t, st, store.Inbox).ModSeq
	expungeUIDs(t, st, store.Inbox, uids[1], uids[2], uids[5])
	mid := mailboxOf(t, st, store.Inbox).ModSeq
	if _, err := st.Move(ctx, alice, store.Inbox, []uint32{uids[7]}, "Trash"); err != nil {
		t.Fatal(err)
	}
	mb := mailboxOf(t, st, store.Inbox)
	checkVanished(t, st, mb, start, [][2]uint32{{uids[1], uids[2]}, {uids[5], uids[5]}, {uids[7], uids[7]}}, true)
	checkVanished(t, st, mb, mid, [][2]uint32{{uids[7], uids[7]}}, true)
	checkVanished(t, st, mb, mb.ModSeq, nil, true)
	// A copy removes nothing from its source.
	if _, err := st.Copy(ctx, alice, store.Inbox, []uint32{uids[0]}, "Trash"); err != nil {
		t.Fatal(err)
	}
	checkVanished(t, st, mailboxOf(t, st, store.Inbox), mb.ModSeq, nil, true)
	// Deleted and created again: a new mailbox with no records.
	if err := st.CreateMailbox(ctx, alice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	b := fillMailbox(t, st, "Box", 2)
	expungeUIDs(t, st, "Box", b[0])
	if err := st.DeleteMailbox(ctx, alice, "Box"); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateMailbox(ctx, alice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	checkVanished(t, st, mailboxOf(t, st, "Box"), 0, nil, true)
}

func TestVanishedBounded(t *testing.T) {
	defer store.SetGoneLimits(3, 1<<20)()
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	uids := fillMailbox(t, st, store.Inbox, 6)
	var before []uint64 // ModSeq before each expunge
	for _, uid := range uids[:5] {
		before = append(before, mailboxOf(t, st, store.Inbox).ModSeq)
		expungeUIDs(t, st, store.Inbox, uid)
	}
	mb := mailboxOf(t, st, store.Inbox)
	// Three records are kept: those of uids[2], uids[3], uids[4].
	checkVanished(t, st, mb, before[2], [][2]uint32{{uids[2], uids[4]}}, true)
	checkVanished(t, st, mb, before[3], [][2]uint32{{uids[3], uids[4]}}, true)
	// Older: what is known, and not complete.
	checkVanished(t, st, mb, before[0], [][2]uint32{{uids[2], uids[4]}}, false)
	checkVanished(t, st, mb, 0, [][2]uint32{{uids[2], uids[4]}}, false)
}

func TestSetFlagsUnchangedSince(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	uids := fillMailbox(t, st, store.Inbox, 3)
	known := mailboxOf(t, st, store.Inbox).ModSeq
	// Another client flags the second message meanwhile.
	if _, err := st.SetFlags(ctx, alice, store.Inbox, uids[1:2], store.FlagsAdd, []string{store.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	updated, modified, err := st.SetFlagsUnchangedSince(ctx, alice, store.Inbox, uids, store.FlagsAdd, []string{store.FlagSeen}, known)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(modified, []uint32{uids[1]}) {
		t.Errorf("modified = %v, want [%d]", modified, uids[1])
	}
	if len(updated) != 2 || updated[0].UID != uids[0] || updated[1].UID != uids[2] || !updated[0].HasFlag(store.FlagSeen) {
		t.Errorf("updated = %+v, want the first and third, \\Seen", updated)
	}
	_, msgs, err := st.Messages(ctx, alice, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if msgs[1].HasFlag(store.FlagSeen) || !msgs[1].HasFlag(store.FlagFlagged) {
		t.Errorf("the modified message was changed: %v", msgs[1].Flags)
	}
	// UNCHANGEDSINCE 0 fails for every message (RFC 7162 section 3.1.3).
	_, modified, err = st.SetFlagsUnchangedSince(ctx, alice, store.Inbox, uids, store.FlagsAdd, []string{store.FlagDraft}, 0)
	if err != nil || len(modified) != 3 {
		t.Errorf("UNCHANGEDSINCE 0: modified %v, %v; want all three", modified, err)
	}
}
