package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/mailctl/mailctl/server/procmem"
)

// After a burst of work (an ingest of thousands of messages, a client
// reading a whole mailbox) the process keeps what the burst touched: the
// Go runtime returns free heap to the kernel only slowly, and the pages of
// the executable that ran (SMTP, inbound checks, IMAP) stay mapped. The
// IMAP run of bench/run.sh that follows an ingest started from 30-40 MiB
// of PSS where a fresh server starts from 12 (issue 13). trimMemory
// checks the resident size every trimEvery and, while it is more than
// trimGrowth above the least it has been, does what start-up does once
// (procmem.ReleaseStartup): a collection that returns the free heap, and
// the executable's read-only pages unmapped (they stay in the page cache;
// those in use are mapped back at their next access). Under steady load
// that is a collection and a few hundred page faults every trimEvery: a
// few ms of CPU in 10 s. The floor is not reset by a trim made during a
// burst, so the one after the burst is made too.
const (
	trimEvery  = 10 * time.Second
	trimGrowth = 8 << 20
)

func trimMemory(ctx context.Context, log *slog.Logger, every time.Duration, growth int64) {
	floor, err := procmem.Resident()
	if err != nil {
		log.Debug("memory trim off", "err", err)
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rss, err := procmem.Resident()
		if err != nil {
			continue
		}
		floor = min(floor, rss)
		if rss-floor < growth {
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
	}
}
