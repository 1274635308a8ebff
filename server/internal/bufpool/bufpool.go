// Package bufpool recycles the byte buffers that whole messages are read
// into (an SMTP DATA spool, a body kept in the store's index): one message
// per connection would otherwise make a buffer of garbage per message.
package bufpool

import (
	"io"
	"sync"
)

// Pool is a pool of buffers that starts them at a size and keeps those
// that did not grow beyond a bound.
type Pool struct {
	pool    sync.Pool
	maxKeep int
}

// New returns a pool of buffers of initial capacity that keeps buffers of
// up to maxKeep bytes of capacity.
func New(initial, maxKeep int) *Pool {
	p := &Pool{maxKeep: maxKeep}
	p.pool.New = func() any { b := make([]byte, 0, initial); return &b }
	return p
}

// Get returns an empty buffer.
func (p *Pool) Get() *[]byte { return p.pool.Get().(*[]byte) }

// Put gives bp back, unless it grew too large to keep.
func (p *Pool) Put(bp *[]byte) {
	if cap(*bp) > p.maxKeep {
		return
	}
	*bp = (*bp)[:0]
	p.pool.Put(bp)
}

// ReadUpTo reads r into a buffer of the pool until the end of r or until
// it holds more than max bytes: a buffer of at most max bytes holds all of
// r. The caller puts the buffer back once done with it; on an error it is
// back already.
func (p *Pool) ReadUpTo(r io.Reader, max int) (*[]byte, error) {
	bp := p.Get()
	buf := *bp
	for len(buf) <= max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), max+1)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = buf
			p.Put(bp)
			return nil, err
		}
	}
	*bp = buf
	return bp, nil
}
