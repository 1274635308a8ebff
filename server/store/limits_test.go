package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

func manyKeywords(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("k%d", i)
	}
	return out
}

// TestWriterLimits: what the reader would refuse, the writer refuses
// first with ErrLimit, writing nothing, and the store opens again
// (issue 17: 1 025 keywords were written, then Open failed).
func TestWriterLimits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	uid := deliver(t, st, "", msg("one"))

	for _, c := range []struct {
		name  string
		op    store.FlagOp
		flags []string
	}{
		{"add 1025", store.FlagsAdd, manyKeywords(store.MaxFlags + 1)},
		{"replace 1025", store.FlagsReplace, manyKeywords(store.MaxFlags + 1)},
		{"long keyword", store.FlagsAdd, []string{strings.Repeat("k", store.MaxKeywordLen+1)}},
	} {
		if _, err := st.SetFlags(ctx, alice, "INBOX", []uint32{uid}, c.op, c.flags); !errors.Is(err, store.ErrLimit) {
			t.Errorf("SetFlags %s = %v, want ErrLimit", c.name, err)
		}
	}
	// At the limit, then one more added to it.
	if _, err := st.SetFlags(ctx, alice, "INBOX", []uint32{uid}, store.FlagsAdd, manyKeywords(store.MaxFlags)); err != nil {
		t.Fatalf("SetFlags of %d keywords = %v", store.MaxFlags, err)
	}
	if _, err := st.SetFlags(ctx, alice, "INBOX", []uint32{uid}, store.FlagsAdd, []string{store.FlagSeen}); !errors.Is(err, store.ErrLimit) {
		t.Errorf("SetFlags beyond the limit = %v, want ErrLimit", err)
	}
	if _, err := st.Deliver(ctx, alice, "", strings.NewReader(msg("two")), manyKeywords(store.MaxFlags+1), time.Time{}); !errors.Is(err, store.ErrLimit) {
		t.Errorf("Deliver with 1025 flags = %v, want ErrLimit", err)
	}
	if _, err := st.Copy(ctx, alice, "INBOX", []uint32{uid}, "Archive"); err != nil {
		t.Fatalf("Copy = %v", err)
	}
	long := strings.Repeat("m", store.MaxMailboxName+1)
	if err := st.CreateMailbox(ctx, alice, long, ""); !errors.Is(err, store.ErrLimit) || !errors.Is(err, store.ErrInvalidMailbox) {
		t.Errorf("CreateMailbox of a long name = %v, want ErrLimit and ErrInvalidMailbox", err)
	}
	if err := st.CreateMailbox(ctx, alice, strings.Repeat("m", store.MaxMailboxName-2), ""); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateMailbox(ctx, alice, strings.Repeat("m", store.MaxMailboxName-2)+"/a", ""); err != nil {
		t.Fatal(err)
	}
	if err := st.RenameMailbox(ctx, alice, strings.Repeat("m", store.MaxMailboxName-2), strings.Repeat("n", store.MaxMailboxName-1)); !errors.Is(err, store.ErrLimit) {
		t.Errorf("RenameMailbox making a child's name too long = %v, want ErrLimit", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openStore(t, dir)
	defer st.Close()
	if q := st.Quarantined(); len(q) != 0 {
		t.Errorf("Quarantined = %v", q)
	}
	for _, mbox := range []string{"INBOX", "Archive"} {
		_, msgs, err := st.Messages(ctx, alice, mbox)
		if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != store.MaxFlags {
			t.Fatalf("after reopening, %s: %d messages, %v", mbox, len(msgs), err)
		}
	}
}
