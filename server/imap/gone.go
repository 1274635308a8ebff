package imap

import (
	"context"
	"sync"
	"time"
)

// Cancelling the commands of a client that went away. The library runs a
// command on the goroutine that reads the next one, so a FETCH or SEARCH
// over many messages went on to its end after the client had hung up
// (issue 17: minutes of CPU). While such a command runs, watchGone looks
// at the connection every goneEvery and cancels the session's context
// once the client has closed or reset it and everything it sent has been
// read: the command then stops at its next check of the context. A client
// that sent more commands before closing has them all answered, as
// before (the watch is not started while input is pending).
const goneEvery = 100 * time.Millisecond

// watchGone starts watching for the client going away during a command,
// calling cancel if it does; the returned function stops the watch. It
// must be called from the goroutine that reads commands.
func (c *conn) watchGone(cancel context.CancelFunc) (stop func()) {
	if c.br.Buffered() > 0 || len(c.pending) > 0 || c.literal > 0 {
		return func() {}
	}
	probe := c.goneProbe()
	if probe == nil {
		return func() {}
	}
	// A timer rather than a goroutine: most commands end before it fires.
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(goneEvery, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if probe() {
			c.logger.Info("imap client went away during a command: cancelled", "remote", c.RemoteAddr().String())
			cancel()
			return
		}
		t.Reset(goneEvery)
	})
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		t.Stop()
	}
}
