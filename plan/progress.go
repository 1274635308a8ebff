package plan

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress tells the user about reads that take long, as Terraform does:
// a read still running After its start prints "<what>... [2s elapsed]",
// then again every Every. Lines go to W (stderr), whole, one at a time.
// A nil *Progress reports nothing.
type Progress struct {
	W io.Writer
	// After is the first report (default 2s), Every the period of the
	// next ones (default 10s).
	After, Every time.Duration
	// Lock, when set, is held while a line is written (for a writer
	// shared with other output); otherwise Progress has its own.
	Lock sync.Locker

	mu sync.Mutex
}

// Start reports what (e.g. "provider.cloudflare.main: Still reading zone
// example.org") while it runs; call done when it ends.
func (p *Progress) Start(what string) (done func()) {
	if p == nil || p.W == nil {
		return func() {}
	}
	after, every := p.After, p.Every
	if after <= 0 {
		after = 2 * time.Second
	}
	if every <= 0 {
		every = 10 * time.Second
	}
	start := time.Now()
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTimer(after)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var l sync.Locker = &p.mu
				if p.Lock != nil {
					l = p.Lock
				}
				l.Lock()
				fmt.Fprintf(p.W, "%s... [%s elapsed]\n", what, time.Since(start).Round(time.Second))
				l.Unlock()
				t.Reset(every)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-finished
		})
	}
}
