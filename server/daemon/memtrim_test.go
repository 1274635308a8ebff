package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
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
//
// The trimmer acts only when the process is quiet and the test measures
// the whole process, so it runs alone in a child process: in the package's
// test binary other tests' servers use the CPU and hold memory.
func TestTrimMemoryAfterBurst(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("resident size from /proc")
	}
	if raceBuild {
		t.Skip("under -race the detector's shadow of the burst stays resident")
	}
	if os.Getenv("MAILCTL_MEMTRIM_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTrimMemoryAfterBurst$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "MAILCTL_MEMTRIM_CHILD=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil {
			t.Fatalf("the trim test in a process of its own: %v", err)
		}
		return
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
