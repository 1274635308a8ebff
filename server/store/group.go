package store

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit runs index updates of concurrent deliveries in shared
// transactions, one commit (and its fsyncs) for all, like bbolt's Batch but
// without its timer: a delivery that finds no commit running starts one at
// once with whatever is pending; those that arrive meanwhile go together
// into the next. bbolt's Batch waits MaxBatchDelay before every commit,
// which set the pace of deliveries that all wait for the same commit.
type groupCommit struct {
	db *bolt.DB

	mu      sync.Mutex
	cond    *sync.Cond // on mu: a commit ended
	pending []*groupCall
	running bool
}

func newGroupCommit(db *bolt.DB) *groupCommit {
	g := &groupCommit{db: db}
	g.cond = sync.NewCond(&g.mu)
	return g
}

type groupCall struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan struct{}
}

// maxGroup bounds the updates of one transaction.
const maxGroup = 256

// errGroupCallFailed rolls back a shared transaction when one of its
// updates fails; the others are then run again without it.
var errGroupCallFailed = errors.New("store: an update of the group failed")

// update runs fn in a writable transaction, perhaps shared with other
// calls, and returns once it is committed. As with bbolt's Batch, fn may
// run more than once and must only depend on the transaction; a failing fn
// makes only its own call fail.
//
// The caller that finds no commit running leads one, with what is pending
// (its own call first among them), then returns; a waiting caller whose
// call was not in it leads the next.
func (g *groupCommit) update(fn func(*bolt.Tx) error) error {
	c := &groupCall{fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending = append(g.pending, c)
	for {
		select {
		case <-c.done:
			return c.err
		default:
		}
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		n := min(len(g.pending), maxGroup)
		calls := g.pending[:n:n]
		g.pending = append([]*groupCall(nil), g.pending[n:]...)
		g.mu.Unlock()
		g.run(calls)
		g.mu.Lock()
		g.running = false
		g.cond.Broadcast()
	}
}

// run commits calls together, dropping each one that fails (with its
// error) and running the others again.
func (g *groupCommit) run(calls []*groupCall) {
	for len(calls) > 0 {
		failed := -1
		var ferr error
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := c.fn(tx); err != nil {
					failed, ferr = i, err
					return errGroupCallFailed
				}
			}
			return nil
		})
		if failed >= 0 {
			c := calls[failed]
			c.err = ferr
			close(c.done)
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			continue
		}
		for _, c := range calls {
			c.err = err // the commit's own failure, if any, fails them all
			close(c.done)
		}
		return
	}
}
