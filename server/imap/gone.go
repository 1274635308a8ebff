package imap

import (
	"context"
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
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(goneEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if probe() {
					c.logger.Info("imap client went away during a command: cancelled", "remote", c.RemoteAddr().String())
					cancel()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
