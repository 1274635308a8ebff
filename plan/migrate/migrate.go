// Package migrate copies mailboxes from another IMAP server (Google
// Workspace / Gmail first) into the target server over IMAP: IMAP4rev1
// (RFC 3501) and IMAP4rev2 (RFC 9051) as a client on both sides, source
// folders opened read-only (EXAMINE) and fetched with BODY.PEEK so that
// nothing changes at the source, APPEND with flags and INTERNALDATE to the
// target, special-use folders (RFC 6154) and Gmail's [Gmail] names mapped
// to the target's, folder names in modified UTF-7 (RFC 3501 5.1.3,
// decoded by go-imap), XOAUTH2 (Google's SASL mechanism, RFC 4422 framing)
// or a password for the source login, and back-off on the response codes
// of a busy server (RFC 5530 UNAVAILABLE, Gmail's THROTTLED, and OVERQUOTA
// from the source, Gmail's bandwidth limit). What no retry fixes fails the
// user at once: OVERQUOTA from the target (a full mailbox), a certificate
// that is not trusted, a refused login.
//
// A run is resumable and idempotent: a local bbolt state holds, per user,
// the highest source UID copied per folder and UIDVALIDITY and the
// Message-IDs (or header digests) imported, written in batches after
// APPENDs are acknowledged. When the previous run did not end cleanly, the
// target folders' Message-IDs are read before appending, so an
// interruption re-appends nothing. The state also holds each target
// folder's UIDVALIDITY and UIDNEXT after a copy into it: a target folder
// that lost what was copied (gone, renumbered, or UIDNEXT lower: a target
// set up again or restored from an older backup) gets it again. A message with several Gmail labels is
// imported once, into the first folder processed (INBOX, Sent, Drafts,
// other labels, All Mail last), unless Job.Duplicates.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Endpoint is an IMAP server to connect to.
type Endpoint struct {
	// Address is host:port.
	Address string
	// TLS is "implicit" (default, port 993), "starttls" or "none" (only
	// for a loopback address).
	TLS string
	// CAFile and MoreCAFiles add PEM roots to the system ones.
	CAFile      string
	MoreCAFiles []string
	// Dial is the host:port connected to instead of Address (whose host
	// name the certificate is still checked for): a server not yet in the
	// DNS, or behind another address.
	Dial string
}

// Credentials log in to an Endpoint: a password (LOGIN), or an OAuth2
// access token printed by TokenCommand (run with sh -c, in TokenDir when
// set, so that a relative path is the configuration's) for XOAUTH2.
type Credentials struct {
	Username     string
	Password     string
	TokenCommand string
	TokenDir     string
}

// Job is the migration of one user.
type Job struct {
	// User names the target mailbox; it keys the state and the report.
	User       string
	Source     Endpoint
	SourceAuth Credentials
	Target     Endpoint
	TargetAuth Credentials
	// Folders maps source folders (and their subtrees) to target folders,
	// on top of the defaults; a mapped folder is never excluded.
	Folders map[string]string
	// Exclude lists source folders to skip: exact names, "X/*" for X and
	// its subtree, or path.Match globs. DefaultExclude always applies.
	Exclude []string
	// Duplicates imports a message with several labels into every label's
	// folder (All Mail still only gets what was imported nowhere else).
	Duplicates bool
	// NoMail skips the mail: only DAV is copied (Source and Target are
	// then not needed).
	NoMail bool
	// DAV copies calendars and contacts after the mail (see dav.go).
	DAV *DAVJob
}

// Backoff bounds the retries after throttling or a dropped connection.
type Backoff struct {
	// Min is the first wait (default 2s), doubled at each retry up to Max
	// (default 2m), with jitter.
	Min, Max time.Duration
	// Retries is the number of consecutive attempts without progress
	// before the user fails (default 8).
	Retries int
}

// Options configure Run.
type Options struct {
	// Parallel is the number of users migrated at once (default 4).
	Parallel int
	// DryRun counts what would be copied; nothing is written to the
	// target or the state.
	DryRun bool
	// Progress receives progress: one bar per user redrawn in place when
	// Terminal, plain lines otherwise. Nil: no progress.
	Progress io.Writer
	Terminal bool
	// Logger receives events (never message contents or secrets). Nil
	// discards them.
	Logger *slog.Logger
	// State is the bbolt file of the migration state (required).
	State string
	// Backoff bounds retries; zero values take the defaults.
	Backoff Backoff
	// Appenders is the number of target connections per user that APPEND
	// in parallel (default 4).
	Appenders int
	// Batch is the number of APPENDs recorded per state commit (default
	// 200; a commit also happens every second and at each folder's end).
	Batch int
}

// Summary is the result of a run.
type Summary struct {
	DryRun bool
	Users  []UserSummary
}

// UserSummary is the result for one user.
type UserSummary struct {
	User string
	// NoMail and DAV say what the job copied: mail unless NoMail,
	// calendars and contacts when DAV.
	NoMail, DAV bool
	// Copied messages and their bytes (would be copied, in a dry run).
	Copied int
	Bytes  int64
	// Skipped messages were already in the target or imported from
	// another folder; Deleted were flagged \Deleted at the source.
	Skipped, Deleted int
	// Failed messages, with reasons (the first few).
	Failed   int
	Failures []string
	Folders  []FolderSummary
	// Excluded source folders, with the reason.
	Excluded map[string]string
	// DAVCopied, DAVUpdated, DAVSkipped and DAVFailed count calendar
	// objects and contacts: new at the target, changed at the source and
	// copied again, already there, not copied (reasons in Failures).
	// DAVErrors are what stopped a kind or collection.
	DAVCopied, DAVUpdated, DAVSkipped, DAVFailed int
	DAVBytes                                     int64
	DAVErrors                                    []string
	// Err is why the user's migration stopped, if it did.
	Err      error
	Retries  int
	Duration time.Duration
}

// FolderSummary is the result for one source folder.
type FolderSummary struct {
	// Kind is "" for a mail folder, "calendar" or "address book".
	Kind            string
	Source, Target  string
	Messages        int // in the source folder
	Copied, Skipped int
	Failed          int
	Updated         int // objects of a calendar or address book changed at the source
	Bytes           int64
}

// OK reports whether every user completed without failures.
func (s Summary) OK() bool {
	for _, u := range s.Users {
		if u.Err != nil || u.Failed > 0 || u.DAVFailed > 0 || len(u.DAVErrors) > 0 {
			return false
		}
	}
	return true
}

// Write prints the summary for people.
func (s Summary) Write(w io.Writer) {
	verb := "copied"
	if s.DryRun {
		verb = "would copy"
	}
	for _, u := range s.Users {
		if !u.NoMail {
			fmt.Fprintf(w, "%s: %s %d messages (%s), skipped %d, failed %d", u.User, verb, u.Copied, formatBytes(u.Bytes), u.Skipped, u.Failed)
		} else {
			fmt.Fprintf(w, "%s: mail not copied", u.User)
		}
		if u.Deleted > 0 {
			fmt.Fprintf(w, ", %d flagged \\Deleted not copied", u.Deleted)
		}
		if u.Retries > 0 {
			fmt.Fprintf(w, ", %d retries", u.Retries)
		}
		fmt.Fprintf(w, " in %s\n", u.Duration.Round(100*time.Millisecond))
		if u.DAV {
			fmt.Fprintf(w, "  calendars and contacts: %s %d objects (%s), updated %d, skipped %d, failed %d\n",
				verb, u.DAVCopied, formatBytes(u.DAVBytes), u.DAVUpdated, u.DAVSkipped, u.DAVFailed)
		}
		for _, f := range u.Folders {
			if f.Kind != "" {
				fmt.Fprintf(w, "  %s %q -> %q: %d objects, %s %d, updated %d, skipped %d", f.Kind, f.Source, f.Target, f.Messages, verb, f.Copied, f.Updated, f.Skipped)
				if f.Failed > 0 {
					fmt.Fprintf(w, ", failed %d", f.Failed)
				}
				fmt.Fprintln(w)
				continue
			}
			fmt.Fprintf(w, "  %q -> %q: %d messages, %s %d, skipped %d", f.Source, f.Target, f.Messages, verb, f.Copied, f.Skipped)
			if f.Failed > 0 {
				fmt.Fprintf(w, ", failed %d", f.Failed)
			}
			fmt.Fprintln(w)
		}
		for _, name := range slices.Sorted(maps.Keys(u.Excluded)) {
			fmt.Fprintf(w, "  %q not copied: %s\n", name, u.Excluded[name])
		}
		for _, f := range u.Failures {
			fmt.Fprintf(w, "  failed: %s\n", f)
		}
		for _, e := range u.DAVErrors {
			fmt.Fprintf(w, "  calendars and contacts error: %s\n", e)
		}
		switch {
		case errors.Is(u.Err, context.Canceled):
			fmt.Fprintf(w, "  interrupted: what was acknowledged is recorded; a new run resumes from there\n")
		case u.Err != nil:
			fmt.Fprintf(w, "  error: %v\n", u.Err)
		}
	}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ErrNoState is returned by Run without Options.State.
var ErrNoState = errors.New("migrate: no state file")

// Run migrates the jobs' users, Options.Parallel at a time. A user's
// failure does not stop the others: it is in its UserSummary. Run's error
// is for what stops everything (the state cannot be opened, ctx ended).
func Run(ctx context.Context, jobs []Job, opts Options) (Summary, error) {
	if opts.State == "" {
		return Summary{}, ErrNoState
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Appenders <= 0 {
		opts.Appenders = 4
	}
	if opts.Batch <= 0 {
		opts.Batch = 200
	}
	if opts.Backoff.Min <= 0 {
		opts.Backoff.Min = 2 * time.Second
	}
	if opts.Backoff.Max <= 0 {
		opts.Backoff.Max = 2 * time.Minute
	}
	if opts.Backoff.Retries <= 0 {
		opts.Backoff.Retries = 8
	}
	for i := range jobs {
		if err := jobs[i].check(); err != nil {
			return Summary{}, err
		}
	}
	st, err := openState(ctx, opts.State)
	if err != nil {
		return Summary{}, err
	}
	defer st.Close()

	prog := newProgress(opts.Progress, opts.Terminal, jobs)
	stopProg := prog.start()
	sum := Summary{DryRun: opts.DryRun, Users: make([]UserSummary, len(jobs))}
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				sum.Users[i] = UserSummary{User: jobs[i].User, Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			r := &runner{job: &jobs[i], opts: &opts, st: st, prog: prog.user(i),
				log: opts.Logger.With("user", jobs[i].User)}
			sum.Users[i] = r.run(ctx)
		}()
	}
	wg.Wait()
	stopProg()
	return sum, ctx.Err()
}

func (j *Job) check() error {
	if j.User == "" {
		return errors.New("migrate: a job without a user")
	}
	if j.NoMail && j.DAV == nil {
		return fmt.Errorf("migrate %s: nothing to copy (no mail, no calendars or contacts)", j.User)
	}
	if j.NoMail {
		return nil
	}
	for _, ep := range []struct {
		name string
		e    Endpoint
	}{{"source", j.Source}, {"target", j.Target}} {
		host, _, err := net.SplitHostPort(ep.e.Address)
		if err != nil {
			return fmt.Errorf("migrate %s: %s address %q: %w", j.User, ep.name, ep.e.Address, err)
		}
		if ep.e.Dial != "" {
			if host, _, err = net.SplitHostPort(ep.e.Dial); err != nil {
				return fmt.Errorf("migrate %s: %s: dial %q: %w", j.User, ep.name, ep.e.Dial, err)
			}
		}
		switch ep.e.TLS {
		case "", "implicit", "starttls":
		case "none":
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("migrate %s: %s %s: tls = \"none\" only for a loopback address", j.User, ep.name, ep.e.Address)
			}
		default:
			return fmt.Errorf("migrate %s: %s tls %q: want implicit, starttls or none", j.User, ep.name, ep.e.TLS)
		}
	}
	return nil
}

// runner migrates one user.
type runner struct {
	job  *Job
	opts *Options
	st   *state
	prog *userProgress
	log  *slog.Logger

	us       *userState
	sum      UserSummary
	folders  map[string]*FolderSummary
	pending  update
	pendingN int
	lastSave time.Time
	// inTarget holds the keys present per target folder with their size,
	// read from the
	// target this run (scanned) or appended this run.
	inTarget map[string]map[string]int64
	scanned  map[string]bool
	// rescan holds the target folders read before appending even when
	// the state is clean: they lost what was copied (checkTargets).
	rescan map[string]bool
	// counted holds the source messages (folder key and UID) counted as
	// skipped or deleted in this run: a retry does not count them again.
	counted  map[string]bool
	progress bool // something was done in the current attempt
}

// run migrates the user and returns the summary, with its duration and
// folders.
func (r *runner) run(ctx context.Context) UserSummary {
	start := time.Now()
	r.sum = UserSummary{User: r.job.User, NoMail: r.job.NoMail, DAV: r.job.DAV != nil}
	r.folders = map[string]*FolderSummary{}
	r.inTarget = map[string]map[string]int64{}
	r.scanned = map[string]bool{}
	r.counted = map[string]bool{}
	r.rescan = map[string]bool{}
	if !r.job.NoMail {
		r.migrate(ctx)
	}
	if ctx.Err() == nil {
		r.davCopy(ctx)
	}
	r.sum.Duration = time.Since(start)
	for _, f := range r.folders {
		r.sum.Folders = append(r.sum.Folders, *f)
	}
	sort.Slice(r.sum.Folders, func(i, j int) bool {
		a, b := r.sum.Folders[i], r.sum.Folders[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Source < b.Source
	})
	r.prog.finish(r.sum.Err)
	return r.sum
}

// migrate does the work of run, setting r.sum.
func (r *runner) migrate(ctx context.Context) {
	us, err := r.st.load(r.job.User)
	if err != nil {
		r.sum.Err = err
		return
	}
	r.us = us
	wasClean := us.Clean
	if !r.opts.DryRun && wasClean {
		// From here until the end, an interruption leaves the state
		// unclean: the next run reads the target folders first.
		f := false
		r.pending.clean = &f
		if err := r.st.commit(r.job.User, &r.pending); err != nil {
			r.sum.Err = err
			return
		}
	}
	failures := 0
	for {
		r.progress = false
		err = r.session(ctx, !wasClean)
		if cerr := r.flush(); err == nil {
			err = cerr
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			r.sum.Err = ctx.Err()
			return
		}
		if !retryable(err) {
			r.sum.Err = err
			return
		}
		if r.progress {
			failures = 0
		}
		failures++
		if failures > r.opts.Backoff.Retries {
			r.sum.Err = fmt.Errorf("giving up after %d attempts: %w", failures, err)
			return
		}
		// What was in flight may have reached the target: read the target
		// folders again before appending.
		wasClean = false
		r.scanned = map[string]bool{}
		r.sum.Retries++
		wait := backoff(r.opts.Backoff, failures)
		r.log.Warn("migration interrupted, retrying", "err", err, "wait", wait)
		r.prog.setNote(fmt.Sprintf("retry in %s: %v", wait.Round(time.Millisecond), err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			r.sum.Err = ctx.Err()
			return
		}
	}
	if !r.opts.DryRun {
		t := true
		r.pending.clean = &t
		if err := r.st.commit(r.job.User, &r.pending); err != nil {
			r.sum.Err = err
		}
	}
}

func backoff(b Backoff, n int) time.Duration {
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d/2 + rand.N(d/2+1)
}

// flush commits the pending state updates.
func (r *runner) flush() error {
	r.pendingN = 0
	r.lastSave = time.Now()
	if r.opts.DryRun {
		r.pending = update{}
		return nil
	}
	return r.st.commit(r.job.User, &r.pending)
}

// record notes progress: the folder's UID watermark (when advance) and an
// imported key; it commits every Options.Batch keys or second.
func (r *runner) record(fk string, uid uint32, key, target string, advance bool) error {
	if r.opts.DryRun {
		return nil
	}
	if advance {
		if r.pending.lastUID == nil {
			r.pending.lastUID = map[string]uint32{}
		}
		r.pending.lastUID[fk] = uid
		r.us.LastUID[fk] = uid
	}
	if key != "" {
		if r.pending.imported == nil {
			r.pending.imported = map[string]string{}
		}
		r.pending.imported[key] = target
		r.us.Imported[key] = target
		r.pendingN++
	}
	if r.pendingN >= r.opts.Batch || time.Since(r.lastSave) > time.Second {
		return r.flush()
	}
	return nil
}

func (r *runner) fail(f *FolderSummary, reason string) {
	r.sum.Failed++
	f.Failed++
	if len(r.sum.Failures) < 20 {
		r.sum.Failures = append(r.sum.Failures, reason)
	}
	r.log.Warn("message not copied", "folder", f.Source, "reason", reason)
}

func (r *runner) folderSummary(source, target string) *FolderSummary {
	f := r.folders[source]
	if f == nil {
		f = &FolderSummary{Source: source, Target: target}
		r.folders[source] = f
	}
	return f
}

// errorsText joins the lines of an error for a one-line report.
func errorsText(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
