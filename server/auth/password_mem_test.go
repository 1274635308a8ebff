package auth

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// releaseRecorder replaces memRelease.free for a test, recording when it
// runs; it first waits for a release scheduled earlier to pass.
type releaseRecorder struct {
	mu    sync.Mutex
	calls []time.Time
	ch    chan struct{}
}

func recordReleases(t *testing.T, interval time.Duration, free func()) *releaseRecorder {
	t.Helper()
	rec := &releaseRecorder{ch: make(chan struct{}, 100)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		memRelease.mu.Lock()
		if !memRelease.pending {
			break
		}
		memRelease.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("a release scheduled before the test did not run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	oldInterval, oldFree := memRelease.interval, memRelease.free
	memRelease.interval, memRelease.last = interval, time.Time{}
	memRelease.free = func() {
		rec.mu.Lock()
		rec.calls = append(rec.calls, time.Now())
		rec.mu.Unlock()
		if free != nil {
			free()
		}
		rec.ch <- struct{}{}
	}
	memRelease.mu.Unlock()
	t.Cleanup(func() {
		memRelease.mu.Lock()
		memRelease.interval, memRelease.free = oldInterval, oldFree
		memRelease.mu.Unlock()
	})
	return rec
}

func (r *releaseRecorder) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls...)
}

func (r *releaseRecorder) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no memory release within 5s", what)
	}
}

func mustHash(t *testing.T, p Params) string {
	t.Helper()
	h, err := HashPassword("correct horse", p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func verify(t *testing.T, h string) {
	t.Helper()
	if ok, err := VerifyPassword(h, "correct horse"); !ok || err != nil {
		t.Fatalf("VerifyPassword = %v, %v; want true, nil", ok, err)
	}
}

// TestReleaseMemoryRateLimited: a verification with a large argon2 memory
// is followed by one release at once; the verifications that follow within
// the interval share one release at the end of the interval; small
// parameters release nothing.
func TestReleaseMemoryRateLimited(t *testing.T) {
	const interval = 300 * time.Millisecond
	small := mustHash(t, Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	large := mustHash(t, Params{Memory: releaseMinMemory, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	rec := recordReleases(t, interval, nil)

	verify(t, small)
	verify(t, small)
	time.Sleep(interval)
	if n := len(rec.times()); n != 0 {
		t.Fatalf("%d releases after small verifications, want 0", n)
	}

	verify(t, large)
	rec.wait(t, "first large verification")
	start := time.Now()
	for range 3 {
		verify(t, large)
	}
	took := time.Since(start)
	rec.wait(t, "three more verifications")
	time.Sleep(2 * interval)
	calls := rec.times()
	// One release at once, then one per interval that saw verifications:
	// one when the three fit in an interval (a loaded machine may take
	// longer over them).
	if most := 2 + int(took/interval); len(calls) < 2 || len(calls) > most {
		t.Fatalf("%d releases after 4 large verifications (the last three in %v), want 2 to %d", len(calls), took, most)
	}
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < interval-10*time.Millisecond {
			t.Errorf("releases %d and %d %v apart, want at least %v", i, i+1, gap, interval)
		}
	}
}

// TestReleaseMemoryRSS logs the resident memory around one login with
// DefaultParams (64 MiB): before, after the verification (when the release
// starts) and after the release (debug.FreeOSMemory). It asserts only that
// the release ran. Run with -v to read the figures.
func TestReleaseMemoryRSS(t *testing.T) {
	h := mustHash(t, DefaultParams)
	var kept int
	rec := recordReleases(t, time.Second, func() {
		kept = vmRSS()
		debug.FreeOSMemory()
	})
	debug.FreeOSMemory()
	before := vmRSS()
	verify(t, h)
	rec.wait(t, "login with DefaultParams")
	after := vmRSS()
	t.Logf("VmRSS: before the login %d KiB, after it %d KiB, after the release %d KiB", before, kept, after)
}

// vmRSS returns this process's resident set size in KiB, 0 if unknown.
func vmRSS() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}
