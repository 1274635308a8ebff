// Package storecopy copies a mail store into another one, between the
// embedded store (server/store) and PostgreSQL (server/pgstore), keeping
// what IMAP clients cache: every mailbox's UIDVALIDITY, UIDNEXT and
// HIGHESTMODSEQ, each message's UID, MODSEQ, flags, internal date and
// body, the subscriptions and special-use attributes, the users and their
// quotas (issue 20: `mailctl store copy`). A client that synchronised
// with the source sees nothing changed on the destination.
//
// It reads through the store's read API (Source, which store.Backend
// satisfies) and writes through the importers of the destination
// (ImportUser, ImportMailbox), which write the given UIDs and MODSEQs into
// an empty mailbox and refuse one that holds something else. It is
// resumable: a mailbox already complete at the destination (same
// UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and count) is skipped, and an
// importer makes a mailbox appear whole or not at all, so a copy
// interrupted (Ctrl-C, crash) and run again ends as one that was not.
//
// Both stores must be still: the copy runs while `mailctl serve` is
// stopped (the embedded store's lock keeps serve out of it; PostgreSQL
// has no such lock: stop every node).
//
// What is not copied: the expunge history of QRESYNC (the destination's
// starts at the copy: a client that knew an older state gets the full
// list of UIDs instead of VANISHED); internal dates below the microsecond
// on PostgreSQL (IMAP shows seconds). Subscriptions to names without a
// mailbox are copied where the destination keeps them
// (SubscriptionImporter: both stores do), else the progress output says
// how many were left.
package storecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// Source is what the copy reads: store.Backend satisfies it.
type Source interface {
	Users(ctx context.Context) ([]string, error)
	Quota(ctx context.Context, user string) (int64, error)
	Mailboxes(ctx context.Context, user string) ([]store.Mailbox, error)
	Mailbox(ctx context.Context, user, name string) (store.Mailbox, error)
	Messages(ctx context.Context, user, mailbox string) (store.Mailbox, []store.Message, error)
	OpenBody(ctx context.Context, m store.Message) (store.Body, error)
	GoneSubscriptions(ctx context.Context, user string) ([]string, error)
}

// Destination is what the copy writes: *store.Store and *pgstore.Store
// satisfy it.
type Destination interface {
	ImportUser(ctx context.Context, user string, quotaBytes int64) error
	ImportMailbox(ctx context.Context, user string, mb store.Mailbox, next func() (store.Message, io.Reader, error)) (skipped bool, err error)
}

// SubscriptionImporter is a Destination that keeps subscriptions to
// names that are no mailbox (store.Store.ImportSubscriptions).
type SubscriptionImporter interface {
	ImportSubscriptions(ctx context.Context, user string, names []string) error
}

// ErrSourceChanged is returned when a mailbox of the source changed while
// it was copied.
var ErrSourceChanged = errors.New("the source changed during the copy")

// Stats counts what a copy did.
type Stats struct {
	Users     int
	Mailboxes int   // copied
	Skipped   int   // already complete at the destination
	Messages  int   // copied
	Bytes     int64 // of the messages copied
}

// Options tune a copy.
type Options struct {
	// Progress receives one line per mailbox, and one every
	// ProgressEvery messages within a large one; nil: none.
	Progress io.Writer
	// ProgressEvery defaults to 1000.
	ProgressEvery int
}

// Copy copies every user of src into dst. It stops at the first error,
// which names the user and mailbox; what was copied until then stays, and
// a copy run again goes on from there.
func Copy(ctx context.Context, src Source, dst Destination, opts Options) (Stats, error) {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 1000
	}
	say := func(format string, args ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}
	var st Stats
	users, err := src.Users(ctx)
	if err != nil {
		return st, fmt.Errorf("copy: %w", err)
	}
	for _, user := range users {
		if err := copyUser(ctx, src, dst, user, &st, opts, say); err != nil {
			return st, fmt.Errorf("copy user %q: %w", user, err)
		}
		st.Users++
	}
	return st, nil
}

func copyUser(ctx context.Context, src Source, dst Destination, user string, st *Stats, opts Options, say func(string, ...any)) error {
	quota, err := src.Quota(ctx, user)
	if err != nil {
		return err
	}
	if err := dst.ImportUser(ctx, user, quota); err != nil {
		return err
	}
	mbs, err := src.Mailboxes(ctx, user)
	if err != nil {
		return err
	}
	for _, mb := range mbs {
		if err := copyMailbox(ctx, src, dst, user, mb.Name, st, opts, say); err != nil {
			return err
		}
	}
	gone, err := src.GoneSubscriptions(ctx, user)
	if err != nil {
		return err
	}
	if len(gone) > 0 {
		if si, ok := dst.(SubscriptionImporter); ok {
			if err := si.ImportSubscriptions(ctx, user, gone); err != nil {
				return err
			}
		} else {
			say("%s: %d subscriptions to names without a mailbox not copied (the destination keeps none): %q", user, len(gone), gone)
		}
	}
	return nil
}

func copyMailbox(ctx context.Context, src Source, dst Destination, user, name string, st *Stats, opts Options, say func(string, ...any)) error {
	start := time.Now()
	mb, msgs, err := src.Messages(ctx, user, name)
	if err != nil {
		return err
	}
	var open store.Body
	closeOpen := func() {
		if open != nil {
			open.Close()
			open = nil
		}
	}
	defer closeOpen()
	i := 0
	var bytes int64
	skipped, err := dst.ImportMailbox(ctx, user, mb, func() (store.Message, io.Reader, error) {
		closeOpen()
		if err := ctx.Err(); err != nil {
			return store.Message{}, nil, err
		}
		if i == len(msgs) {
			return store.Message{}, nil, io.EOF
		}
		m := msgs[i]
		i++
		b, err := src.OpenBody(ctx, m)
		if errors.Is(err, io.EOF) { // not the end of the list
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return store.Message{}, nil, fmt.Errorf("message UID %d: %w", m.UID, err)
		}
		open = b
		bytes += m.Size
		if i%opts.ProgressEvery == 0 && i < len(msgs) {
			say("%s %s: %d/%d messages", user, mb.Name, i, len(msgs))
		}
		return m, b, nil
	})
	if err != nil {
		return err
	}
	// A source still in use (a node left running) changes under the
	// copy: what was written is then not the source any more.
	now, err := src.Mailbox(ctx, user, name)
	if err != nil {
		return err
	}
	if now.UIDValidity != mb.UIDValidity || now.UIDNext != mb.UIDNext || now.ModSeq != mb.ModSeq || now.Messages != mb.Messages {
		return fmt.Errorf("%w: mailbox %q (UIDNEXT %d -> %d, HIGHESTMODSEQ %d -> %d): stop every mailctl serve that uses the source, then copy again into a new destination",
			ErrSourceChanged, name, mb.UIDNext, now.UIDNext, mb.ModSeq, now.ModSeq)
	}
	if skipped {
		st.Skipped++
		say("%s %s: already copied (UIDVALIDITY %d, UIDNEXT %d), skipped", user, mb.Name, mb.UIDValidity, mb.UIDNext)
		return nil
	}
	st.Mailboxes++
	st.Messages += len(msgs)
	st.Bytes += bytes
	say("%s %s: %d messages, %s, UIDVALIDITY %d, UIDNEXT %d, HIGHESTMODSEQ %d (%s)", user, mb.Name, len(msgs), humanBytes(bytes),
		mb.UIDValidity, mb.UIDNext, mb.ModSeq, time.Since(start).Round(time.Millisecond))
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
