package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

func (s *Store) step(name, path string) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(name, path)
}

// writeBody makes body durable under a new blob name: the file, its
// fsync, the fsync of its directory. It captures the message header for
// the index (see header.go) in hc.
//
// The file is written under its final name, without a temporary name and
// a rename: no index record refers to it before the commit that follows,
// so a crash leaves only an orphan that Open removes, as it would a
// temporary file. Without a rename, the fsync of the file also makes its
// directory entry durable (one journal commit on ext4), and the fsync of
// the directory that follows finds little to do.
func (s *Store) writeBody(ctx context.Context, body io.Reader, hc *headerCapture) (blobID, int64, error) {
	var b blobID
	if _, err := rand.Read(b[:]); err != nil {
		return b, 0, err
	}
	final := s.blobPath(b)
	f, err := openFile(final, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return b, 0, err
	}
	fail := func(err error) (blobID, int64, error) {
		f.Close()
		os.Remove(final)
		return b, 0, err
	}
	w := writerPool.Get().(*bufio.Writer)
	w.Reset(f)
	n, err := io.Copy(io.MultiWriter(w, hc), ctxReader{ctx, body})
	if err == nil {
		err = w.Flush()
	}
	w.Reset(nil)
	writerPool.Put(w)
	if err == nil {
		err = s.step("write", final)
	}
	if err != nil {
		return fail(fmt.Errorf("write body: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("fsync body: %w", err))
	}
	if err := s.step("fsync", final); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(final)
		return b, 0, fmt.Errorf("close body: %w", err)
	}
	if err := s.dirSync[b[0]].sync(filepath.Dir(final)); err != nil {
		os.Remove(final)
		return b, 0, fmt.Errorf("fsync body directory: %w", err)
	}
	if err := s.step("fsync-dir", final); err != nil {
		os.Remove(final)
		return b, 0, err
	}
	return b, n, nil
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Deliver stores body as a new message of mailbox ("" means INBOX) with the
// given flags and internal date (zero means now). It returns only once the
// message is durable, and then wakes watchers (IMAP IDLE). It fails with
// ErrQuotaExceeded when the message would take user beyond the quota.
func (s *Store) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uid uint32, err error) {
	uid, _, err = s.deliver(ctx, user, mailbox, body, flags, date)
	return uid, err
}

// Append is Deliver for IMAP APPEND: it also returns the UIDVALIDITY of the
// mailbox (RFC 4315 APPENDUID).
func (s *Store) Append(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uidValidity, uid uint32, err error) {
	uid, uidValidity, err = s.deliver(ctx, user, mailbox, body, flags, date)
	return uidValidity, uid, err
}

func (s *Store) deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uid, uidValidity uint32, err error) {
	if mailbox == "" {
		mailbox = Inbox
	}
	if date.IsZero() {
		date = time.Now()
	}
	wrap := func(err error) error {
		return fmt.Errorf("deliver to %q of %q: %w", mailbox, user, err)
	}
	flags, err = normalizeFlags(flags)
	if err != nil {
		return 0, 0, wrap(err)
	}
	// A small body goes into the index, in the commit of its record; a
	// larger one into a file of its own, made durable before that commit.
	bp, err := bodyBufs.ReadUpTo(ctxReader{ctx, body}, s.inlineMax)
	if err != nil {
		return 0, 0, wrap(fmt.Errorf("read body: %w", err))
	}
	defer bodyBufs.Put(bp)
	var hc headerCapture
	var blob blobID
	var size int64
	inline := len(*bp) <= s.inlineMax
	if inline {
		hc.Write(*bp)
		size = int64(len(*bp))
		err = s.step("inline", "")
	} else {
		// Refuse early what the commit would refuse, before writing a file.
		err = s.view(ctx, user, func(u *userTx) error {
			if _, _, err := u.mailbox(mailbox); err != nil {
				return err
			}
			if u.info.Quota > 0 && u.info.Used >= u.info.Quota {
				return ErrQuotaExceeded
			}
			return nil
		})
		if err == nil {
			blob, size, err = s.writeBody(ctx, io.MultiReader(bytes.NewReader(*bp), body), &hc)
		}
	}
	if err != nil {
		return 0, 0, wrap(err)
	}
	hdr := hc.header()
	summary := s.summarize(hdr)
	var mboxID uint64
	err = s.group.update(func(tx *bolt.Tx) error {
		u, err := getUser(tx, user)
		if err != nil {
			return err
		}
		r, name, err := u.mailbox(mailbox)
		if err != nil {
			return err
		}
		if u.info.Quota > 0 && u.info.Used+size > u.info.Quota {
			return ErrQuotaExceeded
		}
		r.ModSeq++
		rec := msgRecord{Size: size, InternalDate: date, ModSeq: r.ModSeq, Blob: blob, Flags: flags}
		if inline {
			if rec.Body, err = putBody(tx, *bp); err != nil {
				return err
			}
		}
		uid, uidValidity, mboxID = r.UIDNext, r.UIDValidity, r.ID
		if err := putMsg(u.msgs(r), uid, &rec); err != nil {
			return err
		}
		if err := u.putHeader(r.ID, uid, hdr, summary); err != nil {
			return err
		}
		r.UIDNext++
		r.Messages++
		r.Size += size
		u.info.Used += size
		u.info.Messages++
		if err := u.putMailbox(name, r); err != nil {
			return err
		}
		return u.putInfo()
	})
	if err == nil {
		if inline {
			err = s.step("commit", "")
		} else {
			err = s.step("commit", s.blobPath(blob))
		}
	}
	if err != nil {
		if !inline {
			os.Remove(s.blobPath(blob))
		}
		return 0, 0, wrap(err)
	}
	if inline {
		s.wroteInline(size)
	} else {
		s.bodyBytes.Add(size)
	}
	s.notify(Change{User: user, MailboxID: mboxID})
	return uid, uidValidity, nil
}

// Messages returns a mailbox and its messages in UID order.
func (s *Store) Messages(ctx context.Context, user, mailbox string) (Mailbox, []Message, error) {
	var mb Mailbox
	var out []Message
	err := s.view(ctx, user, func(u *userTx) error {
		r, name, err := u.mailbox(mailbox)
		if err != nil {
			return err
		}
		mb = r.export(name)
		out, err = u.messages(r)
		return err
	})
	if err != nil {
		return Mailbox{}, nil, fmt.Errorf("list messages of %q of %q: %w", mailbox, user, err)
	}
	return mb, out, nil
}

// MessagesByID is Messages for the mailbox whose ID is id: it follows a
// mailbox across renames.
func (s *Store) MessagesByID(ctx context.Context, user string, id uint64) (Mailbox, []Message, error) {
	var mb Mailbox
	var out []Message
	err := s.view(ctx, user, func(u *userTx) error {
		var r *mailboxRecord
		err := u.b.Bucket(bucketMailboxes).ForEach(func(k, v []byte) error {
			var rec mailboxRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("mailbox %q: %w: %v", k, errCorrupt, err)
			}
			if rec.ID == id {
				r, mb = &rec, rec.export(string(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if r == nil {
			return ErrNoSuchMailbox
		}
		out, err = u.messages(r)
		return err
	})
	if err != nil {
		return Mailbox{}, nil, fmt.Errorf("list messages of mailbox %d of %q: %w", id, user, err)
	}
	return mb, out, nil
}

func (u *userTx) messages(r *mailboxRecord) ([]Message, error) {
	out := make([]Message, 0, r.Messages)
	var arena []string // flags of many messages in one allocation
	err := u.file.forEach(u.tx, u.msgs(r), func(k, v []byte) error {
		if cap(arena)-len(arena) < 16 {
			arena = make([]string, 0, 4096)
		}
		m, err := decodeMsgArena(v, &arena)
		if err != nil {
			return err
		}
		out = append(out, m.export(binary.BigEndian.Uint32(k)))
		return nil
	})
	return out, err
}

func (m *msgRecord) export(uid uint32) Message {
	return Message{UID: uid, Size: m.Size, InternalDate: m.InternalDate, ModSeq: m.ModSeq, Flags: m.Flags, blob: m.Blob, body: m.Body}
}

// OpenBody opens the body of a message returned by Messages or SetFlags:
// a file, or a copy in memory of a body kept in the index. It fails with
// os.ErrNotExist once the message has been expunged.
func (s *Store) OpenBody(ctx context.Context, m Message) (Body, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.body != 0 {
		bp := bodyBufs.Get()
		err := s.db.View(func(tx *bolt.Tx) error {
			b, err := readBody(tx, s.file, m.body, m.Size, *bp)
			if err == nil {
				*bp = b
			}
			return err
		})
		if err != nil {
			bodyBufs.Put(bp)
			return nil, fmt.Errorf("open message %d: %w", m.UID, err)
		}
		return &memBody{Reader: bytes.NewReader(*bp), buf: bp}, nil
	}
	f, err := openFile(s.blobPath(m.blob), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open message %d: %w", m.UID, err)
	}
	return f, nil
}

// FlagOp says how SetFlags combines flags with the current ones.
type FlagOp int

// Flag operations (RFC 9051 STORE FLAGS, +FLAGS, -FLAGS).
const (
	FlagsReplace FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// SetFlags changes the flags of the messages of mailbox whose UIDs are in
// uids, and returns those messages (changed or not) in UID order. Changed
// messages get a new modification sequence.
func (s *Store) SetFlags(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	out, _, err := s.setFlags(ctx, user, mailbox, uids, op, flags, false, 0)
	return out, err
}

// SetFlagsUnchangedSince is SetFlags for the messages whose ModSeq is at
// most unchangedSince (RFC 7162 STORE UNCHANGEDSINCE), checked in the
// same transaction as the change; modified are the UIDs of the others,
// left as they are.
func (s *Store) SetFlagsUnchangedSince(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []Message, modified []uint32, err error) {
	return s.setFlags(ctx, user, mailbox, uids, op, flags, true, unchangedSince)
}

func (s *Store) setFlags(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string, cond bool, unchangedSince uint64) ([]Message, []uint32, error) {
	flags, err := normalizeFlags(flags)
	if err != nil {
		return nil, nil, fmt.Errorf("store flags in %q of %q: %w", mailbox, user, err)
	}
	var out []Message
	var modified []uint32
	var mboxID uint64
	changed := false
	err = s.update(ctx, user, func(u *userTx) error {
		out, modified, changed = out[:0], modified[:0], false
		r, name, err := u.mailbox(mailbox)
		if err != nil {
			return err
		}
		mboxID = r.ID
		b := u.msgs(r)
		modseq := r.ModSeq + 1
		for i, uid := range sortedUIDs(uids) {
			if i%checkMappedEvery == checkMappedEvery-1 {
				s.checkMappedTx(u.tx) // bbolt reads the records through the mapping
			}
			v := b.Get(uidKey(uid))
			if v == nil {
				continue
			}
			m, err := decodeMsg(v)
			if err != nil {
				return err
			}
			if cond && m.ModSeq > unchangedSince {
				modified = append(modified, uid)
				continue
			}
			nf := applyFlags(m.Flags, op, flags)
			if !sameFlags(nf, m.Flags) {
				m.Flags = nf
				m.ModSeq = modseq
				changed = true
				if err := putMsg(b, uid, &m); err != nil {
					return err
				}
			}
			out = append(out, m.export(uid))
		}
		if !changed {
			return nil
		}
		r.ModSeq = modseq
		return u.putMailbox(name, r)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store flags in %q of %q: %w", mailbox, user, err)
	}
	if changed {
		s.notify(Change{User: user, MailboxID: mboxID})
	}
	return out, modified, nil
}

func applyFlags(cur []string, op FlagOp, flags []string) []string {
	var out []string
	switch op {
	case FlagsReplace:
		out = append(out, flags...)
	case FlagsAdd:
		out = append(out, cur...)
		for _, f := range flags {
			if !hasFlag(out, f) {
				out = append(out, f)
			}
		}
	case FlagsRemove:
		for _, f := range cur {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !hasFlag(b, f) {
			return false
		}
	}
	return true
}

func sortedUIDs(uids []uint32) []uint32 {
	out := append([]uint32(nil), uids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Expunge removes the messages of mailbox flagged \Deleted, restricted to
// uids unless uids is nil (RFC 4315 UID EXPUNGE), and returns their UIDs in
// ascending order.
func (s *Store) Expunge(ctx context.Context, user, mailbox string, uids []uint32) ([]uint32, error) {
	var expunged []uint32
	var blobs []blobID
	var inline []uint64
	var mboxID uint64
	err := s.update(ctx, user, func(u *userTx) error {
		expunged, blobs, inline = expunged[:0], blobs[:0], inline[:0]
		r, name, err := u.mailbox(mailbox)
		if err != nil {
			return err
		}
		mboxID = r.ID
		b := u.msgs(r)
		want := map[uint32]bool{}
		for _, uid := range uids {
			want[uid] = true
		}
		var size int64
		if err := b.ForEach(func(k, v []byte) error {
			uid := binary.BigEndian.Uint32(k)
			if uids != nil && !want[uid] {
				return nil
			}
			m, err := decodeMsg(v)
			if err != nil {
				return err
			}
			if hasFlag(m.Flags, FlagDeleted) {
				expunged = append(expunged, uid)
				if m.Body != 0 {
					inline = append(inline, m.Body)
				} else {
					blobs = append(blobs, m.Blob)
				}
				size += m.Size
			}
			return nil
		}); err != nil {
			return err
		}
		if len(expunged) == 0 {
			return nil
		}
		for _, uid := range expunged {
			if err := b.Delete(uidKey(uid)); err != nil {
				return err
			}
		}
		for _, id := range inline {
			if err := deleteBody(u.tx, id); err != nil {
				return err
			}
		}
		if err := u.deleteHeaders(r.ID, expunged); err != nil {
			return err
		}
		r.ModSeq++
		if err := u.recordGone(r, r.ModSeq-1, expunged); err != nil {
			return err
		}
		r.Messages -= len(expunged)
		r.Size -= size
		u.info.Messages -= len(expunged)
		u.info.Used -= size
		if err := u.putMailbox(name, r); err != nil {
			return err
		}
		return u.putInfo()
	})
	if err != nil {
		return nil, fmt.Errorf("expunge %q of %q: %w", mailbox, user, err)
	}
	if len(expunged) > 0 {
		s.removeBlobs(ctx, blobs)
		s.deletedInline(len(inline))
		s.notify(Change{User: user, MailboxID: mboxID})
	}
	return expunged, nil
}

// CopyResult is the outcome of Copy and Move (RFC 4315 COPYUID).
type CopyResult struct {
	UIDValidity uint32   // of the destination
	SourceUIDs  []uint32 // in ascending order
	DestUIDs    []uint32 // DestUIDs[i] is the copy of SourceUIDs[i]
}

// Copy copies the messages of src whose UIDs are in uids to dst. Bodies are
// hard-linked, not duplicated on disk, but count against the quota.
func (s *Store) Copy(ctx context.Context, user, src string, uids []uint32, dst string) (CopyResult, error) {
	res, err := s.copyMove(ctx, user, src, uids, dst, false)
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy from %q to %q of %q: %w", src, dst, user, err)
	}
	return res, nil
}

// Move moves the messages of src whose UIDs are in uids to dst (RFC 6851).
func (s *Store) Move(ctx context.Context, user, src string, uids []uint32, dst string) (CopyResult, error) {
	res, err := s.copyMove(ctx, user, src, uids, dst, true)
	if err != nil {
		return CopyResult{}, fmt.Errorf("move from %q to %q of %q: %w", src, dst, user, err)
	}
	return res, nil
}

func (s *Store) copyMove(ctx context.Context, user, src string, uids []uint32, dst string, move bool) (CopyResult, error) {
	// Read the messages first: a copy needs new hard links made durable
	// before the index refers to them.
	_, msgs, err := s.Messages(ctx, user, src)
	if err != nil {
		return CopyResult{}, err
	}
	want := map[uint32]bool{}
	for _, uid := range uids {
		want[uid] = true
	}
	var sel []Message
	for _, m := range msgs {
		if want[m.UID] {
			sel = append(sel, m)
		}
	}
	links := map[uint32]blobID{}
	var linked []blobID
	cleanup := func() {
		for _, b := range linked {
			os.Remove(s.blobPath(b))
		}
	}
	if !move {
		dirs := map[string]bool{}
		for _, m := range sel {
			if m.body != 0 {
				continue // copied within the transaction
			}
			var b blobID
			if _, err := rand.Read(b[:]); err != nil {
				cleanup()
				return CopyResult{}, err
			}
			if err := os.Link(s.blobPath(m.blob), s.blobPath(b)); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // expunged meanwhile
				}
				cleanup()
				return CopyResult{}, fmt.Errorf("link body: %w", err)
			}
			links[m.UID] = b
			linked = append(linked, b)
			dirs[filepath.Dir(s.blobPath(b))] = true
		}
		for d := range dirs {
			if err := syncDir(d); err != nil {
				cleanup()
				return CopyResult{}, fmt.Errorf("fsync body directory: %w", err)
			}
		}
	}
	var res CopyResult
	var srcID, dstID uint64
	copied := false // bodies in the index
	err = s.update(ctx, user, func(u *userTx) error {
		res, copied = CopyResult{}, false
		sr, sname, err := u.mailbox(src)
		if err != nil {
			return err
		}
		dr, dname, err := u.mailbox(dst)
		if err != nil {
			return err
		}
		if sr.ID == dr.ID {
			// Within one mailbox (RFC 9051 allows it, Dovecot does it):
			// the copies get new UIDs; moved ones leave their old UIDs.
			dr = sr
		}
		srcID, dstID = sr.ID, dr.ID
		sb, db := u.msgs(sr), u.msgs(dr)
		res.UIDValidity = dr.UIDValidity
		dr.ModSeq++
		if move {
			sr.ModSeq++
		}
		var size int64
		for _, uid := range sortedUIDs(uids) {
			v := sb.Get(uidKey(uid))
			if v == nil {
				continue
			}
			m, err := decodeMsg(v)
			if err != nil {
				return err
			}
			if move {
				if err := sb.Delete(uidKey(uid)); err != nil {
					return err
				}
				sr.Messages--
				sr.Size -= m.Size
			} else if m.Body != 0 {
				if m.Body, err = copyBody(u.tx, m.Body, m.Size); err != nil {
					return err
				}
				size += m.Size
				copied = true
			} else {
				b, ok := links[uid]
				if !ok {
					continue
				}
				m.Blob = b
				size += m.Size
			}
			m.ModSeq = dr.ModSeq
			nuid := dr.UIDNext
			dr.UIDNext++
			dr.Messages++
			dr.Size += m.Size
			if err := putMsg(db, nuid, &m); err != nil {
				return err
			}
			if v := u.getHeaderRecord(sr.ID, uid); v != nil {
				if err := u.putHeaderRecord(dr.ID, nuid, v); err != nil {
					return err
				}
			}
			if move {
				if err := u.deleteHeaders(sr.ID, []uint32{uid}); err != nil {
					return err
				}
			}
			res.SourceUIDs = append(res.SourceUIDs, uid)
			res.DestUIDs = append(res.DestUIDs, nuid)
		}
		if len(res.SourceUIDs) == 0 {
			return nil
		}
		if move {
			if err := u.recordGone(sr, sr.ModSeq-1, res.SourceUIDs); err != nil {
				return err
			}
		}
		if !move {
			if u.info.Quota > 0 && u.info.Used+size > u.info.Quota {
				return ErrQuotaExceeded
			}
			u.info.Used += size
			u.info.Messages += len(res.SourceUIDs)
		}
		if sr != dr {
			if err := u.putMailbox(sname, sr); err != nil {
				return err
			}
		}
		if err := u.putMailbox(dname, dr); err != nil {
			return err
		}
		return u.putInfo()
	})
	if err != nil {
		cleanup()
		return CopyResult{}, err
	}
	// Links not referenced (message expunged meanwhile) are removed.
	used := map[blobID]bool{}
	var size int64
	for _, suid := range res.SourceUIDs {
		if b, ok := links[suid]; ok {
			used[b] = true
		}
	}
	for _, m := range sel {
		if b, ok := links[m.UID]; ok && used[b] {
			size += m.Size
		} else if ok {
			os.Remove(s.blobPath(b))
		}
	}
	s.bodyBytes.Add(size)
	if copied {
		s.trimMapping()
	}
	if len(res.SourceUIDs) > 0 {
		if move && srcID != dstID {
			s.notify(Change{User: user, MailboxID: srcID})
		}
		s.notify(Change{User: user, MailboxID: dstID})
	}
	return res, nil
}
