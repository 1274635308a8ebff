package imap

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// gatedRecords counts MailboxByID calls; the first waits for gate.
type gatedRecords struct {
	store.Backend
	calls   atomic.Int64
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedRecords) MailboxByID(ctx context.Context, user string, id uint64) (store.Mailbox, error) {
	if g.calls.Add(1) == 1 {
		close(g.entered)
		<-g.gate
	}
	return g.Backend.MailboxByID(ctx, user, id)
}

// TestSyncsShareARead: syncs called while another one reads the store
// wait for it; those called before the next read begins are answered by
// that read: three syncs, two reads of the mailbox record (three before),
// and the snapshot has the message delivered before they were called.
func TestSyncsShareARead(t *testing.T) {
	ctx := context.Background()
	const user = internalUser
	st := internalStore(t)
	mb, err := st.Mailbox(ctx, user, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedRecords{Backend: st, entered: make(chan struct{}), gate: make(chan struct{})}
	sm, err := newSharedMailbox(ctx, g, mailboxKey{user, mb.ID})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	syncOne := func() {
		defer wg.Done()
		errs <- sm.sync(ctx)
	}
	wg.Add(1)
	go syncOne() // reads, and waits at the gate
	<-g.entered
	if _, err := st.Deliver(ctx, user, "", strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wg.Add(2)
	go syncOne()
	go syncOne()
	deadline := time.Now().Add(10 * time.Second)
	for sm.syncs.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the syncs were never called")
		}
		time.Sleep(time.Millisecond)
	}
	close(g.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := g.calls.Load(); n != 2 {
		t.Errorf("3 syncs read the mailbox record %d times, want 2", n)
	}
	sm.mu.Lock()
	n := len(sm.msgs)
	sm.mu.Unlock()
	if n != 1 {
		t.Errorf("snapshot after the syncs: %d messages, want the 1 delivered before them", n)
	}
}
