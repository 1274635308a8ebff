package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestMessagesFlagsShareOneAllocation: the list of a mailbox's messages
// takes the flags of many from one allocation, each message's as a slice
// whose capacity is its length (an append to one copies and leaves the
// next alone), and the system flags are the package's constants (issue
// 13: every session's snapshot of a 10 000-message mailbox allocated a
// slice and a string per flag of every message).
func TestMessagesFlagsShareOneAllocation(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, "u", 0); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var uids []uint32
	for i := 0; i < n; i++ {
		uid, err := st.Deliver(ctx, "u", "", strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	if _, err := st.SetFlags(ctx, "u", "INBOX", uids, FlagsAdd, []string{FlagSeen, "$Work"}); err != nil {
		t.Fatal(err)
	}
	_, msgs, err := st.Messages(ctx, "u", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("%d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if !slices.Equal(m.Flags, []string{"$Work", FlagSeen}) && !slices.Equal(m.Flags, []string{FlagSeen, "$Work"}) {
			t.Fatalf("message %d: flags %q", i, m.Flags)
		}
		if cap(m.Flags) != len(m.Flags) {
			t.Errorf("message %d: flags cap %d, len %d", i, cap(m.Flags), len(m.Flags))
		}
		for _, f := range m.Flags {
			if f == FlagSeen && unsafe.StringData(f) != unsafe.StringData(FlagSeen) {
				t.Errorf("message %d: \\Seen is a copy", i)
			}
		}
	}
	if unsafe.Pointer(&msgs[1].Flags[0]) != unsafe.Add(unsafe.Pointer(&msgs[0].Flags[0]), 2*unsafe.Sizeof("")) {
		t.Errorf("the flags of messages 1 and 2 are not in one allocation")
	}
	// Adjacent in one allocation: an append to one must copy.
	grown := append(msgs[0].Flags, "$x")
	if msgs[1].Flags[0] == "$x" {
		t.Fatalf("an append to message 1's flags changed message 2's: %q", grown)
	}
}
