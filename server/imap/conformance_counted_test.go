package imap_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// TestConformanceCountedFlags runs the concurrent conformance sessions of
// TestConformanceSessions (two servers on one store) on a store that
// answers flag writes with a count (store.FlagWriteCounter), as pgstore
// does: the servers work the STOREs' results out on their snapshots. Every
// third count is off by one, so that the sessions also take the way of a
// count that does not match (they read the store instead).
func TestConformanceCountedFlags(t *testing.T) {
	seed := conformanceSeedFor(t)
	confRAMDisk(t)
	env := newEnv(t, 0)
	st := &countingStore{Store: env.st, lieEvery: 3}
	a := servePlain(t, st, env.auth)
	b := servePlain(t, st, env.auth)
	runConformance(t, confNodes{addrs: []string{a, b}, st: st, commands: 3000}, seed)
	truthful, lies := st.truthful.Load(), st.lies.Load()
	t.Logf("SetFlagsCount: %d true counts, %d off by one", truthful, lies)
	if truthful == 0 || lies == 0 {
		t.Errorf("SetFlagsCount called %d times with a true count and %d with a wrong one; want both", truthful, lies)
	}
}

// countingStore is the embedded store with SetFlagsCount. Its writes take
// turns (mu), so that the HIGHESTMODSEQ read before and after a flag
// write are those the write started from and made.
type countingStore struct {
	*store.Store
	mu       sync.Mutex
	lieEvery int64
	calls    atomic.Int64
	truthful atomic.Int64
	lies     atomic.Int64
}

var _ store.FlagWriteCounter = (*countingStore)(nil)

func (c *countingStore) SetFlagsCount(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string) (int, uint64, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mb, err := c.Store.Mailbox(ctx, user, mailbox)
	if err != nil {
		return 0, 0, 0, err
	}
	out, err := c.Store.SetFlags(ctx, user, mailbox, uids, op, flags)
	if err != nil {
		return 0, 0, 0, err
	}
	n := 0
	for _, m := range out {
		if m.ModSeq > mb.ModSeq {
			n++
		}
	}
	after := mb.ModSeq
	if n > 0 {
		after++
	}
	if c.calls.Add(1)%c.lieEvery == 0 {
		c.lies.Add(1)
		return n + 1, mb.ModSeq, after, nil
	}
	c.truthful.Add(1)
	return n, mb.ModSeq, after, nil
}

func (c *countingStore) SetFlags(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string) ([]store.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.SetFlags(ctx, user, mailbox, uids, op, flags)
}

func (c *countingStore) SetFlagsUnchangedSince(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string, since uint64) ([]store.Message, []uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.SetFlagsUnchangedSince(ctx, user, mailbox, uids, op, flags, since)
}

func (c *countingStore) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.Deliver(ctx, user, mailbox, body, flags, date)
}

func (c *countingStore) Append(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.Append(ctx, user, mailbox, body, flags, date)
}

func (c *countingStore) Expunge(ctx context.Context, user, mailbox string, uids []uint32) ([]uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.Expunge(ctx, user, mailbox, uids)
}

func (c *countingStore) Copy(ctx context.Context, user, src string, uids []uint32, dst string) (store.CopyResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.Copy(ctx, user, src, uids, dst)
}

func (c *countingStore) Move(ctx context.Context, user, src string, uids []uint32, dst string) (store.CopyResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.Move(ctx, user, src, uids, dst)
}

func (c *countingStore) CreateMailbox(ctx context.Context, user, name, specialUse string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.CreateMailbox(ctx, user, name, specialUse)
}

func (c *countingStore) DeleteMailbox(ctx context.Context, user, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.DeleteMailbox(ctx, user, name)
}

func (c *countingStore) RenameMailbox(ctx context.Context, user, oldName, newName string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Store.RenameMailbox(ctx, user, oldName, newName)
}
