package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailctl/mailctl/internal/mailfmt"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/remote"
)

func init() {
	register(&command{name: "export", synopsis: "write a user's mail to a Maildir or mbox files (from the running server, over SSH; the lab locally)", run: runExport})
}

const exportHelp = `The running server streams the user's mailboxes (over SSH for a VPS; the
lab's server locally); nothing changes on the server, and mail keeps
arriving while the export runs (a message that arrives during it may be
left out).

-from-backup FILE exports from a backup written by mailctl backup, on
this machine, without a server: the user's mail as it was when the
backup was taken. An incremental backup needs the backups it builds on
beside it (as restore does); an encrypted one needs -identity. The
backup is unpacked into a temporary directory beside it, removed after.

-format maildir writes a Maildir++ tree as Dovecot's default layout and
mutt read it: INBOX in DIR, a folder "A/B" in DIR/.A.B, the flags in the
file names, the keywords in each folder's dovecot-keywords, and the UIDs
and UIDVALIDITY in dovecot-uidlist (a Dovecot serving the tree keeps
them), the subscribed folders in subscriptions. -format mbox writes one
mboxrd file per folder, DIR/A/B.mbox, with the flags in Status, X-Status
and X-Keywords header fields.

-format dav writes the user's calendars and address books instead of
mail: DIR/calendars/NAME.ics (one iCalendar file per calendar) and
DIR/contacts/NAME.vcf (one vCard file per address book), which any
calendar or contacts program imports.

Exit status: 0 when every message was written, 1 otherwise (what was
written stays in DIR).
`

func runExport(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "export", "-user ADDR -format maildir|mbox|dav [-out DIR] [-server NAME | -from-backup FILE [-identity FILE]...]")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, exportHelp) })
	user := fs.String("user", "", "the user `ADDR` whose mail is exported")
	format := fs.String("format", "", "`maildir` or mbox; dav for the calendars (.ics) and address books (.vcf) instead")
	out := fs.String("out", "", "the directory `DIR` written, which must not exist or be empty (default mailctl-export-ADDR-FORMAT)")
	name := fs.String("server", "", "the server `NAME` (default: the server of the user's domain)")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit to reach the server")
	fromBackup := fs.String("from-backup", "", "export from the backup `FILE` (written by mailctl backup) on this machine, without a server")
	var identityFiles listFlag
	fs.Var(&identityFiles, "identity", "with -from-backup, decrypt an encrypted backup with the age secret keys in `FILE` (repeatable)")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "export takes no arguments (got %q)", strings.Join(fs.Args(), " "))
	}
	if *user == "" {
		return errorf(e, "export needs -user ADDR")
	}
	if *format != "maildir" && *format != "mbox" && *format != "dav" {
		return errorf(e, "-format must be maildir, mbox or dav (got %q)", *format)
	}
	dir := *out
	if dir == "" {
		dir = "mailctl-export-" + strings.ToLower(*user) + "-" + *format
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return errorf(e, "export: %s is not empty: choose another -out DIR", dir)
	}
	var addr string
	var tr *transfer
	if *fromBackup != "" {
		if *name != "" {
			return errorf(e, "export: -from-backup and -server exclude each other")
		}
		addr = strings.ToLower(strings.TrimSpace(*user))
		identities, err := readIdentities(identityFiles)
		if err != nil {
			return errorf(e, "export: %s", oneLine(err.Error()))
		}
		if tr, err = openBackupTransfer(ctx, e, *fromBackup, identities, addr); err != nil {
			return errorf(e, "export: %s", oneLine(err.Error()))
		}
	} else {
		if len(identityFiles) > 0 {
			return errorf(e, "export: -identity goes with -from-backup")
		}
		cfg := loadConfig(e, vars)
		if cfg == nil {
			return exitError
		}
		var s *config.Server
		var err error
		if addr, s, err = userServer(cfg, *user, *name); err != nil {
			return errorf(e, "export: %v", err)
		}
		if tr, err = openTransfer(ctx, e, cfg, s, *acceptNew, *timeout); err != nil {
			return errorf(e, "export: %v", err)
		}
	}
	defer tr.close()
	if *format == "dav" {
		start := time.Now()
		n, err := tr.exportDAV(ctx, addr, dir)
		if err != nil {
			return errorf(e, "export of the calendars and contacts of %s stopped after %s (written so far in %s): %s", addr, plural(n, "file"), dir, oneLine(err.Error()))
		}
		fmt.Fprintf(e.Stdout, "Exported %s of calendars and contacts of %s to %s in %s.\n", plural(n, "file"), addr, dir, time.Since(start).Round(100*time.Millisecond))
		return exitOK
	}
	var sink exportSink
	if *format == "maildir" {
		w, err := mailfmt.NewMaildirWriter(dir)
		if err != nil {
			return errorf(e, "export: %v", err)
		}
		sink = &maildirSink{w: w}
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return errorf(e, "export: %v", err)
		}
		sink = &mboxSink{dir: dir}
	}
	start := time.Now()
	prog := newProgress(e, "export")
	n, folders, bytes, err := tr.export(ctx, addr, sink, prog)
	if cerr := sink.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errorf(e, "export of %s stopped after %s (written so far in %s): %v", addr, plural(n, "message"), dir, err)
	}
	fmt.Fprintf(e.Stdout, "Exported %s in %s (%s) of %s to %s (%s) in %s.\n", plural(n, "message"), plural(folders, "folder"),
		bytesIEC(bytes), addr, dir, *format, time.Since(start).Round(100*time.Millisecond))
	if ms, ok := sink.(*maildirSink); ok && ms.w.DroppedKeywords > 0 {
		fmt.Fprintf(e.Stdout, "Warning: %s left out: a Maildir folder holds at most 26 keywords.\n", plural(ms.w.DroppedKeywords, "keyword"))
	}
	return exitOK
}

// userServer finds the configured user addr and the server that holds its
// mail (name, when given, chooses it).
func userServer(cfg *config.Config, addr, name string) (string, *config.Server, error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	var found *config.User
	for _, u := range cfg.Users {
		if strings.EqualFold(u.Address, addr) {
			found = u
		}
	}
	if found == nil {
		return "", nil, fmt.Errorf("no user %q in the configuration", addr)
	}
	if name != "" {
		s, err := oneServer(cfg, name)
		return addr, s, err
	}
	_, domain, _ := strings.Cut(addr, "@")
	for _, d := range cfg.Domains {
		if strings.EqualFold(d.Name, domain) && d.Server != nil {
			return addr, d.Server, nil
		}
	}
	s, err := oneServer(cfg, "")
	return addr, s, err
}

// transfer runs the server's export and import commands: on this machine
// for the lab, over SSH for a VPS.
type transfer struct {
	server string
	pipe   remote.Piper
	layout remote.Layout
	close  func()
	// source, when set, writes the export stream instead of the server
	// (export -from-backup: a backup's store opened here).
	source func(ctx context.Context, user, mode string, w io.Writer) error
}

func openTransfer(ctx context.Context, e *env, cfg *config.Config, s *config.Server, acceptNew bool, timeout time.Duration) (*transfer, error) {
	if s.Local != nil {
		lab := remote.Lab{Dir: desired.LocalDir(cfg, s)}
		if _, ok := lab.Running(); !ok {
			return nil, fmt.Errorf("the lab server.%s does not run (mailctl apply starts it)", s.Name)
		}
		return &transfer{server: s.Name, pipe: remote.Local{}, layout: lab.Layout(), close: func() {}}, nil
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := target.Open(dctx, cfg, s, target.Options{AcceptNewHostKey: acceptNew, Passphrase: passphrasePrompt(e), Logger: logger(e)})
	if err != nil {
		return nil, err
	}
	p, ok := conn.Target().(remote.Piper)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("server.%s: its connection cannot stream", s.Name)
	}
	return &transfer{server: s.Name, pipe: p, layout: remote.VPS, close: func() { conn.Close() }}, nil
}

// stream runs the export command in mode (remote.ExportMessages ...) and
// calls fn for each record.
func (t *transfer) stream(ctx context.Context, user, mode string, fn func(rec mailfmt.Record, body io.Reader) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var err error
		if t.source != nil {
			err = t.source(ctx, user, mode, pw)
		} else {
			err = t.pipe.Pipe(ctx, t.layout.ExportCommand(user, mode), nil, pw)
		}
		pw.CloseWithError(io.ErrUnexpectedEOF)
		done <- err
	}()
	r := mailfmt.NewStreamReader(pr)
	var rerr error
	for {
		rec, body, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = fn(rec, body)
		}
		if err != nil {
			rerr = err
			cancel()
			pr.CloseWithError(err)
			break
		}
	}
	if perr := <-done; perr != nil && rerr == nil || errors.Is(rerr, mailfmt.ErrTruncated) && perr != nil {
		if t.source != nil {
			return fmt.Errorf("%s: %w", t.server, perr)
		}
		return fmt.Errorf("server.%s: %w", t.server, remote.TransferError(perr))
	}
	return rerr
}

// export writes user's mail to sink.
func (t *transfer) export(ctx context.Context, user string, sink exportSink, prog *progress) (n, folders int, size int64, err error) {
	err = t.stream(ctx, user, remote.ExportMessages, func(rec mailfmt.Record, body io.Reader) error {
		switch rec.Kind {
		case mailfmt.KindMailbox:
			folders++
			return sink.folder(rec)
		case mailfmt.KindMessage:
			b, err := io.ReadAll(body)
			if err != nil {
				return err
			}
			if err := sink.message(rec, mailfmt.Message{Flags: rec.Flags, Date: rec.Date, Body: b}); err != nil {
				return err
			}
			n++
			size += int64(len(b))
			prog.update(n, size, 0)
		}
		return nil
	})
	return n, folders, size, err
}

// exportSink receives the exported mailboxes.
type exportSink interface {
	folder(rec mailfmt.Record) error
	message(rec mailfmt.Record, m mailfmt.Message) error
	close() error
}

type maildirSink struct{ w *mailfmt.MaildirWriter }

func (s *maildirSink) folder(rec mailfmt.Record) error {
	if rec.Subscribed {
		s.w.Subscribe(rec.Mailbox)
	}
	return s.w.Folder(rec.Mailbox, rec.UIDValidity, rec.UIDNext)
}
func (s *maildirSink) message(rec mailfmt.Record, m mailfmt.Message) error {
	return s.w.Add(m, rec.UID)
}
func (s *maildirSink) close() error { return s.w.Close() }

type mboxSink struct {
	dir string
	f   *os.File
	w   *mailfmt.MboxWriter
}

// mboxPath is the file of a folder: DIR/A/B.mbox for "A/B".
func mboxPath(dir, name string) string {
	levels := strings.Split(name, "/")
	for i, l := range levels {
		if l == "" || l == "." || l == ".." {
			levels[i] = "_"
		}
	}
	return filepath.Join(dir, filepath.Join(levels...)+".mbox")
}

func (s *mboxSink) folder(rec mailfmt.Record) error {
	if err := s.close(); err != nil {
		return err
	}
	p := mboxPath(s.dir, rec.Mailbox)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write folder %q: %w", rec.Mailbox, err)
	}
	s.f, s.w = f, mailfmt.NewMboxWriter(f)
	return nil
}

func (s *mboxSink) message(_ mailfmt.Record, m mailfmt.Message) error { return s.w.Write(m) }

func (s *mboxSink) close() error {
	if s.f == nil {
		return nil
	}
	err := s.w.Flush()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f, s.w = nil, nil
	return err
}

// progress prints a line on standard error every few seconds of a long
// export or import.
type progress struct {
	e     *env
	what  string
	last  time.Time
	every time.Duration
}

func newProgress(e *env, what string) *progress {
	return &progress{e: e, what: what, last: time.Now(), every: 2 * time.Second}
}

func (p *progress) update(n int, size int64, skipped int) {
	if time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	line := fmt.Sprintf("%s: %s (%s)", p.what, plural(n, "message"), bytesIEC(size))
	if skipped > 0 {
		line += fmt.Sprintf(", %d skipped", skipped)
	}
	fmt.Fprintln(p.e.Stderr, line+"...")
}
