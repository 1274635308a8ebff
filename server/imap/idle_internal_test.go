package imap

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// internalUser is the user internalStore makes.
const internalUser = "alice@example.test"

// internalStore returns an embedded store in a temporary directory,
// closed when t ends, with internalUser.
func internalStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.EnsureUser(context.Background(), internalUser, 0); err != nil {
		t.Fatal(err)
	}
	return st
}

// readCounter counts full reads of a mailbox.
type readCounter struct {
	store.Backend
	full atomic.Int64
}

func (r *readCounter) MessagesByID(ctx context.Context, user string, id uint64) (store.Mailbox, []store.Message, error) {
	r.full.Add(1)
	return r.Backend.MessagesByID(ctx, user, id)
}

// TestIdleSnapshotBounds: a snapshot no session uses is kept for idleTTL
// and taken up again without a read; the kept ones are bounded in number
// (the oldest go first) and in messages (a mailbox beyond the bound is
// not kept), and none outlives Shutdown.
func TestIdleSnapshotBounds(t *testing.T) {
	ctx := context.Background()
	const user = internalUser
	st := internalStore(t)
	for i := range 5 {
		name := fmt.Sprint("Box", i)
		if err := st.CreateMailbox(ctx, user, name, ""); err != nil {
			t.Fatal(err)
		}
		for range i + 1 { // Box<i> has i+1 messages
			if _, err := st.Deliver(ctx, user, name, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rc := &readCounter{Backend: st}
	srv := New(rc, nil, Options{})
	defer srv.Shutdown(ctx)
	oldTTL, oldMax, oldMsgs := idleTTL, idleMaxMailboxes, idleMaxMessages
	t.Cleanup(func() { idleTTL, idleMaxMailboxes, idleMaxMessages = oldTTL, oldMax, oldMsgs })
	idleTTL, idleMaxMailboxes, idleMaxMessages = time.Minute, 3, 9

	use := func(name string) {
		t.Helper()
		mb, err := st.Mailbox(ctx, user, name)
		if err != nil {
			t.Fatal(err)
		}
		sm, err := srv.acquire(ctx, user, mb)
		if err != nil {
			t.Fatal(err)
		}
		srv.release(sm)
	}
	kept := func() (names []string, messages int) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for k := range srv.idle.entries {
			names = append(names, fmt.Sprint(k.id))
		}
		return names, srv.idle.messages
	}

	use("Box0")
	before := rc.full.Load()
	use("Box0")
	if n := rc.full.Load() - before; n != 0 {
		t.Errorf("SELECT of a kept snapshot: %d full reads, want 0", n)
	}
	for i := 1; i < 5; i++ {
		use(fmt.Sprint("Box", i))
		names, msgs := kept()
		if len(names) > idleMaxMailboxes || msgs > idleMaxMessages {
			t.Fatalf("after Box%d: %d snapshots kept, %d messages; bounds %d, %d", i, len(names), msgs, idleMaxMailboxes, idleMaxMessages)
		}
	}
	// Box4 (5 messages) and Box3 (4) fill the 9 messages; Box2 went to
	// make room, the oldest first.
	if names, msgs := kept(); len(names) != 2 || msgs != 9 {
		t.Errorf("kept %v, %d messages; want Box3 and Box4, 9", names, msgs)
	}
	idleMaxMessages = 4
	use("Box4") // 5 messages: no longer kept
	if names, msgs := kept(); len(names) != 1 || msgs != 4 {
		t.Errorf("after a mailbox beyond the bound: kept %v, %d messages; want Box3 alone, 4", names, msgs)
	}

	idleTTL, idleMaxMessages = 20*time.Millisecond, 9
	use("Box1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		names, msgs := kept()
		if len(names) == 1 && msgs == 4 { // Box1 expired, Box3 (kept for a minute) stays
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Box1 kept beyond its %s: %v, %d messages", idleTTL, names, msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Shutdown(ctx)
	if names, msgs := kept(); len(names) != 0 || msgs != 0 {
		t.Errorf("after Shutdown: kept %v, %d messages", names, msgs)
	}
}

// changeReader makes the embedded store a store.ChangeReader, from a full
// read and its expunge records.
type changeReader struct {
	readCounter
}

func (c *changeReader) ChangesSince(ctx context.Context, user string, id, modseq uint64) (store.Mailbox, []store.Message, [][2]uint32, bool, error) {
	mb, msgs, err := c.Backend.MessagesByID(ctx, user, id)
	if err != nil {
		return store.Mailbox{}, nil, nil, false, err
	}
	vanished, complete, err := c.Backend.Vanished(ctx, user, id, modseq)
	if err != nil {
		return store.Mailbox{}, nil, nil, false, err
	}
	var changed []store.Message
	for _, m := range msgs {
		if m.ModSeq > modseq {
			changed = append(changed, m)
		}
	}
	return mb, changed, vanished, complete, nil
}

// TestIdleSnapshotChangedMeanwhile: a change committed after SELECT read
// the mailbox's record but before it took up the kept snapshot (its
// notification found no session to wake) is in the snapshot SELECT gets,
// with a ChangeReader store (read again) and without (read afresh).
func TestIdleSnapshotChangedMeanwhile(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(fmt.Sprint("incremental=", incremental), func(t *testing.T) {
			ctx := context.Background()
			const user = internalUser
			st := internalStore(t)
			deliver := func() {
				t.Helper()
				if _, err := st.Deliver(ctx, user, "", strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil, time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			deliver()
			var backend store.Backend = &readCounter{Backend: st}
			if incremental {
				backend = &changeReader{readCounter{Backend: st}}
			}
			srv := New(backend, nil, Options{})
			defer srv.Shutdown(ctx)
			mb, err := st.Mailbox(ctx, user, store.Inbox)
			if err != nil {
				t.Fatal(err)
			}
			sm, err := srv.acquire(ctx, user, mb)
			if err != nil {
				t.Fatal(err)
			}
			srv.release(sm)                                // kept
			cur, err := st.Mailbox(ctx, user, store.Inbox) // SELECT reads the record,
			if err != nil {
				t.Fatal(err)
			}
			deliver()                             // then a message comes,
			sm, err = srv.acquire(ctx, user, cur) // then SELECT takes the snapshot up
			if err != nil {
				t.Fatal(err)
			}
			defer srv.release(sm)
			if err := sm.syncWith(ctx, &cur); err != nil {
				t.Fatal(err)
			}
			sm.mu.Lock()
			n := len(sm.msgs)
			sm.mu.Unlock()
			if n != 2 {
				t.Errorf("snapshot after a delivery made while it was kept: %d messages, want 2", n)
			}
		})
	}
}
