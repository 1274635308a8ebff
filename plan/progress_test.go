package plan_test

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/plan"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProgress: a read still running after the first delay prints
// Terraform's "Still reading... [Ns elapsed]" lines, then stops when done;
// a quick one prints nothing.
func TestProgress(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	p := &plan.Progress{W: &buf, After: 30 * time.Millisecond, Every: 30 * time.Millisecond}
	done := p.Start("provider.cloudflare.main: Still reading zone example.org")
	time.Sleep(200 * time.Millisecond)
	done()
	got := buf.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	re := regexp.MustCompile(`^provider\.cloudflare\.main: Still reading zone example\.org\.\.\. \[\d+s elapsed\]$`)
	if len(lines) < 2 || !re.MatchString(lines[0]) {
		t.Fatalf("progress of a slow read:\n%s", got)
	}
	time.Sleep(100 * time.Millisecond)
	if buf.String() != got {
		t.Errorf("progress went on after done:\n%s", buf.String())
	}

	var quick lockedBuffer
	p = &plan.Progress{W: &quick}
	p.Start("provider.x.y: Still reading zone example.org")()
	var nilp *plan.Progress
	nilp.Start("nothing")()
	time.Sleep(50 * time.Millisecond)
	if quick.String() != "" {
		t.Errorf("a quick read printed %q", quick.String())
	}
}
