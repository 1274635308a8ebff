package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestBackupWatchStalls: a transfer that stops moving bytes is ended with
// an error saying for how long nothing came, after progress lines while
// bytes moved.
func TestBackupWatchStalls(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = time.Second
	e, out, _ := testEnv(t.TempDir())
	w := newWatch(context.Background(), e, "server.x", "received", 2*time.Second)
	dst := w.writer(io.Discard)
	// Bytes for 2.5 seconds, then nothing.
	for range 10 {
		dst.Write(make([]byte, 1<<20))
		time.Sleep(250 * time.Millisecond)
	}
	start := time.Now()
	select {
	case <-w.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled transfer was not ended")
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("ended %s after the last byte, want about 2s", d)
	}
	w.stop()
	err := w.err(w.ctx.Err())
	if got := err.Error(); !strings.Contains(got, "nothing received for 2s (after 10.0 MiB)") {
		t.Errorf("error %q", got)
	}
	if got := out.String(); !strings.Contains(got, "server.x: ") || !strings.Contains(got, "MiB received (") {
		t.Errorf("no progress line:\n%s", got)
	}
}

// TestBackupWatchDeadline: a step that moves no bytes (unpacking on the
// server) is bounded by its deadline, and a watch stopped in time is no
// error.
func TestBackupWatchDeadline(t *testing.T) {
	e, _, _ := testEnv(t.TempDir())
	w := newWatch(context.Background(), e, "server.x", "sent", time.Hour)
	w.expect(1500*time.Millisecond, "the restore on the server")
	<-w.ctx.Done()
	if got := w.err(w.ctx.Err()).Error(); got != "stalled: the restore on the server took longer than 1.5s" {
		t.Errorf("error %q", got)
	}
	w.stop()

	w = newWatch(context.Background(), e, "server.x", "sent", time.Hour)
	w.stop()
	if err := w.err(nil); err != nil {
		t.Errorf("stopped watch: %v", err)
	}
}
