package migrate

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress shows per-user progress: on a terminal one bar per user,
// redrawn in place; otherwise plain lines when a folder starts and ends and
// every few seconds.
type progress struct {
	w     io.Writer
	term  bool
	mu    sync.Mutex
	users []*userProgress
	lines int // lines drawn by the last redraw (terminal)
}

type userProgress struct {
	p         *progress
	name      string
	folder    string
	done      int
	total     int
	bytes     int64
	note      string
	state     string // "", "done", "failed"
	lastPlain time.Time
}

func newProgress(w io.Writer, term bool, jobs []Job) *progress {
	p := &progress{w: w, term: term}
	for _, j := range jobs {
		p.users = append(p.users, &userProgress{p: p, name: j.User})
	}
	return p
}

func (p *progress) user(i int) *userProgress { return p.users[i] }

// start begins redrawing (terminal); the returned function stops it after
// a last redraw.
func (p *progress) start() func() {
	if p.w == nil || !p.term {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.redraw()
			case <-stop:
				p.redraw()
				return
			}
		}
	}()
	return func() { close(stop); <-done }
}

func (p *progress) redraw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines)
	}
	for _, u := range p.users {
		b.WriteString("\r\x1b[2K")
		b.WriteString(u.barLocked())
		b.WriteByte('\n')
	}
	p.lines = len(p.users)
	io.WriteString(p.w, b.String())
}

func (u *userProgress) barLocked() string {
	const width = 24
	fill := 0
	if u.total > 0 {
		fill = min(width, u.done*width/u.total)
	}
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	s := fmt.Sprintf("%s [%s] %s %d/%d, %s", u.name, bar, u.folder, u.done, u.total, formatBytes(u.bytes))
	switch {
	case u.state != "":
		s = fmt.Sprintf("%s: %s, %s copied", u.name, u.state, formatBytes(u.bytes))
	case u.folder == "":
		s = u.name + ": connecting"
	}
	if u.note != "" {
		s += " (" + u.note + ")"
	}
	return s
}

func (u *userProgress) plainLocked() {
	if u.p.w == nil || u.p.term {
		return
	}
	u.lastPlain = time.Now()
	fmt.Fprintf(u.p.w, "%s: %s %d/%d messages, %s\n", u.name, u.folder, u.done, u.total, formatBytes(u.bytes))
}

func (u *userProgress) startFolder(name string, total int) {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	if u.folder != "" && u.done < u.total {
		u.plainLocked()
	}
	u.folder, u.done, u.total, u.note = name, 0, total, ""
	u.plainLocked()
}

func (u *userProgress) advance(n int, bytes int64) {
	if n == 0 && bytes == 0 {
		return
	}
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	u.done += n
	u.bytes += bytes
	u.note = ""
	if u.done == u.total || time.Since(u.lastPlain) > 5*time.Second {
		u.plainLocked()
	}
}

func (u *userProgress) setNote(s string) {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	u.note = s
	if u.p.w != nil && !u.p.term {
		fmt.Fprintf(u.p.w, "%s: %s\n", u.name, s)
	}
}

func (u *userProgress) finish(err error) {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	u.state, u.note = "done", ""
	if err != nil {
		u.state, u.note = "failed", errorsText(err)
	}
}
