package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// permanentError is never retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// retryable reports whether err is throttling or a connection problem
// worth a reconnection: NO/BAD with THROTTLED, OVERQUOTA (Gmail's
// bandwidth limit, at the source) or UNAVAILABLE, or an error that is no
// IMAP status response at all (a dropped connection, a timeout). What the
// target says or a refused certificate is made permanent before it gets
// here: see targetError and tlsError.
func retryable(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return false
	}
	var ie *goimap.Error
	if errors.As(err, &ie) {
		switch strings.ToUpper(string(ie.Code)) {
		case "THROTTLED", string(goimap.ResponseCodeOverQuota), string(goimap.ResponseCodeUnavailable):
			return true
		}
		return strings.Contains(strings.ToUpper(ie.Text), "[THROTTLED]")
	}
	return true
}

// targetError makes a target's OVERQUOTA permanent: the source's is
// Gmail's bandwidth limit, which passes, but a full target mailbox stays
// full until someone raises the quota.
func targetError(err error, doing string) error {
	var ie *goimap.Error
	if errors.As(err, &ie) && ie.Code == goimap.ResponseCodeOverQuota {
		return &permanentError{fmt.Errorf("target: %s: the mailbox is over its quota at the target (raise the user's quota and run again): %w", doing, err)}
	}
	return fmt.Errorf("target: %s: %w", doing, err)
}

// tlsError makes a refused certificate permanent: trying again gets the
// same certificate.
func tlsError(ep Endpoint, err error) error {
	var (
		ve *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	if errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return &permanentError{fmt.Errorf("%w (the certificate of %s is not trusted: give its CA with ca_file or -ca-file, or the address of the server with this name with -connect)", err, ep.Address)}
	}
	return err
}

// dial connects and logs in.
func dial(ctx context.Context, ep Endpoint, cred Credentials) (*imapclient.Client, error) {
	host, _, err := net.SplitHostPort(ep.Address)
	if err != nil {
		return nil, &permanentError{fmt.Errorf("connect %q: %w", ep.Address, err)}
	}
	tc := &tls.Config{ServerName: host}
	if cas := slices.DeleteFunc(append([]string{ep.CAFile}, ep.MoreCAFiles...), func(f string) bool { return f == "" }); len(cas) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, f := range cas {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, &permanentError{fmt.Errorf("read CA file %q: %w", f, err)}
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, &permanentError{fmt.Errorf("read CA file %q: no PEM certificate", f)}
			}
		}
		tc.RootCAs = pool
	}
	addr := ep.Address
	if ep.Dial != "" {
		addr = ep.Dial
	}
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if addr != ep.Address {
			return nil, fmt.Errorf("connect %q at %s: %w", ep.Address, addr, err)
		}
		return nil, fmt.Errorf("connect %q: %w", ep.Address, err)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	var c *imapclient.Client
	opts := &imapclient.Options{TLSConfig: tc}
	switch ep.TLS {
	case "", "implicit":
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, tlsError(ep, fmt.Errorf("connect %q: TLS: %w", ep.Address, err))
		}
		c = imapclient.New(tconn, opts)
	case "starttls":
		c, err = imapclient.NewStartTLS(conn, opts)
		if err != nil {
			conn.Close()
			return nil, tlsError(ep, fmt.Errorf("connect %q: STARTTLS: %w", ep.Address, err))
		}
	default:
		c = imapclient.New(conn, opts)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %q: greeting: %w", ep.Address, err)
	}
	if cred.TokenCommand != "" {
		token, err := runTokenCommand(ctx, cred.TokenCommand, cred.TokenDir)
		if err != nil {
			c.Close()
			return nil, err
		}
		err = c.Authenticate(&xoauth2{user: cred.Username, token: token})
		if err != nil {
			c.Close()
			return nil, loginError(ep, cred, "XOAUTH2", err)
		}
	} else if err := c.Login(cred.Username, cred.Password).Wait(); err != nil {
		c.Close()
		return nil, loginError(ep, cred, "LOGIN", err)
	}
	return c, nil
}

func loginError(ep Endpoint, cred Credentials, mech string, err error) error {
	err = fmt.Errorf("log in to %q as %q (%s): %w", ep.Address, cred.Username, mech, err)
	if retryable(err) {
		return err
	}
	return &permanentError{err}
}

// runTokenCommand returns the first line the command prints (an OAuth2
// access token), running it in dir unless dir is "". Its output is never
// logged.
func runTokenCommand(ctx context.Context, command, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = dir
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &permanentError{fmt.Errorf("run oauth2_token_command: %w: %s", err, strings.TrimSpace(stderr.String()))}
	}
	token, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if token = strings.TrimSpace(token); token == "" {
		return "", &permanentError{errors.New("run oauth2_token_command: it printed no token")}
	}
	return token, nil
}

// xoauth2 is the client side of Google's XOAUTH2 SASL mechanism
// (https://developers.google.com/gmail/imap/xoauth2-protocol).
type xoauth2 struct{ user, token string }

var _ sasl.Client = (*xoauth2)(nil)

func (x *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next gets the server's error challenge: a JSON status, sent when the
// token is refused. The protocol's answer is an empty response, after
// which the server fails the command; but go-imap sends an empty response
// as "=" (RFC 4959's empty initial response), which Dovecot answers with
// BAD and a closed connection. So the exchange ends here with an error
// saying the token was refused, quoting the status (never the token).
func (x *xoauth2) Next(challenge []byte) ([]byte, error) {
	status := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, string(challenge))
	if len(status) > 200 {
		status = status[:200]
	}
	return nil, &permanentError{fmt.Errorf("the server refused the access token: %s", status)}
}

// session is one connection pair: it lists the source and copies every
// folder. scan asks to read target folders' keys before appending.
func (r *runner) session(ctx context.Context, scan bool) error {
	src, err := dial(ctx, r.job.Source, r.job.SourceAuth)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, err := dial(ctx, r.job.Target, r.job.TargetAuth)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer dst.Close()
	stop := context.AfterFunc(ctx, func() { src.Close(); dst.Close() })
	defer stop()

	srcList, err := src.List("", "*", nil).Collect()
	if err != nil {
		return fmt.Errorf("source: list folders: %w", err)
	}
	dstList, err := dst.List("", "*", nil).Collect()
	if err != nil {
		return fmt.Errorf("target: list folders: %w", err)
	}
	delim := '/'
	dstFolders := map[string]bool{}
	for _, l := range dstList {
		if l.Delim != 0 {
			delim = l.Delim
		}
		if !hasAttr(l.Attrs, goimap.MailboxAttrNoSelect) {
			dstFolders[l.Mailbox] = true
		}
	}
	folders, excluded := mapFolders(srcList, delim, r.job)
	r.sum.Excluded = excluded
	s := &copier{r: r, src: src, dst: dst, dstFolders: dstFolders, scan: scan}
	if err := s.checkTargets(folders); err != nil {
		return err
	}
	stop()
	stopAll := context.AfterFunc(ctx, s.interrupt)
	defer stopAll()
	defer s.closeAll()
	for _, f := range folders {
		if err := s.copyFolder(ctx, f); err != nil {
			var ie *goimap.Error
			var pe *permanentError
			if errors.As(err, &ie) && !errors.As(err, &pe) && !retryable(err) {
				// One folder failing (it vanished, a name the target
				// refuses) does not stop the others.
				fs := r.folderSummary(f.Source, f.Target)
				r.fail(fs, fmt.Sprintf("folder %q: %s", f.Source, errorsText(err)))
				continue
			}
			return err
		}
	}
	src.Logout().Wait()
	dst.Logout().Wait()
	return nil
}

// copier copies folders over one connection pair.
type copier struct {
	r          *runner
	src, dst   *imapclient.Client
	dstFolders map[string]bool
	scan       bool

	mu   sync.Mutex // the runner's counts and state during parallel APPENDs
	more []*imapclient.Client
}

// msgMeta is what pass 1 learns of a source message.
type msgMeta struct {
	uid   goimap.UID
	seq   uint32
	flags []goimap.Flag
	date  time.Time
	size  int64
	key   string

	idx          int  // in the folder's todo list
	done, failed bool // acknowledged (or failed for good)
}

var (
	sectionMessageID = &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	sectionHeader    = &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, Peek: true}
	sectionAll       = &goimap.FetchItemBodySection{Peek: true}
)

// keys fetches the dedupe keys of the messages in set of the selected
// folder: the Message-ID, or a digest of the header when there is none.
func keys(c *imapclient.Client, set goimap.NumSet, meta bool) ([]*msgMeta, error) {
	opts := &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{sectionMessageID}}
	if meta {
		opts.Flags, opts.InternalDate, opts.RFC822Size = true, true, true
	}
	bufs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		return nil, err
	}
	var out []*msgMeta
	var missing goimap.UIDSet
	byUID := map[goimap.UID]*msgMeta{}
	for _, b := range bufs {
		m := &msgMeta{uid: b.UID, seq: b.SeqNum, flags: b.Flags, date: b.InternalDate, size: b.RFC822Size,
			key: messageID(b.FindBodySection(sectionMessageID))}
		if m.key == "" {
			missing.AddNum(m.uid)
		}
		byUID[m.uid] = m
		out = append(out, m)
	}
	if len(missing) > 0 {
		bufs, err := c.Fetch(missing, &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{sectionHeader}}).Collect()
		if err != nil {
			return nil, err
		}
		for _, b := range bufs {
			if m := byUID[b.UID]; m != nil {
				sum := sha256.Sum256(b.FindBodySection(sectionHeader))
				m.key = "sha256:" + hex.EncodeToString(sum[:])
			}
		}
	}
	return out, nil
}

// messageID returns the Message-ID of a header block, or "".
func messageID(hdr []byte) string {
	if len(hdr) == 0 {
		return ""
	}
	msg, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(hdr), strings.NewReader("\r\n\r\n")))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(msg.Header.Get("Message-Id"))
}

// checkTargets compares the target folders with the marks the state
// keeps of them. A folder that is gone, has another UIDVALIDITY or a lower
// UIDNEXT than after the last copy into it lost what was copied (the
// target was wiped and set up again, or restored from an older backup):
// its source folders are copied again from their first message, over a
// read of what the target still holds so that nothing is appended twice.
// Fewer messages alone are no loss: on the new server people delete and
// move mail, and that is not copied back.
func (s *copier) checkTargets(folders []folder) error {
	r := s.r
	sources := map[string][]string{}
	for _, f := range folders {
		sources[f.Target] = append(sources[f.Target], f.Source)
	}
	for target, mark := range r.us.Targets {
		if sources[target] == nil {
			continue
		}
		why := ""
		if !s.dstFolders[target] {
			why = "it is gone"
		} else {
			st, err := s.dst.Status(target, &goimap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait()
			if err != nil {
				return fmt.Errorf("target: status of %q: %w", target, err)
			}
			switch {
			case st.UIDValidity != mark.UIDValidity:
				why = fmt.Sprintf("its UIDVALIDITY is %d, was %d", st.UIDValidity, mark.UIDValidity)
			case uint32(st.UIDNext) < mark.UIDNext:
				why = fmt.Sprintf("its UIDNEXT is %d, was %d", st.UIDNext, mark.UIDNext)
			}
		}
		if why == "" {
			continue
		}
		r.log.Warn("the target folder lost what was copied into it, copying again what it lacks", "folder", target, "why", why)
		r.forgetTarget(target, sources[target])
	}
	return nil
}

// forgetTarget drops what the state says was copied into target from
// sources, and has the target read before appending to it.
func (r *runner) forgetTarget(target string, sources []string) {
	p := &r.pending
	for fk := range r.us.LastUID {
		for _, src := range sources {
			if strings.HasPrefix(fk, src+"\x00") {
				r.us.LastUID[fk] = 0
				if p.lastUID == nil {
					p.lastUID = map[string]uint32{}
				}
				p.lastUID[fk] = 0
			}
		}
	}
	for k, t := range r.us.Imported {
		if t == target {
			delete(r.us.Imported, k)
			delete(p.imported, k)
			p.forget = append(p.forget, k)
		}
	}
	delete(r.us.Targets, target)
	delete(p.marks, target)
	p.forgetT = append(p.forgetT, target)
	delete(r.inTarget, target)
	r.scanned[target] = false
	r.rescan[target] = true
}

// markTarget records the target folder's UIDVALIDITY and UIDNEXT after a
// copy into it.
func (s *copier) markTarget(target string) error {
	r := s.r
	if r.opts.DryRun || !s.dstFolders[target] {
		return nil
	}
	st, err := s.dst.Status(target, &goimap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait()
	if err != nil {
		return fmt.Errorf("target: status of %q: %w", target, err)
	}
	m := targetMark{UIDValidity: st.UIDValidity, UIDNext: uint32(st.UIDNext)}
	if r.us.Targets[target] == m {
		return nil
	}
	r.us.Targets[target] = m
	if r.pending.marks == nil {
		r.pending.marks = map[string]targetMark{}
	}
	r.pending.marks[target] = m
	return nil
}

// scanTarget reads the keys of a target folder once per session when the
// state may be behind the target, or it lost what was copied.
func (s *copier) scanTarget(target string) error {
	r := s.r
	if r.inTarget[target] == nil {
		r.inTarget[target] = map[string]int64{}
	}
	if (!s.scan && !r.rescan[target]) || r.scanned[target] || !s.dstFolders[target] {
		return nil
	}
	sel, err := s.dst.Select(target, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("target: examine %q: %w", target, err)
	}
	if sel.NumMessages > 0 {
		ms, err := keys(s.dst, goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, true)
		if err != nil {
			return fmt.Errorf("target: read Message-IDs of %q: %w", target, err)
		}
		for _, m := range ms {
			r.inTarget[target][m.key] = m.size
		}
	}
	if err := s.dst.Unselect().Wait(); err != nil {
		return fmt.Errorf("target: unselect %q: %w", target, err)
	}
	r.scanned[target] = true
	r.log.Debug("read target folder", "folder", target, "messages", sel.NumMessages)
	return nil
}

func (s *copier) copyFolder(ctx context.Context, f folder) error {
	r := s.r
	fs := r.folderSummary(f.Source, f.Target)
	sel, err := s.src.Select(f.Source, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("source: examine %q: %w", f.Source, err)
	}
	fs.Messages = int(sel.NumMessages)
	fk := string(folderKey(f.Source, sel.UIDValidity))
	last := r.us.LastUID[fk]
	r.prog.startFolder(f.Source, int(sel.NumMessages))
	if sel.NumMessages == 0 {
		return nil
	}
	// Pass 1: what is new since the last run, with flags, dates, sizes
	// and keys.
	var set goimap.UIDSet
	set.AddRange(goimap.UID(last+1), 0)
	metas, err := keys(s.src, set, true)
	if err != nil {
		return fmt.Errorf("source: fetch %q: %w", f.Source, err)
	}
	if err := s.scanTarget(f.Target); err != nil {
		return err
	}
	var todo []*msgMeta
	var maxUID goimap.UID
	for _, m := range metas {
		if uint32(m.uid) <= last {
			continue // "N:*" returns the last message even below N
		}
		maxUID = max(maxUID, m.uid)
		// A message skipped in an attempt that failed is skipped again
		// by the retry: count it once.
		ck := fk + "\x00" + fmt.Sprint(m.uid)
		first := !r.counted[ck]
		switch {
		case hasFlag(m.flags, goimap.FlagDeleted):
			if first {
				r.counted[ck] = true
				r.sum.Deleted++
			}
		case s.present(f.Target, m):
			if first {
				r.counted[ck] = true
				r.sum.Skipped++
				fs.Skipped++
			}
			if _, ok := r.us.Imported[m.key]; !ok && !r.opts.DryRun {
				r.us.Imported[m.key] = f.Target
				if r.pending.imported == nil {
					r.pending.imported = map[string]string{}
				}
				r.pending.imported[m.key] = f.Target
			}
		case (!r.job.Duplicates || f.AllMail) && r.us.Imported[m.key] != "":
			if first {
				r.counted[ck] = true
				r.sum.Skipped++
				fs.Skipped++
			}
		default:
			todo = append(todo, m)
			if !r.job.Duplicates || f.AllMail {
				// Reserve the key: a second copy in this folder is a
				// duplicate too.
				r.us.Imported[m.key] = f.Target
			}
			r.inTarget[f.Target][m.key] = m.size
		}
	}
	r.prog.advance(int(sel.NumMessages)-len(todo), 0)
	if r.opts.DryRun {
		for _, m := range todo {
			r.sum.Copied++
			r.sum.Bytes += m.size
			fs.Copied++
			fs.Bytes += m.size
			r.prog.advance(1, m.size)
		}
		return nil
	}
	unreserve := func() {
		for _, m := range todo {
			if m.done {
				continue
			}
			if r.us.Imported[m.key] == f.Target {
				delete(r.us.Imported, m.key)
			}
			delete(r.inTarget[f.Target], m.key)
		}
	}
	if len(todo) > 0 && !s.dstFolders[f.Target] {
		if err := s.dst.Create(f.Target, nil).Wait(); err != nil {
			var ie *goimap.Error
			if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeAlreadyExists {
				unreserve()
				return targetError(err, fmt.Sprintf("create %q", f.Target))
			}
		}
		s.dstFolders[f.Target] = true
	}
	// Pass 2: stream each new message from the source into an APPEND.
	if err := s.copyMessages(ctx, f, fk, fs, todo); err != nil {
		unreserve()
		return err
	}
	if maxUID > 0 {
		if err := r.record(fk, uint32(maxUID), "", "", true); err != nil {
			return err
		}
	}
	if err := s.markTarget(f.Target); err != nil {
		return err
	}
	return r.flush()
}

// bufferLimit is the largest message buffered in memory; larger ones are
// spooled to a temporary file. A message is read whole from the source
// before its APPEND starts: a source connection lost in the middle of a
// literal must not cut an APPEND short.
const bufferLimit = 1 << 20

// appendJob is one message to append, in memory or in a spool file.
type appendJob struct {
	m     *msgMeta
	data  []byte
	spool *os.File
	size  int64
}

// spool copies a literal to a temporary file (removed once closed).
func spool(lit goimap.LiteralReader) (*os.File, error) {
	f, err := os.CreateTemp("", "mailctl-migrate-*.eml")
	if err != nil {
		return nil, fmt.Errorf("spool message: %w", err)
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, lit)
	if err == nil && n != lit.Size() {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool message: %w", err)
	}
	return f, nil
}

// appenders returns the target connections used for APPEND: the main one
// and up to Options.Appenders-1 more (a target acknowledges an APPEND only
// once it is durable; parallel APPENDs share its fsyncs).
func (s *copier) appenders(ctx context.Context) []*imapclient.Client {
	r := s.r
	for len(s.more) < r.opts.Appenders-1 {
		c, err := dial(ctx, r.job.Target, r.job.TargetAuth)
		if err != nil {
			r.log.Warn("extra target connection refused, appending over fewer", "err", err)
			break
		}
		s.mu.Lock()
		s.more = append(s.more, c)
		s.mu.Unlock()
	}
	return append([]*imapclient.Client{s.dst}, s.more...)
}

// present reports whether the target folder holds m (same key and size: a
// copy of another size, such as one cut short, does not count).
func (s *copier) present(target string, m *msgMeta) bool {
	size, ok := s.r.inTarget[target][m.key]
	if ok && size != m.size {
		s.r.log.Warn("the target holds another version of a message, copying it again", "folder", target,
			"size", m.size, "target_size", size)
		return false
	}
	return ok
}

// interrupt closes every connection after a grace period: meanwhile the
// copy stops at the next message, drains its FETCH chunk and lets the
// APPENDs in flight complete rather than cutting them (a server might keep
// a message cut short).
func (s *copier) interrupt() {
	time.AfterFunc(10*time.Second, s.closeAll)
}

// closeAll closes every connection (the client's Close waits for its
// reader, which may wait for an appender: no lock held meanwhile).
func (s *copier) closeAll() {
	s.mu.Lock()
	conns := append([]*imapclient.Client{s.src, s.dst}, s.more...)
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// copyMessages appends todo (in UID order) to f.Target over parallel
// connections, advancing the folder's recorded UID only over a prefix of
// acknowledged messages.
func (s *copier) copyMessages(ctx context.Context, f folder, fk string, fs *FolderSummary, todo []*msgMeta) error {
	r := s.r
	if len(todo) == 0 {
		return nil
	}
	bySeq := map[uint32]*msgMeta{}
	byUID := map[goimap.UID]*msgMeta{}
	for i, m := range todo {
		m.idx = i
		bySeq[m.seq] = m
		byUID[m.uid] = m
	}
	conns := s.appenders(ctx)
	if len(todo) == 1 {
		conns = conns[:1]
	}
	jobs := make(chan *appendJob)
	failed := make(chan struct{})
	var firstErr error
	var once sync.Once
	setErr := func(err error) {
		once.Do(func() { firstErr = err; close(failed) })
	}
	next := 0 // todo[:next] are acknowledged (or failed for good)
	acked := func(m *msgMeta) error {
		m.done = true
		for next < len(todo) && todo[next].done {
			next++
		}
		key := ""
		if !m.failed {
			key = m.key
		}
		r.progress = true
		return r.record(fk, uint32(todo[max(next, 1)-1].uid), key, f.Target, next > 0)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				err := s.appendOne(c, f, fs, j)
				if j.spool != nil {
					j.spool.Close()
				}
				if err != nil {
					setErr(err)
					continue
				}
				s.mu.Lock()
				err = acked(j.m)
				s.mu.Unlock()
				if err != nil {
					setErr(err)
				}
			}
		}()
	}
	// FETCH in chunks: stopping (interruption, a target failure) drains
	// the rest of one chunk rather than cutting the connection in the
	// middle of a literal; and long FETCHes are what Gmail throttles.
	var readErr, stopErr error
	for start := 0; start < len(todo) && readErr == nil && stopErr == nil; {
		var chunk goimap.UIDSet
		var bytes int64
		end := start
		for ; end < len(todo) && end-start < fetchChunkMessages && (end == start || bytes+todo[end].size <= fetchChunkBytes); end++ {
			chunk.AddNum(todo[end].uid)
			bytes += todo[end].size
		}
		start = end
		readErr, stopErr = s.fetchChunk(ctx, f, chunk, byUID, bySeq, jobs, failed)
	}
	close(jobs)
	wg.Wait()
	if readErr != nil {
		// The source connection failed in the middle of the FETCH: it
		// cannot be used any more.
		s.src.Close()
	}
	switch {
	case firstErr != nil:
		return firstErr
	case readErr != nil:
		return readErr
	case stopErr != nil:
		return stopErr
	}
	for _, m := range byUID {
		// Expunged at the source meanwhile.
		s.mu.Lock()
		r.fail(fs, fmt.Sprintf("%s UID %d: gone from the source", f.Source, m.uid))
		m.failed = true
		err := acked(m)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// Bounds of one body FETCH.
const (
	fetchChunkMessages = 200
	fetchChunkBytes    = 32 << 20
)

// fetchChunk fetches the bodies of set and hands them to the appenders.
// readErr is a source failure (the connection is unusable); stopErr an
// interruption (ctx, or an appender failed), after which the rest of the
// chunk is drained so that the connection stays usable.
func (s *copier) fetchChunk(ctx context.Context, f folder, set goimap.UIDSet, byUID map[goimap.UID]*msgMeta, bySeq map[uint32]*msgMeta,
	jobs chan<- *appendJob, failed <-chan struct{}) (readErr, stopErr error) {
	cmd := s.src.Fetch(set, &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{sectionAll}})
	stopped := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-failed:
			return errAppendFailed
		default:
			return nil
		}
	}
	for stopErr == nil {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var uid goimap.UID
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				m := byUID[uid]
				if m == nil {
					m = bySeq[msg.SeqNum]
				}
				if m == nil || it.Literal == nil {
					continue // discarded by the next Next
				}
				delete(byUID, m.uid)
				delete(bySeq, m.seq)
				j := &appendJob{m: m, size: it.Literal.Size()}
				var err error
				if j.size <= bufferLimit {
					j.data = make([]byte, j.size)
					_, err = io.ReadFull(it.Literal, j.data)
				} else {
					j.spool, err = spool(it.Literal)
				}
				if err != nil {
					return fmt.Errorf("source: fetch %q UID %d: %w", f.Source, m.uid, err), nil
				}
				select {
				case jobs <- j:
				case <-failed:
					if j.spool != nil {
						j.spool.Close()
					}
					// Not sent: it goes back to the todo of a later run.
					byUID[m.uid], bySeq[m.seq] = m, m
					stopErr = errAppendFailed
				}
			}
		}
		if stopErr == nil {
			stopErr = stopped()
		}
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("source: fetch %q: %w", f.Source, err), stopErr
	}
	return nil, stopErr
}

// errAppendFailed stops a FETCH when an appender failed (its error is the
// one reported).
var errAppendFailed = errors.New("migrate: append failed")

// appendOne appends one message with its flags and date. A refusal of this
// message alone is recorded as a failure; a connection problem or a full
// target is returned.
func (s *copier) appendOne(c *imapclient.Client, f folder, fs *FolderSummary, j *appendJob) error {
	r := s.r
	m := j.m
	var flags []goimap.Flag
	for _, fl := range m.flags {
		if fl == goimap.FlagDeleted || strings.EqualFold(string(fl), `\Recent`) {
			continue
		}
		if strings.HasPrefix(string(fl), `\`) && !hasFlag([]goimap.Flag{goimap.FlagSeen, goimap.FlagAnswered, goimap.FlagFlagged, goimap.FlagDraft}, fl) {
			continue
		}
		flags = append(flags, fl)
	}
	var body io.Reader = bytes.NewReader(j.data)
	size := j.size
	if j.spool != nil {
		body = j.spool
	}
	app := c.Append(f.Target, size, &goimap.AppendOptions{Flags: flags, Time: m.date})
	n, err := io.Copy(app, body)
	if err == nil && n != size {
		err = fmt.Errorf("message ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err != nil {
		// The target connection broke (or the spool file) in the middle
		// of the literal: the APPEND can no longer complete.
		c.Close()
		return fmt.Errorf("copy %s UID %d to %q: %w", f.Source, m.uid, f.Target, err)
	}
	cerr := app.Close()
	_, err = app.Wait()
	if err == nil {
		err = cerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		err = targetError(err, fmt.Sprintf("append to %q", f.Target))
		var ie *goimap.Error
		var pe *permanentError
		if errors.As(err, &pe) {
			return err
		}
		if errors.As(err, &ie) && !retryable(err) {
			r.fail(fs, fmt.Sprintf("%s UID %d (%s): %s", f.Source, m.uid, m.key, errorsText(err)))
			m.failed = true
			return nil
		}
		return err
	}
	r.sum.Copied++
	r.sum.Bytes += size
	fs.Copied++
	fs.Bytes += size
	r.prog.advance(1, size)
	return nil
}

func hasFlag(flags []goimap.Flag, f goimap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}
