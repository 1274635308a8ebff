package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/queue"
)

// TestErrorLog: error records are kept with the attributes of With and
// groups, the rest only passed on; the newest maxLastErrors are kept.
func TestErrorLog(t *testing.T) {
	var out bytes.Buffer
	next := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	el := &errorLog{}
	log := el.wrap(next)

	log.Info("hidden")
	log.Warn("a warning", "n", 1)
	log.With("component", "queue").WithGroup("msg").Error("delivery failed", "id", "q1", slog.Group("rcpt", "domain", "example.com"))
	recs := el.records()
	if len(recs) != 1 {
		t.Fatalf("records = %+v, want the one error", recs)
	}
	r := recs[0]
	if r.Message != "delivery failed" || r.Level != "ERROR" || r.Attrs != `component="queue" msg.id="q1" msg.rcpt.domain="example.com"` || r.Time.IsZero() {
		t.Errorf("record = %+v", r)
	}
	if s := out.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "a warning") || !strings.Contains(s, `"msg":"delivery failed"`) {
		t.Errorf("the wrapped handler got:\n%s", s)
	}
	// An error is kept even when the wrapped handler logs nothing.
	quiet := (&errorLog{})
	ql := quiet.wrap(slog.New(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.Level(100)})))
	ql.Error("kept")
	if recs := quiet.records(); len(recs) != 1 || recs[0].Message != "kept" {
		t.Errorf("records behind a silent handler = %+v", recs)
	}

	// Concurrent loggers: the newest maxLastErrors are kept, in order
	// per goroutine.
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	el = &errorLog{}
	log = el.wrap(slog.New(slog.DiscardHandler))
	workers, per := 2+rng.IntN(6), 10+rng.IntN(50)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				log.Error("e", "w", w, "i", i)
			}
		}()
	}
	wg.Wait()
	recs = el.records()
	if len(recs) != maxLastErrors {
		t.Fatalf("seed %d: %d records kept, want %d", seed, len(recs), maxLastErrors)
	}
	last := map[string]int{}
	for _, r := range recs {
		var w, i int
		if _, err := fmt.Sscanf(r.Attrs, "w=%q i=%q", new(string), new(string)); err != nil {
			t.Fatalf("seed %d: attrs %q", seed, r.Attrs)
		}
		fmt.Sscanf(strings.NewReplacer(`"`, "").Replace(r.Attrs), "w=%d i=%d", &w, &i)
		k := fmt.Sprint(w)
		if p, ok := last[k]; ok && i <= p {
			t.Errorf("seed %d: worker %d record %d after %d", seed, w, i, p)
		}
		last[k] = i
	}
	found := false
	for _, r := range recs {
		found = found || strings.HasSuffix(r.Attrs, fmt.Sprintf("i=\"%d\"", per-1))
	}
	if !found {
		t.Errorf("seed %d: no worker's last record among the kept ones: %+v", seed, recs)
	}
}

func TestQueueStatus(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	long := "example.org: " + strings.Repeat("x", 300)
	var msgs []queue.Message
	add := func(n int, reason string, age time.Duration) {
		for range n {
			msgs = append(msgs, queue.Message{Created: t0.Add(-age), LastError: reason})
		}
	}
	add(1, "", time.Minute)
	add(3, "a: 451 greylisted", time.Hour)
	add(2, long, 2*time.Hour)
	add(2, "b: timeout", 3*time.Hour)
	add(1, "c", 5*time.Hour)
	add(1, "d", time.Minute)
	add(1, "e", time.Minute)
	q := queueStatus(msgs)
	if q.Messages != 11 || q.Oldest == nil || !q.Oldest.Equal(t0.Add(-5*time.Hour)) {
		t.Errorf("queue = %d messages, oldest %v", q.Messages, q.Oldest)
	}
	var got []string
	for _, d := range q.Deferrals {
		got = append(got, fmt.Sprintf("%d %.20s", d.Messages, d.Reason))
	}
	want := "3 a: 451 greylisted,2 b: timeout,2 example.org: xxxxxxx,1 c,1 d"
	if strings.Join(got, ",") != want {
		t.Errorf("deferrals = %s, want %s", strings.Join(got, ","), want)
	}
	for _, d := range q.Deferrals {
		if len(d.Reason) > maxReasonLen+3 {
			t.Errorf("reason of %d bytes kept", len(d.Reason))
		}
	}
	if e := queueStatus(nil); e.Messages != 0 || e.Oldest != nil || e.Deferrals == nil {
		t.Errorf("empty queue = %+v", e)
	}
}
