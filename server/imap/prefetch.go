package imap

import (
	"context"

	"github.com/mailctl/mailctl/server/store"
)

// Bodies read ahead by a FETCH on a store.BodyBatcher (pgstore), in
// batches of at most prefetchBodies messages and prefetchBytes bytes, of
// messages of at most batchBodyMax bytes each (larger ones are opened one
// by one by fetchOne). Smaller than a SEARCH's batches (bodyBatch): the
// first batch is waited for, and two batches are held at a time.
const (
	prefetchBodies = 256
	prefetchBytes  = 4 << 20
)

// bodyPrefetch reads the bodies of a FETCH's messages in batches on a
// goroutine of its own, one batch ahead of the session that writes them
// to the client: the database reads the next batch while the session
// writes the current one (a batch read, then written, then the next one
// read, left the database and the client each waiting on the other).
// At most two batches are held: the one being written and the one read
// ahead. The goroutine stops when the FETCH ends (close) or the session's
// context is cancelled (the client went away).
type bodyPrefetch struct {
	cancel context.CancelFunc
	next   chan prefetched // closed when the goroutine is done
	cur    prefetched
	done   bool // next is closed and drained
}

// prefetched is a batch of bodies: bodies[i-base] is that of items[i], or
// nil (not read ahead: opened by OpenBody).
type prefetched struct {
	base   int
	bodies []store.Body
}

// startPrefetch starts reading the bodies of items (not gone) with bb.
func startPrefetch(ctx context.Context, bb store.BodyBatcher, items []item) *bodyPrefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &bodyPrefetch{cancel: cancel, next: make(chan prefetched)}
	go p.run(ctx, bb, items)
	return p
}

func (p *bodyPrefetch) run(ctx context.Context, bb store.BodyBatcher, items []item) {
	defer close(p.next)
	var msgs []store.Message
	var idx []int
	for i := 0; i < len(items); {
		if ctx.Err() != nil {
			return
		}
		msgs, idx = msgs[:0], idx[:0]
		var total int64
		j := i
		for ; j < len(items) && len(msgs) < prefetchBodies; j++ {
			m := items[j].msg
			if items[j].gone || m.Size > batchBodyMax {
				continue
			}
			if total+m.Size > prefetchBytes && len(msgs) > 0 {
				break
			}
			total += m.Size
			msgs = append(msgs, *m)
			idx = append(idx, j-i)
		}
		batch := prefetched{base: i, bodies: make([]store.Body, j-i)}
		if len(msgs) > 0 {
			// On an error each message is opened by itself (fetchOne), as
			// without batches.
			if got, err := bb.OpenBodies(ctx, msgs); err == nil {
				for k, body := range got {
					batch.bodies[idx[k]] = body
				}
			}
		}
		select {
		case p.next <- batch:
		case <-ctx.Done():
			closeBodies(batch.bodies)
			return
		}
		i = j
	}
}

// body returns the body read ahead for items[i], or nil: none, to be
// opened by OpenBody. i ascends from call to call. The body stays open
// until a later item's is asked for or close is called.
func (p *bodyPrefetch) body(i int) store.Body {
	for !p.done && i-p.cur.base >= len(p.cur.bodies) {
		closeBodies(p.cur.bodies)
		b, ok := <-p.next
		if !ok {
			p.done = true
			p.cur = prefetched{}
			return nil
		}
		p.cur = b
	}
	if i < p.cur.base || i-p.cur.base >= len(p.cur.bodies) {
		return nil
	}
	return p.cur.bodies[i-p.cur.base]
}

// close stops the goroutine, waits for it to end, and closes the bodies
// read ahead.
func (p *bodyPrefetch) close() {
	p.cancel()
	closeBodies(p.cur.bodies)
	p.cur = prefetched{}
	for b := range p.next {
		closeBodies(b.bodies)
	}
	p.done = true
}

func closeBodies(bodies []store.Body) {
	for i, body := range bodies {
		if body != nil {
			body.Close()
			bodies[i] = nil
		}
	}
}
