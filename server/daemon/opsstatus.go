package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/queue"
)

// This file holds the parts of the status that `mailctl status` reads from
// the workstation to tell whether a server needs attention: the outbound
// queue's age and deferral reasons, the disk of the data directory and the
// last errors the server logged.

// The types of these parts of the status (package contract).
type (
	QueueStatus = contract.QueueStatus
	Deferral    = contract.Deferral
	DiskStatus  = contract.DiskStatus
	LogRecord   = contract.LogRecord
)

const (
	maxDeferrals  = 5
	maxLastErrors = 20
	maxReasonLen  = 200
)

// queueStatus summarises the queued messages.
func queueStatus(msgs []queue.Message) *QueueStatus {
	qs := &QueueStatus{Messages: len(msgs), Deferrals: []Deferral{}}
	count := map[string]int{}
	for _, m := range msgs {
		if qs.Oldest == nil || m.Created.Before(*qs.Oldest) {
			t := m.Created.UTC()
			qs.Oldest = &t
		}
		if m.LastError != "" {
			r := m.LastError
			if len(r) > maxReasonLen {
				r = r[:maxReasonLen] + "..."
			}
			count[r]++
		}
	}
	for r, n := range count {
		qs.Deferrals = append(qs.Deferrals, Deferral{Reason: r, Messages: n})
	}
	sort.Slice(qs.Deferrals, func(i, j int) bool {
		a, b := qs.Deferrals[i], qs.Deferrals[j]
		if a.Messages != b.Messages {
			return a.Messages > b.Messages
		}
		return a.Reason < b.Reason
	})
	if len(qs.Deferrals) > maxDeferrals {
		qs.Deferrals = qs.Deferrals[:maxDeferrals]
	}
	return qs
}

// diskStatus reads the file system of dir.
func diskStatus(dir string) (*DiskStatus, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return nil, fmt.Errorf("statfs %q: %w", dir, err)
	}
	bs := int64(fs.Bsize)
	total := int64(fs.Blocks) * bs
	return &DiskStatus{
		Path:       dir,
		TotalBytes: total,
		FreeBytes:  int64(fs.Bavail) * bs,
		UsedBytes:  total - int64(fs.Bfree)*bs,
	}, nil
}

// opsStatus fills the fields of st that mailctl status needs.
func (d *daemon) opsStatus(ctx context.Context, st *Status, dataDir string) error {
	msgs, err := d.queue.List(ctx)
	if err != nil {
		return fmt.Errorf("list the outbound queue: %w", err)
	}
	st.Queue = queueStatus(msgs)
	if st.Disk, err = diskStatus(dataDir); err != nil {
		return err
	}
	st.LastErrors = d.errs.records()
	return nil
}

// errorLog keeps the last error records a server logged, for the status.
type errorLog struct {
	mu   sync.Mutex
	recs []LogRecord // oldest first, at most maxLastErrors
}

func (l *errorLog) add(r LogRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	if len(l.recs) > maxLastErrors {
		l.recs = append(l.recs[:0], l.recs[len(l.recs)-maxLastErrors:]...)
	}
}

// records returns a copy, oldest first; never nil.
func (l *errorLog) records() []LogRecord {
	if l == nil {
		return []LogRecord{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LogRecord{}, l.recs...)
}

// wrap returns a logger that logs through next and keeps the records of
// level error and above.
func (l *errorLog) wrap(next *slog.Logger) *slog.Logger {
	return slog.New(&errorHandler{next: next.Handler(), log: l})
}

// errorHandler is a slog.Handler that copies error records to an errorLog
// before passing every record on.
type errorHandler struct {
	next   slog.Handler
	log    *errorLog
	prefix string // attributes of With, as key=value pairs
	group  string // group prefix of the following keys
}

func (h *errorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *errorHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var b strings.Builder
		b.WriteString(h.prefix)
		r.Attrs(func(a slog.Attr) bool {
			appendAttr(&b, h.group, a)
			return true
		})
		h.log.add(LogRecord{Time: r.Time.UTC(), Level: r.Level.String(), Message: r.Message, Attrs: b.String()})
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *errorHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		appendAttr(&b, h.group, a)
	}
	return &errorHandler{next: h.next.WithAttrs(as), log: h.log, prefix: b.String(), group: h.group}
}

func (h *errorHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &errorHandler{next: h.next.WithGroup(name), log: h.log, prefix: h.prefix, group: h.group + name + "."}
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, sub := range a.Value.Group() {
			appendAttr(b, g, sub)
		}
		return
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	fmt.Fprintf(b, "%s%s=%q", group, a.Key, a.Value.String())
}
