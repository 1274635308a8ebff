package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailctl/mailctl/server/internal/limits"
	"github.com/mailctl/mailctl/server/store"
)

// session is one IMAP connection.
type session struct {
	srv    *Server
	conn   *conn
	lib    *imapserver.Conn
	ctx    context.Context
	cancel context.CancelFunc
	logger *slog.Logger

	user   string // set by Login
	view   *view  // selected mailbox, or nil
	idling bool   // in IDLE: no tagged response to carry HIGHESTMODSEQ

	// connection caps (limits.go)
	clientKey   string
	counted     bool   // counted against clientKey's connections
	countedUser string // counted against (user, clientKey)'s sessions
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	nc, ok := c.NetConn().(*conn)
	if !ok {
		return nil, nil, errors.New("imap: connection not accepted by Server.Serve")
	}
	ctx, cancel := context.WithCancel(s.ctx)
	se := &session{
		srv: s, conn: nc, lib: c, ctx: ctx, cancel: cancel,
		logger: s.logger.With("remote", nc.RemoteAddr().String()),
	}
	if err := se.admitConn(); err != nil {
		cancel()
		return nil, nil, err
	}
	return se, nil, nil
}

func (s *session) Close() error {
	s.unselect()
	s.cancel()
	s.releaseConn()
	return nil
}

func (s *session) Login(username, password string) error {
	if !s.conn.secure() {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodePrivacyRequired, Text: "TLS is required to authenticate"}
	}
	user, err := s.srv.auth.Authenticate(s.ctx, username, password, s.conn.RemoteAddr())
	if err != nil {
		s.logger.InfoContext(s.ctx, "imap login failed", "user", username, "err", err)
		return loginError(err)
	}
	if err := s.admitLogin(user); err != nil {
		return err
	}
	if _, err := s.srv.st.Mailbox(s.ctx, user, store.Inbox); err != nil {
		s.releaseLogin()
		s.logger.ErrorContext(s.ctx, "imap login: no mail store for user", "user", user, "err", err)
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable, Text: "Mailbox unavailable"}
	}
	s.user = user
	s.conn.setQuota(func() (int64, int64, error) {
		used, _, err := s.srv.st.Usage(s.ctx, user)
		if err != nil {
			return 0, 0, err
		}
		limit, err := s.srv.st.Quota(s.ctx, user)
		return used, limit, err
	})
	s.conn.setExt(s.extCommand)
	s.logger = s.logger.With("user", user)
	s.logger.InfoContext(s.ctx, "imap login")
	return nil
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s *session) AppendLimit() uint32 { return s.srv.opts.AppendLimit }

// imapError turns store errors into IMAP responses.
func (s *session) imapError(err error) error {
	no := func(code goimap.ResponseCode, text string) error {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: code, Text: text}
	}
	var limit *store.LimitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &limit):
		return no(goimap.ResponseCodeLimit, limit.Text)
	case errors.Is(err, store.ErrNoSuchMailbox):
		return no(goimap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, store.ErrMailboxExists):
		return no(goimap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, store.ErrQuotaExceeded):
		return no(goimap.ResponseCodeOverQuota, "Quota exceeded")
	case errors.Is(err, store.ErrInvalidMailbox):
		return no(goimap.ResponseCodeCannot, "Invalid mailbox name")
	case errors.Is(err, store.ErrHasChildren):
		return no(goimap.ResponseCodeInUse, "Mailbox has children, delete them first")
	case errors.Is(err, store.ErrInboxNotAllowed):
		return no(goimap.ResponseCodeCannot, "Not allowed on INBOX")
	case errors.Is(err, limits.ErrHeaderTooLarge):
		return no(goimap.ResponseCodeLimit, fmt.Sprintf("Message header too large (limit %d bytes, %d lines)", limits.MaxHeaderBytes, limits.MaxHeaderLines))
	}
	var ie *goimap.Error
	if errors.As(err, &ie) {
		return err
	}
	s.logger.ErrorContext(s.ctx, "imap command failed", "err", err)
	return internalError()
}

func (s *session) Select(name string, options *goimap.SelectOptions) (*goimap.SelectData, error) {
	s.unselect()
	mb, err := s.srv.st.Mailbox(s.ctx, s.user, name)
	if err != nil {
		return nil, s.imapError(err)
	}
	sm, err := s.srv.acquire(s.ctx, s.user, mb)
	if err != nil {
		return nil, s.imapError(err)
	}
	// mb was read for this command: the snapshot need not be checked
	// against the store once more when it is as recent.
	if err := sm.syncWith(s.ctx, &mb); err != nil {
		s.srv.release(sm)
		return nil, s.imapError(err)
	}
	v := &view{
		sm: sm, readOnly: options.ReadOnly, wake: make(chan struct{}, 1),
		rev1: !s.lib.EnabledCaps().Has(goimap.CapIMAP4rev2),
	}
	sm.mu.Lock()
	v.msgs, v.gen, v.modseq, v.flagGen = sm.msgs, sm.gen, sm.modseq, sm.flagGen
	v.lastFull, v.told = v.modseq, v.modseq
	list := append([]goimap.Flag(nil), sm.flags...)
	mb = sm.mb
	sm.views[v] = struct{}{}
	sm.mu.Unlock()
	s.view = v
	v.claimRecent()
	var firstUnseen uint32
	for i := range v.msgs {
		if !v.msgs[i].HasFlag(store.FlagSeen) {
			firstUnseen = uint32(i) + 1
			break
		}
	}
	perm := append(append([]goimap.Flag(nil), list...), goimap.FlagWildcard)
	if options.ReadOnly {
		perm = nil
	}
	if err := s.selectCondStore(v, mb); err != nil {
		s.unselect()
		return nil, s.imapError(err)
	}
	return &goimap.SelectData{
		Flags:             list,
		PermanentFlags:    perm,
		NumMessages:       uint32(len(v.msgs)),
		NumRecent:         v.countRecent(v.msgs),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           goimap.UID(mb.UIDNext),
		UIDValidity:       mb.UIDValidity,
		HighestModSeq:     mb.ModSeq,
	}, nil
}

func (s *session) unselect() {
	if s.view == nil {
		return
	}
	sm := s.view.sm
	sm.mu.Lock()
	delete(sm.views, s.view)
	sm.mu.Unlock()
	s.srv.release(sm)
	s.view = nil
}

func (s *session) Unselect() error {
	s.unselect()
	return nil
}

func (s *session) Create(name string, options *goimap.CreateOptions) error {
	name = strings.TrimRight(name, string(store.Delim))
	special := ""
	if options != nil && len(options.SpecialUse) > 0 {
		special = string(options.SpecialUse[0])
		switch strings.ToLower(special) {
		case `\sent`, `\drafts`, `\trash`, `\junk`, `\archive`, `\all`, `\flagged`:
		default:
			return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCode("USEATTR"), Text: "Unsupported special-use attribute"}
		}
	}
	// Superior names are created too (RFC 9051 section 6.3.4).
	parts := strings.Split(name, string(store.Delim))
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], string(store.Delim))
		if err := s.srv.st.CreateMailbox(s.ctx, s.user, parent, ""); err != nil && !errors.Is(err, store.ErrMailboxExists) {
			return s.imapError(err)
		}
	}
	return s.imapError(s.srv.st.CreateMailbox(s.ctx, s.user, name, special))
}

func (s *session) Delete(name string) error {
	return s.imapError(s.srv.st.DeleteMailbox(s.ctx, s.user, name))
}

func (s *session) Rename(oldName, newName string, options *goimap.RenameOptions) error {
	newName = strings.TrimRight(newName, string(store.Delim))
	return s.imapError(s.srv.st.RenameMailbox(s.ctx, s.user, oldName, newName))
}

func (s *session) Subscribe(name string) error {
	return s.imapError(s.srv.st.SetSubscribed(s.ctx, s.user, name, true))
}

func (s *session) Unsubscribe(name string) error {
	return s.imapError(s.srv.st.SetSubscribed(s.ctx, s.user, name, false))
}

func (s *session) Namespace() (*goimap.NamespaceData, error) {
	return &goimap.NamespaceData{Personal: []goimap.NamespaceDescriptor{{Prefix: "", Delim: store.Delim}}}, nil
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *goimap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&goimap.ListData{Attrs: []goimap.MailboxAttr{goimap.MailboxAttrNoSelect}, Delim: store.Delim})
	}
	mbs, err := s.srv.st.Mailboxes(s.ctx, s.user)
	if err != nil {
		return s.imapError(err)
	}
	if options.SelectSubscribed {
		return s.listSubscribed(w, ref, patterns, options, mbs)
	}
	names := map[string]bool{}
	for _, mb := range mbs {
		names[mb.Name] = true
	}
	for _, mb := range mbs {
		if !matchPatterns(mb.Name, ref, patterns) || (options.SelectSpecialUse && mb.SpecialUse == "") {
			continue
		}
		if err := s.writeListMailbox(w, &mb, options, names, nil); err != nil {
			return err
		}
	}
	return nil
}

func matchPatterns(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, store.Delim, ref, p) {
			return true
		}
	}
	return false
}

// writeListMailbox writes the LIST response of an existing mailbox; data
// holds what the caller adds (\Subscribed, CHILDINFO), or is nil.
func (s *session) writeListMailbox(w *imapserver.ListWriter, mb *store.Mailbox, options *goimap.ListOptions, names map[string]bool, data *goimap.ListData) error {
	if data == nil {
		data = &goimap.ListData{}
	}
	data.Mailbox, data.Delim = mb.Name, store.Delim
	if mb.Subscribed && options.ReturnSubscribed && !options.SelectSubscribed {
		data.Attrs = append(data.Attrs, goimap.MailboxAttrSubscribed)
	}
	if options.ReturnChildren {
		attr := goimap.MailboxAttrHasNoChildren
		for n := range names {
			if strings.HasPrefix(n, mb.Name+string(store.Delim)) {
				attr = goimap.MailboxAttrHasChildren
				break
			}
		}
		data.Attrs = append(data.Attrs, attr)
	}
	if mb.SpecialUse != "" {
		// Always shown: clients that do not ask (Thunderbird's plain
		// LIST) still find the special-use mailboxes.
		data.Attrs = append(data.Attrs, goimap.MailboxAttr(mb.SpecialUse))
	}
	if options.ReturnStatus != nil {
		if s.conn.cs.cmd.statusModSeq {
			options.ReturnStatus.HighestModSeq = true
		}
		st, err := s.status(mb.Name, options.ReturnStatus)
		if err != nil {
			return err
		}
		data.Status = st
		if options.ReturnStatus.HighestModSeq {
			s.conn.queueStatusModSeq(st.HighestModSeq)
		}
	}
	return w.WriteList(data)
}

// isLSUB reports whether w answers LSUB: the library passes LSUB to
// List as LIST (SUBSCRIBED) and tells them apart only by this unexported
// field of its ListWriter (go-imap v2.0.0-beta.8; TestLSUBNoselect).
func isLSUB(w *imapserver.ListWriter) bool {
	f := reflect.ValueOf(w).Elem().FieldByName("lsub")
	return f.IsValid() && f.Kind() == reflect.Bool && f.Bool()
}

// listSubscribed answers LIST (SUBSCRIBED ...) and LSUB: subscribed
// names, including those whose mailbox is gone (\NonExistent, RFC 5258
// section 3.4; store.GoneSubscriptions); with RECURSIVEMATCH, also the
// names that have a subscribed descendant the patterns miss, with
// CHILDINFO ("SUBSCRIBED") (RFC 5258 section 3.5); for LSUB, a parent
// that is not subscribed but has such a descendant, with \Noselect (RFC
// 3501 section 6.3.9). The answers are those of Dovecot 2.3.
func (s *session) listSubscribed(w *imapserver.ListWriter, ref string, patterns []string, options *goimap.ListOptions, mbs []store.Mailbox) error {
	gone, err := s.srv.st.GoneSubscriptions(s.ctx, s.user)
	if err != nil {
		return s.imapError(err)
	}
	lsub := isLSUB(w)
	existing := map[string]*store.Mailbox{}
	names := map[string]bool{}
	var subscribed []string
	for i := range mbs {
		existing[mbs[i].Name] = &mbs[i]
		names[mbs[i].Name] = true
		if mbs[i].Subscribed {
			subscribed = append(subscribed, mbs[i].Name)
		}
	}
	subscribed = append(subscribed, gone...)
	isSub := map[string]bool{}
	candidates := map[string]bool{}
	for _, n := range subscribed {
		isSub[n] = true
		candidates[n] = true
		// The parents, for RECURSIVEMATCH and LSUB's \Noselect.
		for i := strings.IndexRune(n, store.Delim); i >= 0; {
			candidates[n[:i]] = true
			j := strings.IndexRune(n[i+1:], store.Delim)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	list := make([]string, 0, len(candidates))
	for n := range candidates {
		list = append(list, n)
	}
	sort.Slice(list, func(i, j int) bool {
		if (list[i] == store.Inbox) != (list[j] == store.Inbox) {
			return list[i] == store.Inbox
		}
		return list[i] < list[j]
	})
	for _, n := range list {
		if !matchPatterns(n, ref, patterns) {
			continue
		}
		mb := existing[n]
		if options.SelectSpecialUse && (mb == nil || mb.SpecialUse == "") {
			continue
		}
		// A subscribed descendant that the patterns miss.
		hiddenSubChild := false
		for _, d := range subscribed {
			if strings.HasPrefix(d, n+string(store.Delim)) && !matchPatterns(d, ref, patterns) {
				hiddenSubChild = true
				break
			}
		}
		data := &goimap.ListData{Mailbox: n, Delim: store.Delim}
		switch {
		case lsub:
			if !isSub[n] && !hiddenSubChild {
				continue
			}
			if !isSub[n] {
				data.Attrs = append(data.Attrs, goimap.MailboxAttrNoSelect)
			}
			if err := w.WriteList(data); err != nil {
				return err
			}
			continue
		case isSub[n]:
			data.Attrs = append(data.Attrs, goimap.MailboxAttrSubscribed)
		case !(options.SelectRecursiveMatch && hiddenSubChild):
			continue
		}
		if options.SelectRecursiveMatch && hiddenSubChild {
			// Only for a subscribed descendant that is not listed too
			// (RFC 5258 section 3.5 SHOULD), as Dovecot does.
			data.ChildInfo = &goimap.ListDataChildInfo{Subscribed: true}
		}
		if mb == nil {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrNonExistent)
			if err := w.WriteList(data); err != nil {
				return err
			}
			continue
		}
		if err := s.writeListMailbox(w, mb, options, names, data); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	if s.conn.cs.cmd.statusModSeq {
		options.HighestModSeq = true
	}
	data, err := s.status(name, options)
	if err == nil && options.HighestModSeq {
		// The library does not write it: conn.Write adds it.
		s.conn.queueStatusModSeq(data.HighestModSeq)
	}
	return data, err
}

func (s *session) status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	var mb store.Mailbox
	var msgs []store.Message
	var err error
	if options.NumUnseen || options.NumDeleted || options.NumRecent {
		mb, msgs, err = s.srv.st.Messages(s.ctx, s.user, name)
	} else {
		mb, err = s.srv.st.Mailbox(s.ctx, s.user, name)
	}
	if err != nil {
		return nil, s.imapError(err)
	}
	data := &goimap.StatusData{Mailbox: mb.Name}
	u32 := func(n int) *uint32 { v := uint32(n); return &v }
	if options.NumMessages {
		data.NumMessages = u32(mb.Messages)
	}
	if options.UIDNext {
		data.UIDNext = goimap.UID(mb.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = mb.UIDValidity
	}
	if options.NumUnseen || options.NumDeleted {
		var unseen, deleted int
		for _, m := range msgs {
			if !m.HasFlag(store.FlagSeen) {
				unseen++
			}
			if m.HasFlag(store.FlagDeleted) {
				deleted++
			}
		}
		if options.NumUnseen {
			data.NumUnseen = u32(unseen)
		}
		if options.NumDeleted {
			data.NumDeleted = u32(deleted)
		}
	}
	if options.Size {
		size := mb.Size
		data.Size = &size
	}
	if options.NumRecent {
		data.NumRecent = u32(s.srv.numRecent(s.user, mb, msgs))
	}
	if options.AppendLimit {
		data.AppendLimit = &s.srv.opts.AppendLimit
	}
	if options.HighestModSeq {
		data.HighestModSeq = mb.ModSeq
	}
	return data, nil
}

func (s *session) Append(mailbox string, r goimap.LiteralReader, options *goimap.AppendOptions) (*goimap.AppendData, error) {
	tryCreate := &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeTryCreate, Text: "No such mailbox"}
	if _, err := s.srv.st.Mailbox(s.ctx, s.user, mailbox); errors.Is(err, store.ErrNoSuchMailbox) {
		return nil, tryCreate
	}
	// Refuse before reading the literal when it cannot fit.
	quota, err := s.srv.st.Quota(s.ctx, s.user)
	if err != nil {
		return nil, s.imapError(err)
	}
	if quota > 0 {
		used, _, err := s.srv.st.Usage(s.ctx, s.user)
		if err != nil {
			return nil, s.imapError(err)
		}
		if used+r.Size() > quota {
			return nil, s.imapError(store.ErrQuotaExceeded)
		}
	}
	date := options.Time
	// The header bound SMTP applies at DATA (server/internal/limits).
	var body io.Reader = limits.NewHeaderReader(&fullLiteral{r: r})
	if s.conn.literal8.Load() && r.Size() <= maxBinaryAppend {
		// Binary content: its parts with NUL go to base64 (binary.go).
		msg, err := io.ReadAll(body)
		if err != nil {
			return nil, s.imapError(err)
		}
		if conv, ok := binaryToBase64(msg); ok {
			msg = conv
		}
		body = bytes.NewReader(msg)
	}
	uidValidity, uid, err := s.srv.st.Append(s.ctx, s.user, mailbox, body, storeFlags(options.Flags), date)
	if errors.Is(err, store.ErrNoSuchMailbox) {
		return nil, tryCreate
	}
	if err != nil {
		return nil, s.imapError(err)
	}
	return &goimap.AppendData{UID: goimap.UID(uid), UIDValidity: uidValidity}, nil
}

// syncCmd is sm.sync for a command: the command sees every change
// committed before it, and the Poll at its end (go-imap calls Poll after
// each command) need not ask the store again, one round trip less per
// command on a store across the network (pgstore). A change committed
// during the command is told at the next command, NOOP or IDLE, or at
// once to a session in IDLE.
func (s *session) syncCmd(sm *sharedMailbox) error {
	if err := sm.sync(s.ctx); err != nil {
		return err
	}
	s.conn.cs.cmd.synced = true
	return nil
}

// setFlags is the session's flag write to its selected mailbox (STORE,
// and the \Seen of a FETCH of bodies), SetFlagsUnchangedSince when cond:
// the node's snapshot takes the write from the store's answer where it
// can (beginOwn, endOwn), else it is synced for the command.
func (s *session) setFlags(v *view, uids []uint32, op store.FlagOp, flags []string, cond bool, unchangedSince uint64) (updated []store.Message, modified []uint32, err error) {
	if fc, ok := s.srv.st.(store.FlagWriteCounter); ok && !cond {
		return s.setFlagsCounted(v, fc, uids, op, flags)
	}
	var before, after uint64 // of the write, when the store tells them
	v.sm.beginOwn()
	if fr, ok := s.srv.st.(store.FlagWriteReporter); ok {
		updated, modified, before, after, err = fr.SetFlagsReport(s.ctx, s.user, v.sm.name(), uids, op, flags, cond, unchangedSince)
	} else if cond {
		updated, modified, err = s.srv.st.SetFlagsUnchangedSince(s.ctx, s.user, v.sm.name(), uids, op, flags, unchangedSince)
	} else {
		updated, err = s.srv.st.SetFlags(s.ctx, s.user, v.sm.name(), uids, op, flags)
	}
	if err != nil {
		v.sm.endOwn(nil, 0, 0)
		return nil, nil, err
	}
	if v.sm.endOwn(updated, before, after) {
		// The snapshot is the store's state after the write: with the
		// sync at the start of the command, nothing to ask the store.
		s.conn.cs.cmd.synced = true
	} else if err := s.syncCmd(v.sm); err != nil {
		return nil, nil, err
	}
	return updated, modified, nil
}

// setFlagsCounted is setFlags on a store that answers a write with the
// number of messages it changed (store.FlagWriteCounter): the node's
// snapshot, when it is at the write's before, works the messages out
// (endOwnCounted); otherwise it is synced and they are read from it.
func (s *session) setFlagsCounted(v *view, fc store.FlagWriteCounter, uids []uint32, op store.FlagOp, flags []string) ([]store.Message, []uint32, error) {
	v.sm.beginOwn()
	n, before, after, err := fc.SetFlagsCount(s.ctx, s.user, v.sm.name(), uids, op, flags)
	if err != nil {
		v.sm.endOwn(nil, 0, 0)
		return nil, nil, err
	}
	if updated, ok := v.sm.endOwnCounted(uids, op, flags, n, before, after); ok {
		s.conn.cs.cmd.synced = true
		return updated, nil, nil
	}
	if err := s.syncCmd(v.sm); err != nil {
		return nil, nil, err
	}
	return v.sm.messagesOf(uids), nil, nil
}

func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) (err error) {
	if s.view == nil {
		return nil
	}
	// The updates (after another session's STORE 1:*, a FETCH FLAGS per
	// message: one write(2) each otherwise) go out in big writes.
	if s.conn.cork() {
		defer func() {
			if uerr := s.conn.uncork(); err == nil {
				err = uerr
			}
		}()
	}
	// In IDLE every wake-up asks the store (the command's sync is long
	// past); after another command, only when it did not sync itself.
	synced := s.conn.cs.cmd.synced && !s.idling
	s.conn.cs.cmd.synced = false
	if err := s.view.update(s.ctx, s.conn, w, allowExpunge, synced); err != nil {
		return s.imapError(err)
	}
	if err := s.noteHighest(); err != nil {
		return err
	}
	if cmd := &s.conn.cs.cmd; cmd.justEnabled {
		// CONDSTORE enabled with a mailbox selected (RFC 7162 section
		// 3.1): the client learns the mailbox's HIGHESTMODSEQ.
		cmd.justEnabled = false
		return s.conn.writeResponses(highestModSeqLine(s.view.modseq))
	}
	return nil
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.view == nil {
		<-stop
		return nil
	}
	s.idling = true
	defer func() { s.idling = false }()
	for {
		if err := s.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.view.wake:
		}
	}
}

func (s *session) writable() error {
	if s.view.readOnly {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "Mailbox is read-only"}
	}
	return nil
}

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *goimap.UIDSet) error {
	if s.view.readOnly {
		return nil // CLOSE of an EXAMINEd mailbox expunges nothing
	}
	var list []uint32
	if uids != nil {
		items, err := s.view.resolve(*uids)
		if err != nil {
			return err
		}
		list = []uint32{}
		for _, it := range items {
			list = append(list, it.msg.UID)
		}
	}
	if _, err := s.srv.st.Expunge(s.ctx, s.user, s.view.sm.name(), list); err != nil {
		return s.imapError(err)
	}
	// The EXPUNGE responses go out through Poll, right after this.
	return nil
}

func (s *session) Store(w *imapserver.FetchWriter, numSet goimap.NumSet, flags *goimap.StoreFlags, options *goimap.StoreOptions) error {
	if err := s.writable(); err != nil {
		return err
	}
	v := s.view
	if err := s.syncCmd(v.sm); err != nil {
		return s.imapError(err)
	}
	items, err := v.resolve(numSet)
	if err != nil {
		return err
	}
	var uids []uint32
	for _, it := range items {
		if !it.gone {
			uids = append(uids, it.msg.UID)
		}
	}
	op := map[goimap.StoreFlagsOp]store.FlagOp{
		goimap.StoreFlagsSet: store.FlagsReplace,
		goimap.StoreFlagsAdd: store.FlagsAdd,
		goimap.StoreFlagsDel: store.FlagsRemove,
	}[flags.Op]
	cmd := &s.conn.cs.cmd
	// modified: the UIDs that failed UNCHANGEDSINCE.
	updated, modified, err := s.setFlags(v, uids, op, storeFlags(flags.Flags), cmd.hasUnchanged, cmd.unchangedSince)
	if err != nil {
		return s.imapError(err)
	}
	condOn := s.conn.cs.condstore.Load()
	if flags.Silent {
		v.changedSilently(items, updated, op, storeFlags(flags.Flags))
		if condOn {
			// The new MODSEQ of each message changed, even when silent
			// (RFC 7162 section 3.1.3).
			if err := storeModSeqs(s.conn, w, items, updated); err != nil {
				return err
			}
		}
		if err := s.noteHighest(); err != nil {
			return err
		}
		return storeModified(numSet, items, modified)
	}
	v.changed(updated)
	// New keywords are announced before any FETCH shows them.
	if err := v.announceFlags(s.conn); err != nil {
		return err
	}
	byUID := map[uint32]store.Message{}
	for _, m := range updated {
		byUID[m.UID] = m
	}
	for _, it := range items {
		m, ok := byUID[it.msg.UID]
		if !ok {
			continue
		}
		if condOn {
			s.conn.queueModSeq(it.clientSeq, m.ModSeq)
		}
		rw := w.CreateMessage(it.clientSeq)
		rw.WriteUID(goimap.UID(m.UID))
		rw.WriteFlags(v.flags(&m))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if err := s.noteHighest(); err != nil {
		return err
	}
	return storeModified(numSet, items, modified)
}

// uidsOf returns the UIDs of the messages of numSet that are not expunged.
func (s *session) uidsOf(numSet goimap.NumSet) ([]uint32, error) {
	items, err := s.view.resolve(numSet)
	if err != nil {
		return nil, err
	}
	var uids []uint32
	for _, it := range items {
		if !it.gone {
			uids = append(uids, it.msg.UID)
		}
	}
	return uids, nil
}

func copyData(r store.CopyResult) *goimap.CopyData {
	var src, dst goimap.UIDSet
	for i := range r.SourceUIDs {
		src.AddNum(goimap.UID(r.SourceUIDs[i]))
		dst.AddNum(goimap.UID(r.DestUIDs[i]))
	}
	return &goimap.CopyData{UIDValidity: r.UIDValidity, SourceUIDs: src, DestUIDs: dst}
}

func (s *session) copyErr(err error) error {
	if errors.Is(err, store.ErrNoSuchMailbox) {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return s.imapError(err)
}

func (s *session) Copy(numSet goimap.NumSet, dest string) (*goimap.CopyData, error) {
	if err := s.view.sm.sync(s.ctx); err != nil {
		return nil, s.imapError(err)
	}
	uids, err := s.uidsOf(numSet)
	if err != nil {
		return nil, err
	}
	res, err := s.srv.st.Copy(s.ctx, s.user, s.view.sm.name(), uids, dest)
	if err != nil {
		return nil, s.copyErr(err)
	}
	if len(res.SourceUIDs) == 0 {
		return nil, nil // nothing copied: no COPYUID
	}
	s.transferred(dest, res)
	s.view.sm.mu.Lock()
	self := res.UIDValidity == s.view.sm.mb.UIDValidity // unique per user
	s.view.sm.mu.Unlock()
	if self {
		// Into the selected mailbox: the EXISTS goes out with the answer.
		if err := s.view.sm.sync(s.ctx); err != nil {
			return nil, s.imapError(err)
		}
	}
	return copyData(res), nil
}

func (s *session) Move(w *imapserver.MoveWriter, numSet goimap.NumSet, dest string) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.view.sm.sync(s.ctx); err != nil {
		return s.imapError(err)
	}
	uids, err := s.uidsOf(numSet)
	if err != nil {
		return err
	}
	res, err := s.srv.st.Move(s.ctx, s.user, s.view.sm.name(), uids, dest)
	if err != nil {
		return s.copyErr(err)
	}
	if len(res.SourceUIDs) == 0 {
		return nil
	}
	s.transferred(dest, res)
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	// The EXPUNGE responses follow through Poll.
	return nil
}

// fetchChunk is how many messages' headers Fetch reads from the index at
// a time.
const fetchChunk = 1000

// fetchLineRoom is the room left in a FETCH's line buffer for the next
// response, so that the usual one does not outgrow it.
const fetchLineRoom = 4 << 10

func (s *session) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) (err error) {
	defer s.conn.watchGone(s.cancel)()
	v := s.view
	if err := s.syncCmd(v.sm); err != nil {
		return s.imapError(err)
	}
	items, err := v.resolve(numSet)
	if err != nil {
		return err
	}
	cmd := &s.conn.cs.cmd
	defer func() {
		if herr := s.noteHighest(); err == nil {
			err = herr
		}
	}()
	if cmd.vanished {
		if err := s.fetchVanished(numSet, cmd.changedSince); err != nil {
			return s.imapError(err)
		}
	}
	if cmd.hasChanged {
		items = changedSince(items, cmd.changedSince)
	}
	condOn := s.conn.cs.condstore.Load()
	// Messages expunged by another session that the client still sees
	// (no EXPUNGE may be sent during FETCH) are answered with NO
	// [EXPUNGEISSUED] once the others are (RFC 9051 section 7.5.2,
	// RFC 5530).
	expunged := false
	n := 0 // items is the caller's own slice (resolve): filtered in place
	for _, it := range items {
		if it.gone {
			expunged = true
			continue
		}
		items[n] = it
		n++
	}
	items = items[:n]
	markSeen := false
	if !v.readOnly {
		for _, bs := range options.BodySection {
			if !bs.Peek {
				markSeen = true
			}
		}
	}
	seenNow := map[uint32]bool{}
	var nowSeen map[uint32]store.Message // the messages as \Seen made them
	if markSeen {
		var uids []uint32
		for _, it := range items {
			if !it.msg.HasFlag(store.FlagSeen) {
				uids = append(uids, it.msg.UID)
			}
		}
		if len(uids) > 0 {
			updated, _, err := s.setFlags(v, uids, store.FlagsAdd, []string{store.FlagSeen}, false, 0)
			if err != nil {
				return s.imapError(err)
			}
			v.changed(updated)
			nowSeen = make(map[uint32]store.Message, len(updated))
			for _, m := range updated {
				seenNow[m.UID] = true
				nowSeen[m.UID] = m
			}
		}
	}
	// New keywords are announced before any FETCH shows them.
	if err := v.announceFlags(s.conn); err != nil {
		return err
	}
	if expunged {
		defer func() {
			if err == nil {
				err = &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCode("EXPUNGEISSUED"), Text: "Some of the requested messages were expunged by another session"}
			}
		}()
	}
	s.conn.cork()
	defer func() {
		if uerr := s.conn.uncork(); err == nil {
			err = uerr
		}
	}()
	wantHeader := false
	for _, bs := range options.BodySection {
		wantHeader = wantHeader || headerOnly(bs)
	}
	// Responses made here (fetchline.go) are gathered in lineBuf, one of
	// the pooled corkSize buffers (grown from nil, it was 256 KB of
	// allocations a FETCH of many messages).
	lines := fetchLineItems(options)
	enabled := s.lib.EnabledCaps()
	utf8On := enabled.Has(goimap.CapUTF8Accept) || enabled.Has(goimap.CapIMAP4rev2)
	var lineBuf []byte
	if lines {
		lb := corkPool.Get().(*[]byte)
		lineBuf = (*lb)[:0]
		defer func() {
			*lb = lineBuf[:0]
			corkPool.Put(lb)
		}()
	}
	flushLines := func() error {
		if len(lineBuf) == 0 {
			return nil
		}
		err := s.conn.writeResponses(lineBuf)
		lineBuf = lineBuf[:0]
		return err
	}
	var flagBuf []string
	// On a backend whose OpenBody is a round trip (pgstore), bodies are
	// read ahead in batches while the ones before are written
	// (prefetch.go).
	var pf *bodyPrefetch
	if bb, ok := s.srv.st.(store.BodyBatcher); ok && fetchReadsBodies(options) {
		pf = startPrefetch(s.ctx, bb, items)
		defer pf.close()
	}
	for start := 0; start < len(items); start += fetchChunk {
		chunk := items[start:min(start+fetchChunk, len(items))]
		uids := make([]uint32, len(chunk))
		for i, it := range chunk {
			uids[i] = it.msg.UID
		}
		var hdrs [][]byte
		var envs []*goimap.Envelope
		needHeader := wantHeader
		if options.Envelope {
			// The envelopes made at delivery, else from the headers.
			sums, err := s.srv.st.Summaries(s.ctx, s.user, s.view.sm.key.id, uids)
			if err != nil {
				return s.imapError(err)
			}
			envs = make([]*goimap.Envelope, len(chunk))
			for i, sum := range sums {
				if env, ok := decodeEnvelope(sum); ok {
					envs[i] = env
				} else {
					needHeader = true
				}
			}
		}
		if needHeader {
			if hdrs, err = s.srv.st.Headers(s.ctx, s.user, s.view.sm.key.id, uids); err != nil {
				return s.imapError(err)
			}
		}
		for i, it := range chunk {
			if err := s.ctx.Err(); err != nil {
				return err // the client went away (gone.go)
			}
			m := *it.msg
			if options.Flags && m.ModSeq > v.modseq {
				// The answer shows the change: no update for it after.
				v.changed([]store.Message{m})
			}
			if seenNow[m.UID] {
				// As committed: another session may have changed others.
				m.Flags, m.ModSeq = nowSeen[m.UID].Flags, nowSeen[m.UID].ModSeq
			}
			// MODSEQ when asked, and with a change of flags (the \Seen
			// set here) once CONDSTORE is on; not in every FLAGS
			// answer, as Dovecot.
			if cmd.fetchModSeq || (condOn && seenNow[m.UID]) {
				s.conn.queueModSeq(it.clientSeq, m.ModSeq)
			}
			if (options.Flags || seenNow[m.UID]) && v.rev1 && v.isRecent(m.UID) {
				// In a buffer reused for every message: the flags are
				// written out before the next one.
				flagBuf = append(append(flagBuf[:0], m.Flags...), string(flagRecent))
				m.Flags = flagBuf
			}
			var hdr []byte
			if hdrs != nil {
				hdr = hdrs[i]
			}
			var env *goimap.Envelope
			if envs != nil {
				env = envs[i]
			}
			if lines {
				if env == nil && hdr != nil && options.Envelope {
					env = envelopeBytes(hdr)
				}
				var ok bool
				if lineBuf, ok = appendFetchUTF8(lineBuf, it.clientSeq, &m, options, seenNow[m.UID], env, utf8On); ok {
					if len(lineBuf) >= corkSize-fetchLineRoom {
						if err := flushLines(); err != nil {
							return err
						}
					}
					continue
				}
				if err := flushLines(); err != nil {
					return err
				}
			}
			var pre store.Body
			if pf != nil {
				pre = pf.body(start + i)
			}
			if err := s.fetchOne(w.CreateMessage(it.clientSeq), m, options, seenNow[m.UID], hdr, env, pre); err != nil {
				return err
			}
		}
	}
	return flushLines()
}

// copyBufs hold the buffers through which whole messages are copied to
// the client.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// headerOnly reports whether a body section is the message's header or
// some of its fields (BODY[HEADER], BODY[HEADER.FIELDS (...)]), which the
// header cached in the index answers.
func headerOnly(bs *goimap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == goimap.PartSpecifierHeader
}

// fetchOne writes the FETCH response of one message. hdr is its header as
// cached in the index, env its envelope as made at delivery, or nil: what
// they answer needs no file.
// fetchReadsBodies reports whether a FETCH with options reads message
// bodies (not only what the index keeps: flags, sizes, headers, envelopes).
func fetchReadsBodies(options *goimap.FetchOptions) bool {
	if options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0 {
		return true
	}
	for _, bs := range options.BodySection {
		if !headerOnly(bs) {
			return true
		}
	}
	return false
}

// fetchOne writes the FETCH response of m. pre, when not nil, is m's body
// read ahead (a batch of Fetch's, which closes it).
func (s *session) fetchOne(w *imapserver.FetchResponseWriter, m store.Message, options *goimap.FetchOptions, flagsChanged bool, hdr []byte, env *goimap.Envelope, pre store.Body) error {
	w.WriteUID(goimap.UID(m.UID))
	if options.Flags || flagsChanged {
		w.WriteFlags(imapFlags(m.Flags))
	}
	if options.InternalDate {
		w.WriteInternalDate(m.InternalDate)
	}
	if options.RFC822Size {
		w.WriteRFC822Size(m.Size)
	}
	needFile := (options.Envelope && env == nil && hdr == nil) || options.BodyStructure != nil ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, bs := range options.BodySection {
		needFile = needFile || hdr == nil || !headerOnly(bs)
	}
	if !needFile && !options.Envelope && len(options.BodySection) == 0 {
		return w.Close()
	}
	var f store.Body
	if needFile && pre != nil {
		f = pre
	} else if needFile {
		var err error
		f, err = s.srv.st.OpenBody(s.ctx, m)
		if err != nil {
			// Expunged by another session meanwhile: answer what we have.
			s.logger.InfoContext(s.ctx, "imap fetch: body gone", "uid", m.UID, "err", err)
			return w.Close()
		}
		defer f.Close()
	}
	// Each reader reads the file from its start, at its own offset.
	rewind := func() io.Reader { return io.NewSectionReader(f, 0, m.Size) }
	if options.Envelope {
		switch {
		case env != nil:
			w.WriteEnvelope(env)
		case hdr != nil:
			w.WriteEnvelope(envelopeBytes(hdr))
		default:
			w.WriteEnvelope(envelope(rewind()))
		}
	}
	if options.BodyStructure != nil {
		w.WriteBodyStructure(imapserver.ExtractBodyStructure(rewind()))
	}
	for _, bs := range options.BodySection {
		var buf []byte
		if len(bs.Part) == 0 && bs.Specifier == goimap.PartSpecifierNone && bs.Partial == nil {
			// The whole message: stream it.
			wc := w.WriteBodySection(bs, m.Size)
			buf := copyBufs.Get().(*[]byte)
			// No NUL in a literal (binary.go).
			src := &readErr{r: rewind()}
			_, werr := io.CopyBuffer(noNUL{wc}, src, *buf)
			copyBufs.Put(buf)
			if src.err != nil {
				// The literal's size is announced and cannot be met: the
				// client would wait for the rest forever. Hang up, as
				// Dovecot does when a read fails in the middle of a FETCH.
				s.logger.WarnContext(s.ctx, "imap fetch: body read failed in the middle of its literal, closing the connection", "uid", m.UID, "err", src.err)
				s.conn.Close()
				return fmt.Errorf("fetch body of %d: %w", m.UID, src.err)
			}
			if cerr := wc.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return fmt.Errorf("fetch body of %d: %w", m.UID, werr)
			}
			continue
		}
		if hdr != nil && headerOnly(bs) {
			buf = bodySection(bytes.NewReader(hdr), bs)
		} else {
			buf = bodySection(rewind(), bs)
		}
		replaceNUL(buf)
		wc := w.WriteBodySection(bs, int64(len(buf)))
		_, werr := wc.Write(buf)
		if cerr := wc.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return werr
		}
	}
	for _, bs := range options.BinarySection {
		buf := imapserver.ExtractBinarySection(rewind(), bs)
		s.conn.noteBinary(bs)
		wc := w.WriteBinarySection(bs, int64(len(buf)))
		_, werr := wc.Write(buf)
		if cerr := wc.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return werr
		}
	}
	for _, bss := range options.BinarySectionSize {
		w.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(rewind(), bss))
	}
	return w.Close()
}

func (s *session) Search(kind imapserver.NumKind, criteria *goimap.SearchCriteria, options *goimap.SearchOptions) (*goimap.SearchData, error) {
	defer s.conn.watchGone(s.cancel)()
	if err := s.syncCmd(s.view.sm); err != nil {
		return nil, s.imapError(err)
	}
	// The answer (one number per message) is written after Search
	// returns: gathered in big writes until the tagged response.
	s.conn.cork()
	wantUIDs := kind == imapserver.NumKindUID || options.ReturnSave
	var data goimap.SearchData
	var seqSet goimap.SeqSet
	var uidSet goimap.UIDSet
	err := s.eachMatch(criteria, func(cseq uint32, m *store.Message) {
		// Numbers ascend: each extends the last range or starts one.
		if wantUIDs {
			uidSet = appendUID(uidSet, goimap.UID(m.UID))
		}
		var num uint32
		switch kind {
		case imapserver.NumKindSeq:
			if cseq == 0 {
				return
			}
			seqSet = appendSeq(seqSet, cseq)
			num = cseq
		case imapserver.NumKindUID:
			num = m.UID
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	})
	if err != nil {
		return nil, err
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if options.ReturnSave {
		s.view.searchRes = uidSet
	}
	return &data, nil
}

// eachMatch calls match, in mailbox order, for each message of the
// selected mailbox that criteria select, with its sequence number in the
// client's view (0: not yet announced to the client). The mailbox must be
// synced.
// searchChunk is how many messages' cached headers a SEARCH reads at once.
const searchChunk = 1000

func (s *session) eachMatch(criteria *goimap.SearchCriteria, match func(cseq uint32, m *store.Message)) error {
	v := s.view
	v.sm.mu.Lock()
	s.staticCriteria(criteria)
	// Snapshots are replaced, never changed in place: this one stays as
	// it is without the lock.
	msgs, gone := v.currentLocked()
	v.sm.mu.Unlock()

	// The cached headers are read searchChunk messages at a time: all of
	// a 10 000-message mailbox at once were 7 MB per session.
	var hdrs [][]byte
	hdrBase := 0 // hdrs[i-hdrBase] is the header of msgs[i]
	var uids []uint32
	wantHeaders := needsHeader(criteria)
	sc := &scanState{}
	var lm lazyMessage
	// A search that reads the messages holds one of the server's scan
	// slots, taken again every scanChunk messages (see Server.scans).
	var slot scanSlot
	var batch bodyBatch
	var keep keepRead // texts of the messages read, for the backend to keep
	if readsBodies(criteria) {
		slot = scanSlot{scans: s.srv.scans}
		defer slot.release()
		batch.bb, _ = s.srv.st.(store.BodyBatcher)
		defer batch.close()
		var err error
		if batch.kept, err = s.keptTexts(criteria, msgs); err != nil {
			return s.imapError(err)
		}
		if batch.kept != nil {
			keep = keepRead{ts: s.srv.st.(store.TextSearcher), logger: s.logger}
			defer keep.flush(s.ctx)
		}
	}
	// \Recent is added to the flags tested only when asked about.
	recent := v.rev1 && len(v.recent) > 0 && mentionsRecent(criteria)
	for i := range msgs {
		if slot.scans != nil && i%scanChunk == 0 {
			slot.release()
			if err := slot.acquire(s.ctx); err != nil {
				return err
			}
		}
		if i%256 == 0 && s.ctx.Err() != nil {
			return s.ctx.Err() // the client went away (gone.go)
		}
		if gone != nil && gone[i] {
			continue // expunged by another session
		}
		m := &msgs[i]
		cseq := uint32(i) + 1
		lm = lazyMessage{s: s, m: *m, sc: sc, pre: batch.body(s.ctx, msgs, gone, i), kept: batch.kept, ki: i}
		if recent && v.isRecent(m.UID) {
			lm.m.Flags = append(append([]string(nil), m.Flags...), string(flagRecent))
		}
		if wantHeaders {
			if hdrs == nil || i-hdrBase >= len(hdrs) {
				hdrBase = i
				uids = uids[:0]
				for _, m := range msgs[i:min(i+searchChunk, len(msgs))] {
					uids = append(uids, m.UID)
				}
				var err error
				if hdrs, err = s.srv.st.Headers(s.ctx, s.user, v.sm.key.id, uids); err != nil {
					return s.imapError(err)
				}
			}
			lm.hdr = hdrs[i-hdrBase]
		}
		if matchCriteria(&lm, cseq, criteria) {
			match(cseq, m)
		}
		keep.add(s.ctx, &lm)
	}
	return nil
}

// mentionsRecent reports whether c tests \Recent (RECENT, NEW, OLD).
func mentionsRecent(c *goimap.SearchCriteria) bool {
	for _, fl := range [][]goimap.Flag{c.Flag, c.NotFlag} {
		for _, f := range fl {
			if strings.EqualFold(string(f), string(flagRecent)) {
				return true
			}
		}
	}
	for i := range c.Not {
		if mentionsRecent(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if mentionsRecent(&c.Or[i][0]) || mentionsRecent(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// appendSeq adds n, greater than every number of set, to set, as
// set.AddNum(n) does, without its search and deferred calls per number.
func appendSeq(set goimap.SeqSet, n uint32) goimap.SeqSet {
	if k := len(set); k > 0 && set[k-1].Stop+1 == n {
		set[k-1].Stop = n
		return set
	}
	return append(set, goimap.SeqRange{Start: n, Stop: n})
}

// appendUID is appendSeq for UIDs.
func appendUID(set goimap.UIDSet, n goimap.UID) goimap.UIDSet {
	if k := len(set); k > 0 && set[k-1].Stop+1 == n {
		set[k-1].Stop = n
		return set
	}
	return append(set, goimap.UIDRange{Start: n, Stop: n})
}

// staticCriteria resolves "*" and "$" in the criteria's number sets.
// sm.mu must be held.
func (s *session) staticCriteria(c *goimap.SearchCriteria) {
	seqs := make([]goimap.SeqSet, 0, len(c.SeqNum))
	for _, ss := range c.SeqNum {
		switch ns := s.view.staticNumSetLocked(ss).(type) {
		case goimap.SeqSet:
			seqs = append(seqs, ns)
		case goimap.UIDSet:
			c.UID = append(c.UID, ns)
		}
	}
	c.SeqNum = seqs
	for i := range c.UID {
		c.UID[i] = s.view.staticNumSetLocked(c.UID[i]).(goimap.UIDSet)
	}
	for i := range c.Not {
		s.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		s.staticCriteria(&c.Or[i][0])
		s.staticCriteria(&c.Or[i][1])
	}
}

// readErr remembers the error of its reader, to tell a failed read from a
// failed write after an io.Copy.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
