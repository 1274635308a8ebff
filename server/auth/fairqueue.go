package auth

import (
	"context"
	"sync"
)

// fairQueue hands out a fixed number of slots for argon2id verifications,
// first come first served within one client key and round robin across
// client keys: an address with a hundred attempts queued gets one slot in
// turn with an address that has one, so it cannot starve the others.
// (golang.org/x/sync/semaphore is FIFO across all waiters, which is
// exactly what lets one source starve the rest.)
type fairQueue struct {
	mu     sync.Mutex
	free   int
	queues map[string][]*ticket // client key -> waiting tickets, oldest first
	ring   []string             // client keys with waiting tickets, next served first
}

type ticket struct {
	ready   chan struct{}
	granted bool
}

func newFairQueue(slots int) *fairQueue {
	return &fairQueue{free: slots, queues: map[string][]*ticket{}}
}

// acquire waits for a slot for a verification on behalf of key. On
// success the caller must call release once done.
func (q *fairQueue) acquire(ctx context.Context, key string) error {
	q.mu.Lock()
	if q.free > 0 && len(q.ring) == 0 {
		q.free--
		q.mu.Unlock()
		return nil
	}
	t := &ticket{ready: make(chan struct{})}
	if len(q.queues[key]) == 0 {
		q.ring = append(q.ring, key)
	}
	q.queues[key] = append(q.queues[key], t)
	q.mu.Unlock()
	select {
	case <-t.ready:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	if t.granted { // granted while giving up: pass the slot on
		q.free++
		q.dispatch()
		q.mu.Unlock()
		return ctx.Err()
	}
	ts := q.queues[key]
	for i := range ts {
		if ts[i] == t {
			ts = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(q.queues, key)
		for i, k := range q.ring {
			if k == key {
				q.ring = append(q.ring[:i:i], q.ring[i+1:]...)
				break
			}
		}
	} else {
		q.queues[key] = ts
	}
	q.mu.Unlock()
	return ctx.Err()
}

func (q *fairQueue) release() {
	q.mu.Lock()
	q.free++
	q.dispatch()
	q.mu.Unlock()
}

// dispatch grants free slots to the heads of the queues in ring order;
// q.mu is held.
func (q *fairQueue) dispatch() {
	for q.free > 0 && len(q.ring) > 0 {
		key := q.ring[0]
		q.ring = q.ring[1:]
		ts := q.queues[key]
		t := ts[0]
		if len(ts) > 1 {
			q.queues[key] = ts[1:]
			q.ring = append(q.ring, key)
		} else {
			delete(q.queues, key)
		}
		t.granted = true
		q.free--
		close(t.ready)
	}
}
