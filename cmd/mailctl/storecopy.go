package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/mailctl/mailctl/remote"
	serverconfig "github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
	"github.com/mailctl/mailctl/server/storecopy"
)

const storeCopyHelp = `
Copies the mail store of a server, on that server, while mailctl serve is
stopped: from the embedded store (a directory) to a PostgreSQL database,
or back. Every mailbox keeps its UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ,
every message its UID, MODSEQ, flags, internal date and body, so that
IMAP clients keep their caches; users, quotas, subscriptions and
special-use attributes come along. The destination's schema is created
or brought up to date first.

The copy can be interrupted (Ctrl-C) and run again: mailboxes already
copied are skipped, one copied halfway is done again. A destination
mailbox that holds other mail is refused: drop it (or the destination).
PostgreSQL keeps internal dates to the microsecond (docs/operations.md).
`

// runStoreCopy runs `mailctl store copy` (dispatched by runStore).
func runStoreCopy(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "store copy", "(-from DIR -to-postgres-file FILE | -from-postgres-file FILE -to DIR)")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, storeCopyHelp) })
	fromDir := fs.String("from", "", "copy from the embedded store in `DIR` (e.g. /var/lib/mailctl/store)")
	toDir := fs.String("to", "", "copy into the embedded store in `DIR` (created when absent)")
	fromPG := fs.String("from-postgres-file", "", "copy from the PostgreSQL database whose URL is in `FILE` (mode 0600)")
	toPG := fs.String("to-postgres-file", "", "copy into the PostgreSQL database whose URL is in `FILE` (mode 0600)")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "store copy: unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *fromDir != "" && *toPG != "" && *fromPG == "" && *toDir == "":
	case *fromPG != "" && *toDir != "" && *fromDir == "" && *toPG == "":
	default:
		return errorf(e, "store copy needs -from DIR -to-postgres-file FILE, or -from-postgres-file FILE -to DIR")
	}
	start := time.Now()
	fail := func(err error) int {
		if ctx.Err() != nil {
			return errorf(e, "store copy interrupted: run the same command again to go on")
		}
		return errorf(e, "store copy: %s", oneLine(err.Error()))
	}
	var src storecopy.Source
	var dst storecopy.Destination
	if *fromDir != "" {
		if _, err := os.Stat(filepath.Join(*fromDir, "index.db")); err != nil {
			return errorf(e, "store copy: %s holds no mail store (no index.db)", *fromDir)
		}
		st, err := openEmbedded(ctx, *fromDir)
		if err != nil {
			return fail(err)
		}
		defer st.Close()
		url, err := serverconfig.ReadPostgresURL(*toPG)
		if err != nil {
			return fail(err)
		}
		from, to, err := pgstore.Migrate(ctx, url)
		if err != nil {
			return fail(err)
		}
		if from != to {
			fmt.Fprintf(e.Stdout, "destination schema %d -> %d\n", from, to)
		}
		pg, err := pgstore.Open(ctx, url, nil)
		if err != nil {
			return fail(err)
		}
		defer pg.Close()
		src, dst = st, pg
	} else {
		url, err := serverconfig.ReadPostgresURL(*fromPG)
		if err != nil {
			return fail(err)
		}
		pg, err := pgstore.Open(ctx, url, nil)
		if err != nil {
			return fail(err)
		}
		defer pg.Close()
		st, err := openEmbedded(ctx, *toDir)
		if err != nil {
			return fail(err)
		}
		defer st.Close()
		src, dst = pg, st
	}
	// The destination keeps the ENVELOPE summary of each message, as when
	// serve delivers it.
	if hs, ok := dst.(interface{ SetHeaderSummary(func([]byte) []byte) }); ok {
		hs.SetHeaderSummary(imap.HeaderSummary)
	}
	// and, on a backend that matches SEARCH BODY and TEXT itself, the text
	// those match.
	if ts, ok := dst.(store.TextSearcher); ok {
		ts.SetSearchText(imap.SearchText)
	}
	stats, err := storecopy.Copy(ctx, src, dst, storecopy.Options{Progress: e.Stdout})
	if err != nil {
		if ctx.Err() != nil {
			return errorf(e, "store copy interrupted after %d mailboxes: run the same command again to go on", stats.Mailboxes+stats.Skipped)
		}
		return fail(err)
	}
	fmt.Fprintf(e.Stdout, "copied %d users: %d mailboxes (%d already there), %d messages, %d bytes in %s\n",
		stats.Users, stats.Mailboxes, stats.Skipped, stats.Messages, stats.Bytes, time.Since(start).Round(time.Millisecond))
	if *toDir != "" && os.Geteuid() == 0 {
		// serve runs as its own user (remote.ServiceUser), which must own
		// its store.
		fmt.Fprintf(e.Stdout, "the store in %s belongs to root: chown -R %s: %s before serve runs on it\n", *toDir, remote.ServiceUser, *toDir)
	}
	return exitOK
}

// openEmbedded opens the embedded store in dir, telling a store in use by
// serve from other errors.
func openEmbedded(ctx context.Context, dir string) (*store.Store, error) {
	st, err := store.Open(ctx, dir, nil)
	if errors.Is(err, berrors.ErrTimeout) { // another process holds the index
		return nil, fmt.Errorf("the store in %s is in use: stop mailctl serve first", dir)
	}
	return st, err
}
