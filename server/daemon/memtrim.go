package daemon

import (
	"context"
	"log/slog"
	"syscall"
	"time"

	"github.com/mailctl/mailctl/server/procmem"
)

// After a burst of work (an ingest of thousands of messages, a client
// reading a whole mailbox) the process keeps what the burst touched: the
// Go runtime returns free heap to the kernel only slowly, and the pages of
// the executable that ran (SMTP, inbound checks, IMAP) stay mapped. The
// IMAP run of bench/run.sh that follows an ingest started from 30-40 MiB
// of PSS where a fresh server starts from 12 (issue 13). trimMemory
// checks the resident size every trimEvery and, once the burst is over (the
// process used less than trimQuiet of a core since the last check) while
// the resident size is more than trimGrowth above the least it has been,
// does what start-up does once
// (procmem.ReleaseStartup): a collection that returns the free heap, and
// the executable's read-only pages unmapped (they stay in the page cache;
// those in use are mapped back at their next access). Nothing is done
// while the load lasts: a forced collection and the free heap returned
// every 10 s would cost the work under way its time.
const (
	trimEvery  = 10 * time.Second
	trimGrowth = 8 << 20
	trimQuiet  = 0.05
)

// cpuTime returns the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func trimMemory(ctx context.Context, log *slog.Logger, every time.Duration, growth int64) {
	floor, err := procmem.Resident()
	if err != nil {
		log.Debug("memory trim off", "err", err)
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	cpu := cpuTime()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := cpuTime()
		busy := float64(now-cpu) > trimQuiet*float64(every)
		cpu = now
		rss, err := procmem.Resident()
		if err != nil {
			continue
		}
		floor = min(floor, rss)
		if busy || rss-floor < growth {
			continue
		}
		start := time.Now()
		if _, err := procmem.ReleaseStartup(); err != nil {
			log.Debug("memory trim", "err", err)
		}
		after, err := procmem.Resident()
		if err != nil {
			continue
		}
		floor = min(floor, after)
		log.Debug("memory trimmed", "resident_before", rss, "resident_after", after, "took", time.Since(start))
		cpu = cpuTime() // the trim's own work is not load
	}
}
