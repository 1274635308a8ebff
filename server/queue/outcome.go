package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"
)

// backoff is the delay after the n-th failed attempt: RetryBase doubled
// each time, at most RetryMax.
func (q *Queue) backoff(n int) time.Duration {
	d := q.opts.RetryBase
	for i := 1; i < n && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	if d > q.opts.RetryMax {
		d = q.opts.RetryMax
	}
	return d
}

// record applies the results of an attempt: recipients delivered or failed
// for good are settled, a DSN is queued for failures and long delays, and
// the record is rescheduled or, when nothing is left, removed (index commit
// first, body file afterwards).
func (q *Queue) record(ctx context.Context, l *lease, m *Message, body bodyReader, res []result, deferTo time.Time) error {
	ctx = context.WithoutCancel(ctx) // what was delivered must be recorded, even when stopping
	now := q.opts.Clock.Now()
	nm := *m
	nm.Rcpts = append([]Recipient(nil), m.Rcpts...)
	idx := map[string]int{}
	for i, r := range nm.Rcpts {
		if r.State == StatePending {
			idx[r.Addr] = i
		}
	}
	var report []DSNRecipient
	lastTemp := ""
	for _, r := range res {
		i, ok := idx[r.rcpt]
		if !ok {
			continue
		}
		rc := &nm.Rcpts[i]
		rc.Status, rc.Diagnostic, rc.RemoteMTA = r.status, r.diag, r.mta
		switch {
		case r.ok:
			rc.State = StateDelivered
		case r.perm:
			rc.State = StateFailed
			report = append(report, DSNRecipient{Addr: rc.Addr, Action: ActionFailed, Status: r.status, RemoteMTA: r.mta, Diagnostic: r.diag})
		default:
			lastTemp = r.diag
		}
	}
	if !deferTo.IsZero() {
		nm.Next = deferTo
	} else {
		nm.Attempts++
		nm.LastError = lastTemp
		if pend := nm.pending(); len(pend) > 0 {
			if now.Sub(nm.Created) >= q.opts.MaxAge {
				for i := range nm.Rcpts {
					rc := &nm.Rcpts[i]
					if rc.State != StatePending {
						continue
					}
					rc.State = StateFailed
					diag := "delivery time expired"
					if rc.Diagnostic != "" {
						diag += "; last error: " + rc.Diagnostic
					}
					rc.Status, rc.Diagnostic = "4.4.7", diag
					report = append(report, DSNRecipient{Addr: rc.Addr, Action: ActionFailed, Status: "4.4.7", RemoteMTA: rc.RemoteMTA, Diagnostic: diag})
				}
			} else {
				nm.Next = now.Add(q.backoff(nm.Attempts))
				if q.opts.DelayNotice > 0 && !nm.DelayNotified && now.Sub(nm.Created) >= q.opts.DelayNotice {
					nm.DelayNotified = true
					for _, rc := range nm.Rcpts {
						if rc.State == StatePending {
							report = append(report, DSNRecipient{Addr: rc.Addr, Action: ActionDelayed, Status: rc.Status,
								RemoteMTA: rc.RemoteMTA, Diagnostic: rc.Diagnostic, WillRetryUntil: nm.Created.Add(q.opts.MaxAge)})
						}
					}
				}
			}
		}
	}

	var dsnMsgs []*Message
	var dsnBlob string
	if len(report) > 0 && !m.IsDSN && m.From != "" {
		d := &DSN{
			ReportingMTA: q.opts.Hostname, From: "MAILER-DAEMON@" + q.opts.Hostname, To: m.From,
			Date: now, ArrivalDate: m.Created, MessageID: newID() + "@" + q.opts.Hostname,
			Recipients: report, OriginalHeader: readHeader(body, m.Size), UTF8: m.SMTPUTF8,
		}
		blob, size, sig, err := q.be.writeBody(ctx, bytes.NewReader(d.Bytes()), q.opts.Signer)
		if err != nil {
			return fmt.Errorf("write DSN for %s: %w", m.ID, err)
		}
		dsnBlob = blob
		dsnMsgs = q.split(blob, "", []string{m.From}, sig, size, true)
		for _, dm := range dsnMsgs {
			dm.SMTPUTF8 = !isASCII(m.From) // its To field and envelope hold the UTF-8 address
		}
	}

	done := len(nm.pending()) == 0
	if err := q.be.settle(ctx, l, m, &nm, done, dsnMsgs, dsnBlob); err != nil {
		if dsnBlob != "" {
			q.be.dropBody(dsnBlob)
		}
		return fmt.Errorf("commit outcome of %s: %w", m.ID, err)
	}
	if done {
		q.unschedule(m.ID)
	} else {
		q.schedule(&nm)
	}
	q.schedule(dsnMsgs...)
	if len(dsnMsgs) > 0 {
		q.log.Info("DSN queued", "id", m.ID, "to", m.From, "recipients", len(report))
	}
	return nil
}

// readHeader returns the header section of a queued body (at most 64 KiB).
func readHeader(f bodyReader, size int64) []byte {
	if f == nil {
		return nil
	}
	n := min(size, 64<<10)
	b := make([]byte, n)
	m, _ := io.ReadFull(io.NewSectionReader(f, 0, n), b)
	b = b[:m]
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return b[:i+2]
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return b[:i+1]
	}
	return b
}
