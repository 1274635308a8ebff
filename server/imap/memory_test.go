package imap_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fillInbox delivers n small messages with distinct subjects to alice's
// INBOX, 8 at a time.
func fillInbox(t testing.TB, env *testEnv, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(mail(fmt.Sprintf("memory message %d", i))), nil, time.Time{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// allocatedBy returns the bytes the process allocated while f ran (the
// server's side and the test client's, which reads the answer with a
// reused buffer). Best of three runs: a collection or another goroutine
// may add to one.
func allocatedBy(f func()) uint64 {
	best := ^uint64(0)
	for range 3 {
		runtime.GC()
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		best = min(best, b.TotalAlloc-a.TotalAlloc)
	}
	return best
}

// TestFetchAllocationsPerMessage guards the memory an IMAP session takes
// for FETCH 1:* of a big mailbox (issue 13): with 4 clients on 10 000
// messages, the copies of every message a FETCH made (its item list
// twice, each item with its own copy of the message, about 250 bytes a
// message) were a third of the server's live heap. What a FETCH of the
// common items allocates now is its answer buffer, 16 bytes an item and
// per 1000 messages their UIDs; the bound leaves room for that and for
// the library's command parsing, not for a copy of every message.
func TestFetchAllocationsPerMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("delivers 3000 messages")
	}
	if raceBuild {
		t.Skip("allocations are counted without the race detector")
	}
	env := newEnv(t, 0)
	const n = 3000
	fillInbox(t, env, n)
	bc := dialBench(t, env)
	for _, cmd := range []string{
		"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)",
		"UID FETCH 1:* (UID FLAGS)",
	} {
		bc.run(t, cmd) // the first one may warm caches up
		var lines int
		alloc := allocatedBy(func() { _, lines = bc.run(t, cmd) })
		if lines < n {
			t.Fatalf("%s: %d lines, want %d", cmd, lines, n+1)
		}
		perMsg := float64(alloc) / n
		t.Logf("%s: %d bytes allocated, %.1f a message", cmd, alloc, perMsg)
		if perMsg > 64 {
			t.Errorf("%s allocated %.1f bytes a message (%d for %d), want <= 64", cmd, perMsg, alloc, n)
		}
	}
}
