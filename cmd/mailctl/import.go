package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mailctl/mailctl/internal/mailfmt"
	"github.com/mailctl/mailctl/plan/migrate"
	"github.com/mailctl/mailctl/remote"
	"github.com/mailctl/mailctl/server/daemon"
)

func init() {
	register(&command{name: "import", synopsis: "copy an mbox, a Maildir or a Google Takeout mbox into a user's mailboxes (resumable)", run: runImport})
}

const importHelp = `FILE is an mbox (mboxrd or mboxo: Status, X-Status and X-Keywords give the
flags); its messages go to the folder named after the file ("Sent.mbox" to
Sent, "Inbox" to INBOX) or -folder. A Google Takeout mbox is recognised by
its X-Gmail-Labels header: each message goes to one folder, mapped from its
labels the way mailctl migrate maps Gmail's (Inbox to INBOX, Sent, Drafts,
Trash, Spam to Junk, your labels to folders of the same name, a message
with no other label to Archive; Starred gives \Flagged, no Unread gives
\Seen, Important and the Category tabs are left out).

DIR is a Maildir (Maildir++: INBOX in DIR, folder "A/B" in DIR/.A.B, flags
from the file names and dovecot-keywords, the order of dovecot-uidlist) or
a directory of mbox files ("A/B.mbox" to folder A/B).

The messages are appended through the running server (over SSH for a VPS,
locally for the lab) in the order of the source, so their UIDs ascend in
that order, with their flags and dates. A state file remembers what was
imported: a second run copies nothing, a run that was interrupted (Ctrl-C,
a lost connection, a crash) copies the rest once when run again, and what
the target lost since (a server set up again) is copied again.

Exit status: 0 when every message was imported, 1 otherwise.
`

func runImport(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "import", "-user ADDR [-folder NAME] [-server NAME] [-state FILE] [-accept-new-host-key] FILE|DIR")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, importHelp) })
	user := fs.String("user", "", "the user `ADDR` whose mailboxes get the messages")
	folder := fs.String("folder", "", "put every message of an mbox FILE into the folder `NAME` (default: from the file's name, or the Takeout labels)")
	name := fs.String("server", "", "the server `NAME` (default: the server of the user's domain)")
	stateFile := fs.String("state", "", "the import's state `FILE` (default <config dir>/.mailctl/import/ADDR.db)")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit to reach the server")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return errorf(e, "import needs one FILE or DIR (got %d arguments)", fs.NArg())
	}
	if *user == "" {
		return errorf(e, "import needs -user ADDR")
	}
	src := fs.Arg(0)
	sources, err := importSources(src, *folder)
	if err != nil {
		return errorf(e, "import: %v", err)
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	addr, s, err := userServer(cfg, *user, *name)
	if err != nil {
		return errorf(e, "import: %v", err)
	}
	sf := *stateFile
	if sf == "" {
		sf = filepath.Join(cfg.Dir, ".mailctl", "import", addr+".db")
	}
	st, err := openImportState(sf, src)
	if err != nil {
		return errorf(e, "import: %v", err)
	}
	defer st.close()
	tr, err := openTransfer(ctx, e, cfg, s, *acceptNew, *timeout)
	if err != nil {
		return errorf(e, "import: %v", err)
	}
	defer tr.close()
	start := time.Now()
	im := &importer{tr: tr, user: addr, state: st, sources: sources, prog: newProgress(e, "import"), folders: map[string]int{}, sizes: map[string]int64{}}
	err = im.run(ctx)
	fmt.Fprintf(e.Stdout, "Imported %s (%s) into the mailboxes of %s, %d already there, in %s.\n", plural(im.copied, "message"),
		bytesIEC(im.bytes), addr, im.skipped, time.Since(start).Round(100*time.Millisecond))
	for _, f := range sortedKeys(im.folders) {
		fmt.Fprintf(e.Stdout, "  %s: %d\n", f, im.folders[f])
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errorf(e, "import interrupted: run the same command again to import the rest")
		}
		hint := "run the same command again to import the rest"
		if strings.Contains(err.Error(), " is over quota") {
			hint = "raise the quota or make room, then " + hint
		}
		return errorf(e, "import of %s stopped: %v (%s)", src, err, hint)
	}
	return exitOK
}

func sortedKeys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// importSource is one mbox file or Maildir folder to import.
type importSource struct {
	// rel names the source in the state (its path under the argument).
	rel     string
	path    string
	maildir bool
	// folder is the target folder; "" for an mbox whose messages' labels
	// (Google Takeout) choose it.
	folder string
	// labels: the folder comes from each message's X-Gmail-Labels when it
	// has some.
	labels bool
	// unsubscribed: a Maildir folder left out of its subscriptions file
	// (created unsubscribed).
	unsubscribed bool
}

// importSources lists what the argument holds: an mbox file, a Maildir++
// tree, or a directory of mbox files.
func importSources(arg, folder string) ([]importSource, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		if !isMboxFile(arg) {
			return nil, fmt.Errorf("%s: %w", arg, mailfmt.ErrNotMbox)
		}
		f := folder
		if f == "" {
			f = folderOfFile(filepath.Base(arg))
		}
		return []importSource{{rel: filepath.Base(arg), path: arg, folder: f, labels: folder == ""}}, nil
	}
	if folder != "" {
		return nil, errors.New("-folder applies to an mbox FILE, not to a directory")
	}
	if mds, err := mailfmt.MaildirFolders(arg); err == nil {
		subs, ok := mailfmt.MaildirSubscriptions(arg)
		var out []importSource
		for _, m := range mds {
			rel, _ := filepath.Rel(arg, m.Dir)
			out = append(out, importSource{rel: rel, path: m.Dir, maildir: true, folder: m.Name, unsubscribed: ok && !subs[m.Name]})
		}
		return out, nil
	}
	var out []importSource
	err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != arg {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isMboxFile(p) {
			return nil
		}
		rel, _ := filepath.Rel(arg, p)
		dir, file := filepath.Split(rel)
		out = append(out, importSource{rel: rel, path: p, folder: filepath.ToSlash(dir) + folderOfFile(file), labels: true})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds neither a Maildir nor mbox files", arg)
	}
	return out, nil
}

// folderOfFile is the folder of an mbox file: its name without .mbox,
// INBOX for "inbox" in any case.
func folderOfFile(name string) string {
	name = strings.TrimSuffix(name, ".mbox")
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// isMboxFile reports whether the file starts (after blank lines) with a
// From_ line, or is an empty file named *.mbox (an empty folder).
func isMboxFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	r := bufio.NewReader(io.LimitReader(f, 64<<10))
	for {
		line, err := r.ReadString('\n')
		if strings.TrimSpace(line) != "" {
			return strings.HasPrefix(line, "From ")
		}
		if err != nil {
			return strings.HasSuffix(p, ".mbox")
		}
	}
}

// each calls fn with the messages of the source, in order.
func (s importSource) each(fn func(mailfmt.Message) error) error {
	if s.maildir {
		ents, err := mailfmt.ReadMaildir(s.path)
		if err != nil {
			return err
		}
		for _, e := range ents {
			m, err := e.Load()
			if errors.Is(err, fs.ErrNotExist) {
				continue // moved by a client since the listing
			}
			if err != nil {
				return err
			}
			if err := fn(m); err != nil {
				return err
			}
		}
		return nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := mailfmt.NewMboxReader(f)
	for {
		m, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.path, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// takeoutTarget is the folder and flags of a Google Takeout message from
// its labels, mapped as mailctl migrate maps Gmail's folders.
func takeoutTarget(labels []string) (folder string, flags []string) {
	var names []string
	inAllMail := true
	seen := true
	for _, l := range labels {
		switch l {
		case "Unread":
			seen = false
		case "Starred":
			flags = append(flags, mailfmt.FlagFlagged)
		case "Drafts":
			flags = append(flags, mailfmt.FlagDraft)
		}
		f, ok := migrate.TakeoutFolder(l)
		if !ok {
			continue
		}
		if migrate.IsGmailSpamOrTrash(f) {
			inAllMail = false
		}
		names = append(names, f)
	}
	if inAllMail {
		names = append(names, migrate.GmailAllMail)
	}
	if seen {
		flags = append(flags, mailfmt.FlagSeen)
	}
	order, _ := migrate.MapFolderNames(names, '/', nil, nil)
	if len(order) == 0 {
		return migrate.TargetArchive, flags
	}
	return order[0].Target, flags
}

// importer runs one import.
type importer struct {
	tr      *transfer
	user    string
	state   *importState
	sources []importSource
	prog    *progress

	mu      sync.Mutex
	copied  int
	skipped int
	bytes   int64
	folders map[string]int
	sizes   map[string]int64 // of the messages sent, until acknowledged
}

// mailboxInfo is what the target says of a mailbox.
type mailboxInfo struct{ uidValidity, uidNext uint32 }

func (im *importer) run(ctx context.Context) error {
	// What the state says was imported counts only if the target still
	// has it: the same mailbox (UIDVALIDITY) and the UID given out.
	boxes := map[string]mailboxInfo{}
	err := im.tr.stream(ctx, im.user, remote.ExportMailboxes, func(rec mailfmt.Record, _ io.Reader) error {
		boxes[rec.Mailbox] = mailboxInfo{rec.UIDValidity, rec.UIDNext}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the mailboxes of %s: %w", im.user, err)
	}
	lost, err := im.state.forgetLost(boxes)
	if err != nil {
		return err
	}
	unclean, err := im.state.begin()
	if err != nil {
		return err
	}
	// After an interrupted run, or when the target lost messages, the
	// target's messages are compared by digest before appending: what an
	// interrupted run appended without recording it is not appended again.
	var have map[string]map[string][]uint32
	if unclean || lost > 0 {
		have = map[string]map[string][]uint32{}
		err := im.tr.stream(ctx, im.user, remote.ExportDigests, func(rec mailfmt.Record, _ io.Reader) error {
			if rec.Kind == mailfmt.KindMessage {
				if have[rec.Mailbox] == nil {
					have[rec.Mailbox] = map[string][]uint32{}
				}
				have[rec.Mailbox][rec.Digest] = append(have[rec.Mailbox][rec.Digest], rec.UID)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read the digests of %s's messages: %w", im.user, err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	prodErr := make(chan error, 1)
	go func() {
		err := im.produce(pw, have, boxes)
		pw.CloseWithError(err)
		prodErr <- err
	}()
	acks := &ackWriter{im: im}
	perr := im.tr.pipe.Pipe(ctx, im.tr.layout.ImportCommand(im.user), pr, acks)
	pr.CloseWithError(errors.New("the import stopped"))
	ferr := acks.finish()
	gerr := <-prodErr
	switch {
	case gerr != nil && !errors.Is(gerr, io.ErrClosedPipe) && !strings.Contains(gerr.Error(), "the import stopped"):
		return gerr
	case acks.serverErr != "":
		return errors.New(acks.serverErr)
	case perr != nil:
		return fmt.Errorf("server.%s: %w", im.tr.server, remote.TransferError(perr))
	case ferr != nil:
		return ferr
	case !acks.done:
		return errors.New("the server's answer ended early")
	}
	return im.state.end()
}

// produce writes the transfer stream of what is to import.
func (im *importer) produce(w io.Writer, have map[string]map[string][]uint32, boxes map[string]mailboxInfo) error {
	sw := mailfmt.NewStreamWriter(w)
	cur := ""
	for _, src := range im.sources {
		if src.maildir {
			// Every folder of a Maildir, even an empty one.
			if err := sw.Mailbox(mailfmt.Record{Mailbox: src.folder, Subscribed: !src.unsubscribed}); err != nil {
				return err
			}
			cur = src.folder
		}
		n := 0
		err := src.each(func(m mailfmt.Message) error {
			n++
			key := src.rel + "\x00" + m.Key
			if im.state.has(key) {
				im.skip()
				return nil
			}
			folder, flags := src.folder, m.Flags
			if src.labels && len(m.Labels) > 0 {
				var more []string
				folder, more = takeoutTarget(m.Labels)
				for _, f := range more {
					if !mailfmt.HasFlag(flags, f) {
						flags = append(flags, f)
					}
				}
			}
			if have != nil {
				sum := sha256.Sum256(m.Body)
				d := hex.EncodeToString(sum[:])
				if uids := have[folder][d]; len(uids) > 0 {
					have[folder][d] = uids[1:]
					im.skip()
					return im.state.recordAcks([]daemon.ImportAck{{Key: key, Mailbox: folder, UIDValidity: boxes[folder].uidValidity, UID: uids[0]}})
				}
			}
			if folder != cur {
				if err := sw.Mailbox(mailfmt.Record{Mailbox: folder, Subscribed: true}); err != nil {
					return err
				}
				cur = folder
			}
			im.mu.Lock()
			im.sizes[key] = int64(len(m.Body))
			im.mu.Unlock()
			return sw.Message(mailfmt.Record{Mailbox: folder, Key: key, Flags: flags, Date: m.Date, Size: int64(len(m.Body))}, bytes.NewReader(m.Body))
		})
		if err != nil {
			return err
		}
		if n == 0 && !src.maildir {
			// An empty mbox file is an empty folder.
			if err := sw.Mailbox(mailfmt.Record{Mailbox: src.folder, Subscribed: true}); err != nil {
				return err
			}
		}
	}
	return sw.End()
}

func (im *importer) skip() {
	im.mu.Lock()
	im.skipped++
	im.mu.Unlock()
}

// ackWriter reads the server's JSON lines and records each appended
// message in the state, in batches.
type ackWriter struct {
	im        *importer
	buf       []byte
	pending   []daemon.ImportAck
	lastFlush time.Time
	done      bool
	serverErr string
}

func (a *ackWriter) Write(p []byte) (int, error) {
	a.buf = append(a.buf, p...)
	for {
		i := bytes.IndexByte(a.buf, '\n')
		if i < 0 {
			break
		}
		line := a.buf[:i]
		var ack daemon.ImportAck
		if err := json.Unmarshal(line, &ack); err != nil {
			return 0, fmt.Errorf("the server's answer %.80q: %w", line, err)
		}
		a.buf = a.buf[i+1:]
		switch {
		case ack.Error != "":
			a.serverErr = ack.Error
		case ack.Done != nil:
			a.done = true
		default:
			a.pending = append(a.pending, ack)
		}
	}
	if len(a.pending) >= 200 || time.Since(a.lastFlush) > time.Second {
		if err := a.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (a *ackWriter) flush() error {
	a.lastFlush = time.Now()
	if len(a.pending) == 0 {
		return nil
	}
	if err := a.im.state.recordAcks(a.pending); err != nil {
		return err
	}
	a.im.mu.Lock()
	for _, ack := range a.pending {
		a.im.copied++
		a.im.folders[ack.Mailbox]++
		a.im.bytes += a.im.sizes[ack.Key]
		delete(a.im.sizes, ack.Key)
	}
	n, size, skipped := a.im.copied, a.im.bytes, a.im.skipped
	a.im.mu.Unlock()
	a.pending = a.pending[:0]
	a.im.prog.update(n, size, skipped)
	return nil
}

func (a *ackWriter) finish() error { return a.flush() }

// importState is the bbolt file that remembers what was imported: per
// source argument (its absolute path), a bucket of message keys whose
// values are "mailbox\x00uidvalidity\x00uid" of the message in the target,
// and a "running" mark while a run is under way.
type importState struct {
	db     *bolt.DB
	bucket []byte
}

var (
	stateMeta    = []byte("running")
	stateVersion = []byte("version")
)

func openImportState(file, src string) (*importState, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, fmt.Errorf("create the import state: %w", err)
	}
	db, err := bolt.Open(file, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("the import state %s is in use: is another import of this user running?", file)
		}
		return nil, fmt.Errorf("open the import state %s: %w", file, err)
	}
	s := &importState{db: db, bucket: []byte("source:" + abs)}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(s.bucket)
		if err != nil {
			return err
		}
		return b.Put(stateVersion, []byte("1"))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open the import state %s: %w", file, err)
	}
	return s, nil
}

func (s *importState) close() error { return s.db.Close() }

func (s *importState) has(key string) bool {
	found := false
	s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(s.bucket).Get([]byte("m:"+key)) != nil
		return nil
	})
	return found
}

func (s *importState) recordAcks(acks []daemon.ImportAck) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(s.bucket)
		for _, a := range acks {
			v := a.Mailbox + "\x00" + strconv.FormatUint(uint64(a.UIDValidity), 10) + "\x00" + strconv.FormatUint(uint64(a.UID), 10)
			if err := b.Put([]byte("m:"+a.Key), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record the import state: %w", err)
	}
	return nil
}

// forgetLost forgets the messages recorded as imported that the target
// no longer has: their mailbox is gone or has another UIDVALIDITY, or
// their UID was never given out (a server restored from an older backup).
func (s *importState) forgetLost(boxes map[string]mailboxInfo) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(s.bucket)
		var lost [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if !bytes.HasPrefix(k, []byte("m:")) {
				return nil
			}
			parts := strings.Split(string(v), "\x00")
			if len(parts) != 3 {
				lost = append(lost, k)
				return nil
			}
			uidv, _ := strconv.ParseUint(parts[1], 10, 32)
			uid, _ := strconv.ParseUint(parts[2], 10, 32)
			mb, ok := boxes[parts[0]]
			if !ok || uint64(mb.uidValidity) != uidv || uid >= uint64(mb.uidNext) {
				lost = append(lost, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range lost {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(lost)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("check the import state: %w", err)
	}
	return n, nil
}

// begin marks a run under way and reports whether the previous one did
// not end cleanly.
func (s *importState) begin() (unclean bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(s.bucket)
		unclean = b.Get(stateMeta) != nil
		return b.Put(stateMeta, []byte(time.Now().UTC().Format(time.RFC3339)))
	})
	return unclean, err
}

// end marks the run finished.
func (s *importState) end() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(s.bucket).Delete(stateMeta)
	})
}
