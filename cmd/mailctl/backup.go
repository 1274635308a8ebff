package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/remote"
	"github.com/mailctl/mailctl/server/backup"
	"github.com/mailctl/mailctl/server/daemon"
)

func init() {
	register(&command{name: "backup", synopsis: "copy each server's mail, queue, keys and certificates to this machine, while it runs", run: runBackup})
	register(&command{name: "restore", synopsis: "put a backup onto a server (same UIDs, flags, UIDVALIDITY); it stops meanwhile", run: runRestore})
}

const backupHelp = `
A backup is one file per server, <server>-<UTC time>.tar.gz, written 0600
in a 0700 directory (it holds the DKIM keys and the TLS account): the mail
store and outbound queue as one consistent snapshot taken while the server
keeps accepting mail, the DKIM keys, certificates and ACME account, and a
manifest with the SHA-256 of every file. The copy is checked against its
manifest before it gets its final name; <file>.manifest.json beside it
lists its files (no content) for the next -incremental backup, which
sends only new bodies and the changed pages of the index.

Restore with: mailctl restore [-server NAME] FILE (docs/operations.md).
`

const restoreHelp = `
The backup is checked against its manifest first, then copied to the
server; only then is the server stopped, the backup put in place (same
UIDVALIDITY, UIDs, flags, dates; quotas' usage as it was) and the server
started again. A data directory that holds mail is refused unless -force:
restore onto a fresh server (after apply). A failed restore leaves the data
directory as it was and the server started. An incremental backup needs
the backups it builds on beside it: they are applied here, in a temporary
directory beside them, and the server receives the resulting full backup.
`

// progressEvery is how often a long transfer prints a progress line.
var progressEvery = 10 * time.Second

func runBackup(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "backup", "[-server NAME]... [-out DIR] [-incremental] [-encrypt-to AGE-KEY]... [-timeout 2m]")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, backupHelp) })
	var names listFlag
	fs.Var(&names, "server", "back up this server `NAME` (repeatable; default every server)")
	out := fs.String("out", "backups", "write the backups into `DIR` (created 0700; relative to the configuration directory)")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up when a server sends nothing for this long")
	incremental := fs.Bool("incremental", false, "send only what changed since the last backup of each server in -out (new messages, changed parts of the index); restore applies the chain")
	var encryptTo listFlag
	fs.Var(&encryptTo, "encrypt-to", "encrypt the backups to this age public `KEY` (age1...; repeatable): restoring needs the matching -identity")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "backup takes no arguments (got %q); use -server NAME to select servers", strings.Join(fs.Args(), " "))
	}
	if *timeout <= 0 {
		return errorf(e, "backup: -timeout must be positive")
	}
	var recipients []age.Recipient
	for _, k := range encryptTo {
		r, err := age.ParseRecipients(strings.NewReader(k))
		if err != nil || len(r) != 1 {
			return errorf(e, "backup: -encrypt-to %q is not an age public key (age1...)", k)
		}
		recipients = append(recipients, r...)
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	servers, err := selectServers(cfg, names)
	if err != nil {
		return errorf(e, "%v", err)
	}
	dir := *out
	if !filepath.IsAbs(dir) && e.Dir != "" {
		dir = filepath.Join(e.Dir, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errorf(e, "backup: %v", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return errorf(e, "backup: %s is open to other users (mode %v) and backups hold private keys: chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	failed := 0
	for _, s := range servers {
		if err := backupServer(ctx, e, cfg, s, dir, *acceptNew, *timeout, recipients, *incremental); errors.Is(err, remote.ErrNotDeployed) {
			errorf(e, "backup of server.%s: no mail server is installed there: run mailctl apply first", s.Name)
			failed++
		} else if err != nil {
			errorf(e, "backup of server.%s: %s", s.Name, oneLine(err.Error()))
			failed++
		}
		if ctx.Err() != nil {
			break
		}
	}
	if failed > 0 || ctx.Err() != nil {
		return exitError
	}
	return exitOK
}

// backupServer writes dir/<server>-<UTC stamp>.tar.gz (.tar.gz.age when
// encrypted to recipients), 0600, under a temporary name until it is whole
// and checked against its manifest (checked as it streams in, not read
// again).
func backupServer(ctx context.Context, e *env, cfg *config.Config, s *config.Server, dir string, acceptNew bool, stall time.Duration, recipients []age.Recipient, incremental bool) error {
	start := time.Now()
	var opts remote.BackupOptions
	var base *backup.Manifest
	baseName := ""
	if incremental {
		last, m, err := lastBackup(dir, s.Name)
		if err != nil {
			return err
		}
		if last == "" {
			fmt.Fprintf(e.Stdout, "server.%s: no backup in %s yet: a full one\n", s.Name, dir)
		} else {
			base, baseName = m, filepath.Base(last)
			if opts.Base, err = json.Marshal(daemon.BackupBase{Name: baseName, Manifest: base}); err != nil {
				return err
			}
		}
	}
	dctx, cancel := context.WithTimeout(ctx, stall)
	conn, err := target.Open(dctx, cfg, s, target.Options{AcceptNewHostKey: acceptNew, Passphrase: passphrasePrompt(e), Logger: logger(e)})
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	name := filepath.Join(dir, fmt.Sprintf("%s-%s.tar.gz", s.Name, start.UTC().Format("20060102T150405Z")))
	if len(recipients) > 0 {
		name += ".age"
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".partial-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	defer f.Close()
	if base != nil {
		fmt.Fprintf(e.Stdout, "server.%s: backing up what changed since %s...\n", s.Name, baseName)
	} else {
		fmt.Fprintf(e.Stdout, "server.%s: backing up...\n", s.Name)
	}

	w := newWatch(ctx, e, "server."+s.Name, "received", stall)
	defer w.stop()
	// The manifest is checked as the backup streams in.
	pr, pw := io.Pipe()
	type verified struct {
		m   *backup.Manifest
		err error
	}
	vc := make(chan verified, 1)
	go func() {
		m, err := backup.VerifyAgainst(w.ctx, pr, base)
		io.Copy(io.Discard, pr) // never block the writer
		pr.Close()
		vc <- verified{m, err}
	}()
	var dst io.WriteCloser = nopWriteCloser{f}
	if len(recipients) > 0 {
		if dst, err = age.Encrypt(f, recipients...); err != nil {
			return fmt.Errorf("encrypt: %w", err)
		}
	}
	berr := conn.Backup(w.ctx, w.writer(io.MultiWriter(dst, pw)), opts)
	pw.CloseWithError(berr)
	v := <-vc
	if berr != nil {
		return w.err(berr)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if v.err != nil {
		return fmt.Errorf("the backup received is not whole: %w", v.err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The manifest beside it first: a backup without one cannot be the
	// base of the next incremental one.
	mb, err := json.MarshalIndent(v.m.Full(), "", " ")
	if err != nil {
		return err
	}
	if err := writeFileSync(name+manifestSuffix, mb); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	what := "backup"
	if base != nil {
		what = "incremental backup on " + baseName
	}
	fmt.Fprintf(e.Stdout, "server.%s: %s: %s of %d files, %s, in %s (%s received)\n", s.Name, name, what, len(v.m.Files),
		bytesIEC(v.m.Bytes()), time.Since(start).Round(100*time.Millisecond), bytesIEC(w.n.Load()))
	return nil
}

// writeFileSync writes b to name, 0600, and syncs it.
func writeFileSync(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// link is one backup of a chain.
type link struct {
	file string
	m    *backup.Manifest
}

// backupChain returns the backups that file builds on, the full one first
// and file last, each read whole and checked (an incremental one against
// the one before). They are looked for beside file.
func backupChain(ctx context.Context, file string, identities []age.Identity) ([]link, error) {
	var chain []link
	for next := file; ; {
		f, _, err := openBackup(next, identities)
		if err != nil {
			return nil, err
		}
		m, err := backup.Verify(ctx, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", next, err)
		}
		chain = append([]link{{next, m}}, chain...)
		if !m.Incremental() {
			return chain, nil
		}
		if len(chain) > 1000 {
			return nil, fmt.Errorf("%s: a chain of more than 1000 backups", file)
		}
		next = filepath.Join(filepath.Dir(file), m.Base)
		if _, err := os.Stat(next); err != nil {
			return nil, fmt.Errorf("%s is incremental and builds on %s, which is not beside it: %w", chain[0].file, m.Base, err)
		}
	}
}

// manifestSuffix ends the name of the file beside each backup that holds
// its full manifest (names, sizes, checksums; no content): what the next
// incremental backup is taken against, readable without the backup's
// age identity.
const manifestSuffix = ".manifest.json"

// lastBackup returns the newest backup of server in dir and its full
// manifest, or "" when there is none.
func lastBackup(dir, server string) (string, *backup.Manifest, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, err
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(server) + `-\d{8}T\d{6}Z\.tar\.gz(\.age)?$`)
	var names []string
	for _, d := range ents {
		if re.MatchString(d.Name()) {
			names = append(names, filepath.Join(dir, d.Name()))
		}
	}
	if len(names) == 0 {
		return "", nil, nil
	}
	// <server>-<UTC time>: the names sort by time.
	slices.SortFunc(names, func(a, b string) int {
		return strings.Compare(strings.TrimSuffix(a, ".age"), strings.TrimSuffix(b, ".age"))
	})
	last := names[len(names)-1]
	b, err := os.ReadFile(last + manifestSuffix)
	if err != nil {
		return "", nil, fmt.Errorf("the last backup %s has no %s beside it: take a full backup (without -incremental)", last, manifestSuffix)
	}
	var m backup.Manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Format != backup.Format {
		return "", nil, fmt.Errorf("%s: not a backup manifest", last+manifestSuffix)
	}
	return last, &m, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// ageMagic starts every age-encrypted file.
const ageMagic = "age-encryption.org/"

// openBackup opens a backup file for reading, decrypting it with
// identities when it is encrypted.
func openBackup(name string, identities []age.Identity) (io.ReadCloser, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	head := make([]byte, len(ageMagic))
	n, _ := io.ReadFull(f, head)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	if string(head[:n]) != ageMagic {
		return f, fi.Size(), nil
	}
	if len(identities) == 0 {
		f.Close()
		return nil, 0, fmt.Errorf("%s is encrypted (age): give the key file with -identity FILE", name)
	}
	r, err := age.Decrypt(f, identities...)
	if err != nil {
		f.Close()
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, 0, fmt.Errorf("%s: the -identity keys do not open it (encrypted to another key)", name)
		}
		return nil, 0, fmt.Errorf("%s: decrypt: %w", name, err)
	}
	return readCloser{r, f}, fi.Size(), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// readIdentities reads age secret keys (AGE-SECRET-KEY-..., one a line)
// from the files named.
func readIdentities(files []string) ([]age.Identity, error) {
	var ids []age.Identity
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		got, err := age.ParseIdentities(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("-identity %s: %v", name, err)
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func runRestore(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "restore", "[-server NAME] [-force] [-identity FILE]... [-timeout 2m] BACKUP")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, restoreHelp) })
	server := fs.String("server", "", "restore onto this server `NAME` (needed when there are several)")
	force := fs.Bool("force", false, "replace a data directory that already holds mail")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up when a transfer makes no progress for this long")
	var identityFiles listFlag
	fs.Var(&identityFiles, "identity", "decrypt an encrypted backup with the age secret keys in `FILE` (repeatable)")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return errorf(e, "restore needs one BACKUP file (written by mailctl backup)")
	}
	if *timeout <= 0 {
		return errorf(e, "restore: -timeout must be positive")
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	s, err := oneServer(cfg, *server)
	if err != nil {
		return errorf(e, "%v", err)
	}
	identities, err := readIdentities(identityFiles)
	if err != nil {
		return errorf(e, "restore: %s", oneLine(err.Error()))
	}
	file := fs.Arg(0)
	// A damaged backup, or a chain with a missing link, is found before
	// the server is touched.
	chain, err := backupChain(ctx, file, identities)
	if err != nil {
		return errorf(e, "restore: %s", oneLine(err.Error()))
	}
	m := chain[len(chain)-1].m
	var src io.Reader
	var size int64
	if len(chain) == 1 {
		f, n, err := openBackup(file, identities)
		if err != nil {
			return errorf(e, "restore: %s", oneLine(err.Error()))
		}
		defer f.Close()
		src, size = f, n
	} else {
		// An incremental backup: its chain is applied here, from the
		// full backup on, and the server receives the full backup that
		// results.
		stage, err := os.MkdirTemp(filepath.Dir(file), ".restore-stage-")
		if err != nil {
			return errorf(e, "restore: %v", err)
		}
		defer os.RemoveAll(stage)
		fmt.Fprintf(e.Stdout, "server.%s: applying %d backups, from %s on...\n", s.Name, len(chain), filepath.Base(chain[0].file))
		var full *backup.Manifest
		for _, c := range chain {
			f, _, err := openBackup(c.file, identities)
			if err != nil {
				return errorf(e, "restore: %s", oneLine(err.Error()))
			}
			full, err = backup.Apply(ctx, f, stage, full)
			f.Close()
			if err != nil {
				return errorf(e, "restore: %s: %s", c.file, oneLine(err.Error()))
			}
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(backup.WriteDir(ctx, pw, stage, full)) }()
		defer pr.Close()
		src, size = pr, full.Bytes()
	}
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	conn, err := target.Open(dctx, cfg, s, target.Options{AcceptNewHostKey: *acceptNew, Passphrase: passphrasePrompt(e), Logger: logger(e)})
	cancel()
	if err != nil {
		return errorf(e, "%v", err)
	}
	defer conn.Close()
	if !*force {
		octx, cancel := context.WithTimeout(ctx, *timeout)
		what, err := conn.Occupied(octx)
		cancel()
		if errors.Is(err, remote.ErrNotDeployed) {
			return errorf(e, "restore: server.%s has no mail server installed: run mailctl apply first", s.Name)
		}
		if err != nil {
			return errorf(e, "restore: %v", err)
		}
		if what != "" {
			return errorf(e, "restore: server.%s holds %s; restoring would replace them (give -force to do so)", s.Name, what)
		}
	}
	fmt.Fprintf(e.Stdout, "server.%s: restoring the backup of %s taken %s (%d files, %s)...\n",
		s.Name, m.Hostname, m.Created.Format(time.RFC3339), len(m.Files), bytesIEC(m.Bytes()))
	w := newWatch(ctx, e, "server."+s.Name, "sent", *timeout)
	defer w.stop()
	out, err := conn.Restore(w.ctx, w.reader(src), remote.RestoreOptions{Force: *force, Uploaded: func() {
		// Unpacking and the health check report no progress: bound
		// them by the size instead (at least 20 MiB/s).
		w.expect(5*time.Minute+time.Duration(size/(20<<20))*time.Second, "the restore on the server")
		sent := ""
		if n := w.n.Load(); n > 0 {
			sent = bytesIEC(n) + " sent; "
		}
		fmt.Fprintf(e.Stdout, "server.%s: %sthe server stops while the backup is put in place...\n", s.Name, sent)
	}})
	if errors.Is(err, remote.ErrNotDeployed) {
		return errorf(e, "restore: server.%s has no mail server installed: run mailctl apply first", s.Name)
	}
	if err != nil {
		return errorf(e, "restore of server.%s: %s", s.Name, oneLine(w.err(err).Error()))
	}
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if l != "" {
			fmt.Fprintf(e.Stdout, "server.%s: %s\n", s.Name, l)
		}
	}
	fmt.Fprintf(e.Stdout, "server.%s: restored and running.\n", s.Name)
	return exitOK
}

// watch reports the progress of a long transfer and ends it (cancelling
// ctx) when it stalls: every progressEvery a line with the bytes moved so
// far, and no byte for limit is an error.
type watch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	n      atomic.Int64
	done   chan struct{}
	once   sync.Once

	mu       sync.Mutex
	limit    time.Duration
	what     string // the step bounded by a deadline instead, or ""
	deadline time.Time
}

// errStalled is the cause of a watch's cancellation.
var errStalled = errors.New("stalled")

func newWatch(ctx context.Context, e *env, label, verb string, limit time.Duration) *watch {
	w := &watch{done: make(chan struct{}), limit: limit}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		start, last, lastN, lastPrint := time.Now(), time.Now(), int64(0), time.Now()
		for {
			select {
			case <-w.done:
				return
			case <-w.ctx.Done():
				return
			case now := <-tick.C:
				n := w.n.Load()
				if n != lastN {
					last, lastN = now, n
				}
				w.mu.Lock()
				limit, what, deadline := w.limit, w.what, w.deadline
				w.mu.Unlock()
				switch {
				case what != "" && now.After(deadline):
					w.cancel(fmt.Errorf("%w: %s took longer than %s", errStalled, what, limit))
					return
				case what == "" && now.Sub(last) >= limit:
					w.cancel(fmt.Errorf("%w: nothing %s for %s (after %s)", errStalled, verb, limit, bytesIEC(n)))
					return
				}
				if what == "" && now.Sub(lastPrint) >= progressEvery {
					lastPrint = now
					secs := now.Sub(start).Seconds()
					fmt.Fprintf(e.Stdout, "%s: %s %s (%.1f MiB/s)...\n", label, bytesIEC(n), verb, float64(n)/(1<<20)/secs)
				}
			}
		}
	}()
	return w
}

// expect switches from watching bytes to a deadline for a step that
// moves none.
func (w *watch) expect(limit time.Duration, what string) {
	w.mu.Lock()
	w.limit, w.what, w.deadline = limit, what, time.Now().Add(limit)
	w.mu.Unlock()
}

func (w *watch) stop() {
	w.once.Do(func() { close(w.done) })
	w.cancel(nil)
}

// err replaces an error caused by the watch's cancellation with its
// cause.
func (w *watch) err(err error) error {
	if cause := context.Cause(w.ctx); errors.Is(cause, errStalled) {
		return cause
	}
	return err
}

func (w *watch) writer(dst io.Writer) io.Writer { return &countingWriter{dst, &w.n} }
func (w *watch) reader(src io.Reader) io.Reader { return &countingReader{src, &w.n} }

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
