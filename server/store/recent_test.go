package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mailctl/mailctl/server/store"
)

// TestClaimRecent: each UID is claimed once, claims stop at UIDNEXT,
// survive a reopen, and change no ModSeq.
func TestClaimRecent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		deliver(t, st, "INBOX", msg("recent"))
	}
	mb, err := st.Mailbox(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if mb.RecentUID != 1 {
		t.Errorf("RecentUID of a new mailbox = %d, want 1", mb.RecentUID)
	}
	if first, err := st.ClaimRecent(ctx, alice, mb.ID, 3); err != nil || first != 1 {
		t.Errorf("ClaimRecent(3) = %d, %v, want 1", first, err)
	}
	// Beyond UIDNEXT (4): up to it only.
	if first, err := st.ClaimRecent(ctx, alice, mb.ID, 10); err != nil || first != 3 {
		t.Errorf("ClaimRecent(10) = %d, %v, want 3", first, err)
	}
	// Nothing left: an empty range.
	if first, err := st.ClaimRecent(ctx, alice, mb.ID, 4); err != nil || first != 4 {
		t.Errorf("ClaimRecent(4) again = %d, %v, want 4 (nothing)", first, err)
	}
	after, _ := st.Mailbox(ctx, alice, "INBOX")
	if after.RecentUID != 4 || after.ModSeq != mb.ModSeq {
		t.Errorf("after the claims: RecentUID %d ModSeq %d, want 4 and %d", after.RecentUID, after.ModSeq, mb.ModSeq)
	}
	deliver(t, st, "INBOX", msg("later"))
	st.Close()
	st = openStore(t, dir)
	defer st.Close()
	if first, err := st.ClaimRecent(ctx, alice, mb.ID, 5); err != nil || first != 4 {
		t.Errorf("after reopening: ClaimRecent(5) = %d, %v, want 4", first, err)
	}
	if _, err := st.ClaimRecent(ctx, alice, 999, 5); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("ClaimRecent of a missing mailbox = %v", err)
	}
	if got := store.ApplyFlags([]string{`\Seen`, "Work"}, store.FlagsRemove, []string{"work"}); len(got) != 1 || got[0] != `\Seen` {
		t.Errorf("ApplyFlags remove = %q", got)
	}
}
