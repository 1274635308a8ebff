package daemon

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/procmem"
)

var sink []byte

// TestTrimMemoryAfterBurst: once a burst's garbage is collectable, the
// process's resident size falls back within a few checks, where the Go
// runtime alone keeps freed heap resident for minutes (issue 13: the IMAP
// run after an ingest started from 30-40 MiB instead of 12).
func TestTrimMemoryAfterBurst(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("resident size from /proc")
	}
	runtime.GC()
	before, err := procmem.Resident()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go trimMemory(ctx, slog.New(slog.DiscardHandler), 20*time.Millisecond, 8<<20)
	// A burst: 64 MiB of heap written to, then garbage.
	const burst = 64 << 20
	sink = make([]byte, burst)
	for i := 0; i < len(sink); i += 4096 {
		sink[i] = 1
	}
	peak, _ := procmem.Resident()
	sink = nil
	if peak-before < burst/2 {
		t.Skipf("the burst did not show in the resident size (%d -> %d)", before, peak)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, _ := procmem.Resident()
		if now-before < burst/4 {
			t.Logf("resident %d MiB before the burst, %d at its peak, %d after", before>>20, peak>>20, now>>20)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("resident %d MiB before the burst, %d at its peak, still %d 5 s after", before>>20, peak>>20, now>>20)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
