package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The header cache: the header of every message (RFC 5322 section 2.2,
// up to and including the empty line that ends it), captured while the
// body is written at delivery and kept in the index, so that IMAP can
// answer FETCH ENVELOPE, BODY[HEADER...] and header SEARCH keys without
// opening message files. It lives in its own buckets, beside the message
// records, so that flag changes do not rewrite it:
//
//	users/<user>/hdrs/<mailbox id>/<uid> = version 1: 0x01, header bytes
//	                                       version 2: 0x02, uvarint n,
//	                                       n bytes of summary, header bytes
//
// The summary is what the function given to SetHeaderSummary made of the
// header at delivery (IMAP's ENVELOPE, encoded), opaque to the store.
//
// Stores written before the cache existed have no hdrs bucket, and headers
// longer than MaxCachedHeader are not cached: Headers returns nil for those
// messages and callers read the file, as before.
var bucketHdrs = []byte("hdrs")

// hdrBlock is the size of the blocks that Headers copies headers into.
const hdrBlock = 256 << 10

// MaxCachedHeader is the longest header kept in the index.
const MaxCachedHeader = 64 << 10

const (
	hdrRecordVersion        = 1
	hdrRecordVersionSummary = 2
)

// SetHeaderSummary sets the function that makes, at delivery, the summary
// of a message header kept beside it (see Summaries); nil: none. It may
// be called at any time; deliveries use the function set when they
// start.
func (s *Store) SetHeaderSummary(fn func(header []byte) []byte) {
	if fn == nil {
		s.summary.Store(nil)
		return
	}
	s.summary.Store(&fn)
}

func (s *Store) summarize(hdr []byte) []byte {
	fn := s.summary.Load()
	if fn == nil || hdr == nil {
		return nil
	}
	return (*fn)(hdr)
}

// headerCapture collects the header of a message as its body is written.
type headerCapture struct {
	buf  []byte
	done bool // the header is complete in buf, or too long to cache
	ok   bool // buf holds the whole header
}

func (h *headerCapture) Write(p []byte) (int, error) {
	if h.done {
		return len(p), nil
	}
	start := len(h.buf) - 2 // the end may straddle two writes
	if start < 0 {
		start = 0
	}
	take := p
	if room := MaxCachedHeader + 2 - len(h.buf); len(take) > room {
		take = take[:room]
	}
	h.buf = append(h.buf, take...)
	if end := headerEnd(h.buf, start); end >= 0 {
		h.buf, h.done, h.ok = h.buf[:end], true, true
		return len(p), nil
	}
	if len(h.buf) > MaxCachedHeader {
		h.buf, h.done = nil, true
	}
	return len(p), nil
}

// header returns the captured header, or nil when it is not cacheable. A
// message without an empty line is all header (as textproto.ReadHeader
// reads it).
func (h *headerCapture) header() []byte {
	if h.ok {
		return h.buf
	}
	if h.done || len(h.buf) > MaxCachedHeader {
		return nil
	}
	return h.buf
}

// headerEnd returns the length of the header in b (through the empty line
// that ends it), searching from from, or -1. The header ends at the first
// empty line: "\r\n" or "\n" at the start of the message or after a "\n".
func headerEnd(b []byte, from int) int {
	if from == 0 {
		if bytes.HasPrefix(b, []byte("\r\n")) {
			return 2
		}
		if bytes.HasPrefix(b, []byte("\n")) {
			return 1
		}
	}
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// hdrBucket returns the header bucket of a mailbox, creating it when
// create is set (within a writable transaction); nil when absent.
func (u *userTx) hdrBucket(mailboxID uint64, create bool) (*bolt.Bucket, error) {
	root := u.b.Bucket(bucketHdrs)
	if root == nil {
		if !create {
			return nil, nil
		}
		var err error
		if root, err = u.b.CreateBucket(bucketHdrs); err != nil {
			return nil, err
		}
	}
	b := root.Bucket(mailboxKey(mailboxID))
	if b == nil && create {
		return root.CreateBucket(mailboxKey(mailboxID))
	}
	return b, nil
}

func encodeHeader(hdr, summary []byte) []byte {
	if summary == nil {
		v := make([]byte, 0, 1+len(hdr))
		return append(append(v, hdrRecordVersion), hdr...)
	}
	v := make([]byte, 0, 1+binary.MaxVarintLen64+len(summary)+len(hdr))
	v = append(v, hdrRecordVersionSummary)
	v = binary.AppendUvarint(v, uint64(len(summary)))
	return append(append(v, summary...), hdr...)
}

func (u *userTx) putHeader(mailboxID uint64, uid uint32, hdr, summary []byte) error {
	if hdr == nil {
		return nil
	}
	return u.putHeaderRecord(mailboxID, uid, encodeHeader(hdr, summary))
}

// putHeaderRecord stores an encoded record; v must not be a value of the
// index (those are valid only until the next change).
func (u *userTx) putHeaderRecord(mailboxID uint64, uid uint32, v []byte) error {
	b, err := u.hdrBucket(mailboxID, true)
	if err != nil {
		return err
	}
	return b.Put(uidKey(uid), v)
}

// getHeaderRecord returns a copy of the encoded header record of a
// message, or nil.
func (u *userTx) getHeaderRecord(mailboxID uint64, uid uint32) []byte {
	b, _ := u.hdrBucket(mailboxID, false)
	if b == nil {
		return nil
	}
	v := b.Get(uidKey(uid))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// decodeHeader splits a header record into the header and its summary
// (nil if none); both nil when the record is not understood.
func decodeHeader(v []byte) (hdr, summary []byte) {
	if len(v) < 1 {
		return nil, nil
	}
	switch v[0] {
	case hdrRecordVersion:
		return v[1:], nil
	case hdrRecordVersionSummary:
		n, k := binary.Uvarint(v[1:])
		if k <= 0 || n > uint64(len(v)-1-k) {
			return nil, nil
		}
		rest := v[1+k:]
		return rest[n:], rest[:n:n]
	}
	return nil, nil
}

func (u *userTx) deleteHeaders(mailboxID uint64, uids []uint32) error {
	b, _ := u.hdrBucket(mailboxID, false)
	if b == nil {
		return nil
	}
	for _, uid := range uids {
		if err := b.Delete(uidKey(uid)); err != nil {
			return err
		}
	}
	return nil
}

func (u *userTx) deleteHeaderBucket(mailboxID uint64) error {
	root := u.b.Bucket(bucketHdrs)
	if root == nil || root.Bucket(mailboxKey(mailboxID)) == nil {
		return nil
	}
	return root.DeleteBucket(mailboxKey(mailboxID))
}

// Headers returns the headers of the messages of a mailbox (by ID, stable
// across renames) whose UIDs are given, as cached at delivery, in the
// order of uids: hdrs[i] is the header of uids[i] (through the empty line
// that ends it), or nil when it is not cached (message gone, header too
// long, or delivered before the cache existed): read the file then.
func (s *Store) Headers(ctx context.Context, user string, mailboxID uint64, uids []uint32) ([][]byte, error) {
	return s.headers(ctx, user, mailboxID, uids, false)
}

// Summaries is Headers for the summaries made by the function given to
// SetHeaderSummary: nil for messages delivered without one.
func (s *Store) Summaries(ctx context.Context, user string, mailboxID uint64, uids []uint32) ([][]byte, error) {
	return s.headers(ctx, user, mailboxID, uids, true)
}

func (s *Store) headers(ctx context.Context, user string, mailboxID uint64, uids []uint32, summaries bool) ([][]byte, error) {
	out := make([][]byte, len(uids))
	err := s.view(ctx, user, func(u *userTx) error {
		b, _ := u.hdrBucket(mailboxID, false)
		if b == nil {
			return nil
		}
		// Copied as they are read (a file cursor reuses its pages) into
		// blocks of hdrBlock bytes: a few allocations for all, which the
		// caller keeps together, and no copy of those already read.
		var block []byte
		read := func(c kvCursor) error {
			clear(out)
			block = nil
			// uids usually ascend (a mailbox in UID order): the cursor
			// then moves on by Next, seeking only over gaps or backwards.
			var key [4]byte
			var k, v []byte
			var err error
			for i, uid := range uids {
				binary.BigEndian.PutUint32(key[:], uid)
				if i == 0 || uid <= uids[i-1] {
					k, v, err = c.Seek(key[:])
				} else if k != nil && bytes.Compare(k, key[:]) < 0 {
					if k, v, err = c.Next(); err == nil && k != nil && bytes.Compare(k, key[:]) < 0 {
						k, v, err = c.Seek(key[:])
					}
				}
				if err != nil {
					return err
				}
				if k == nil || !bytes.Equal(k, key[:]) {
					continue
				}
				hdr, summary := decodeHeader(v)
				if summaries {
					hdr = summary
				}
				if hdr == nil {
					continue
				}
				if cap(block)-len(block) < len(hdr) {
					// Room for those left at 512 bytes each, at most
					// hdrBlock (the usual header is 300-1000 bytes).
					block = make([]byte, 0, max(len(hdr), min(hdrBlock, (len(uids)-i)*512)))
				}
				start := len(block)
				block = append(block, hdr...)
				out[i] = block[start:len(block):len(block)]
			}
			return nil
		}
		err := errNoFileRead
		if fc := s.file.cursor(u.tx, b); fc != nil {
			err = read(fc)
			fc.release()
		}
		if errors.Is(err, errNoFileRead) {
			err = read(boltCursor{b.Cursor()})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read headers of mailbox %d of %q: %w", mailboxID, user, err)
	}
	return out, nil
}
