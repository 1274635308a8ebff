package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// blobID names a message body file. It is random, so that a body can be
// written before the index knows its UID.
type blobID [16]byte

func (b blobID) String() string { return hex.EncodeToString(b[:]) }

func parseBlobID(s string) (blobID, bool) {
	var b blobID
	if len(s) != 2*len(b) {
		return b, false
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return b, false
	}
	// Only lowercase hex is ever written: "AB..." is not ours.
	if hex.EncodeToString(b[:]) != s {
		return b, false
	}
	return b, true
}

// msgRecord is the index entry of one message, stored under its UID.
type msgRecord struct {
	Size         int64
	InternalDate time.Time
	ModSeq       uint64
	Blob         blobID // body file, when Body is 0
	Body         uint64 // body kept in the index (body.go), or 0
	Flags        []string
}

const (
	msgRecordVersion       = 1 // body in a file
	msgRecordVersionInline = 2 // body in the index
)

// errCorrupt is returned when a stored record cannot be decoded.
var errCorrupt = errors.New("store: corrupt index record")

// Binary layout (version 1, body in a file):
//
//	byte     version
//	uvarint  size
//	varint   internal date, Unix seconds
//	uvarint  internal date, nanoseconds
//	uvarint  modseq
//	[16]byte blob id
//	uvarint  number of flags, then for each: uvarint length, bytes
//
// Version 2 (body in the index) has, instead of the blob id, the uvarint
// body id (not 0).
func encodeMsg(m *msgRecord) []byte {
	n := 1 + 4*binary.MaxVarintLen64 + len(m.Blob) + binary.MaxVarintLen64
	for _, f := range m.Flags {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 0, n)
	if m.Body != 0 {
		b = append(b, msgRecordVersionInline)
	} else {
		b = append(b, msgRecordVersion)
	}
	b = binary.AppendUvarint(b, uint64(m.Size))
	b = binary.AppendVarint(b, m.InternalDate.Unix())
	b = binary.AppendUvarint(b, uint64(m.InternalDate.Nanosecond()))
	b = binary.AppendUvarint(b, m.ModSeq)
	if m.Body != 0 {
		b = binary.AppendUvarint(b, m.Body)
	} else {
		b = append(b, m.Blob[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Flags)))
	for _, f := range m.Flags {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// Limits of what the index holds. The reader (decodeMsg, normalizeMailbox)
// refuses what is beyond them; the writer refuses it too, before anything
// is written (checkMsg through putMsg, normalizeFlags, normalizeMailbox),
// so that no command can store a record that the next Open cannot read.
const (
	// MaxFlags bounds the flags (system flags and keywords) of one
	// message, so that a corrupt count cannot make the decoder allocate
	// without limit.
	MaxFlags = 1024
	// MaxKeywordLen is the longest flag or keyword, in bytes.
	MaxKeywordLen = 256
	// MaxMailboxName is the longest mailbox name, in bytes (UTF-8).
	MaxMailboxName = 512
	// maxMsgSize is the largest message size a record can hold.
	maxMsgSize = 1 << 62
)

// ErrLimit is returned, as a *LimitError, when a change would go beyond
// one of the store's limits; nothing is written then.
var ErrLimit = errors.New("store: limit exceeded")

// LimitError says which limit a change would go beyond.
type LimitError struct {
	Text string // for the user, e.g. "too many keywords (1025, at most 1024)"
}

func (e *LimitError) Error() string { return ErrLimit.Error() + ": " + e.Text }

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

func limitErr(format string, args ...any) error {
	return &LimitError{Text: fmt.Sprintf(format, args...)}
}

// checkMsg reports whether decodeMsg would read m back: every limit the
// reader enforces, checked by the writer.
func checkMsg(m *msgRecord) error {
	if len(m.Flags) > MaxFlags {
		return limitErr("too many keywords (%d, at most %d)", len(m.Flags), MaxFlags)
	}
	for _, f := range m.Flags {
		if len(f) > MaxKeywordLen {
			return limitErr("keyword longer than %d bytes", MaxKeywordLen)
		}
	}
	if m.Size < 0 || m.Size > maxMsgSize {
		return limitErr("message size %d", m.Size)
	}
	return nil
}

// putMsg stores the record of message uid in b, the messages bucket of
// a mailbox: every writer of message records goes through it.
func putMsg(b *bolt.Bucket, uid uint32, m *msgRecord) error {
	if err := checkMsg(m); err != nil {
		return err
	}
	return b.Put(uidKey(uid), encodeMsg(m))
}

func decodeMsg(b []byte) (msgRecord, error) { return decodeMsgArena(b, nil) }

// decodeMsgArena is decodeMsg with the message's flags taken from the
// end of *arena when it has room (a list of a whole mailbox's messages:
// one allocation for the flags of many), as a slice whose capacity is its
// length, so that an append to it copies. The system flags are the
// package's constants, not a copy each.
func decodeMsgArena(b []byte, arena *[]string) (msgRecord, error) {
	var m msgRecord
	if len(b) < 1 || (b[0] != msgRecordVersion && b[0] != msgRecordVersionInline) {
		return m, fmt.Errorf("%w: unknown message record version", errCorrupt)
	}
	inline := b[0] == msgRecordVersionInline
	b = b[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	size, ok := uv()
	if !ok || size > maxMsgSize {
		return m, fmt.Errorf("%w: size", errCorrupt)
	}
	m.Size = int64(size)
	sec, n := binary.Varint(b)
	if n <= 0 {
		return m, fmt.Errorf("%w: internal date", errCorrupt)
	}
	b = b[n:]
	nsec, ok := uv()
	if !ok || nsec >= 1e9 {
		return m, fmt.Errorf("%w: internal date", errCorrupt)
	}
	m.InternalDate = time.Unix(sec, int64(nsec)).UTC()
	if m.ModSeq, ok = uv(); !ok {
		return m, fmt.Errorf("%w: modseq", errCorrupt)
	}
	if inline {
		if m.Body, ok = uv(); !ok || m.Body == 0 {
			return m, fmt.Errorf("%w: body id", errCorrupt)
		}
	} else {
		if len(b) < len(m.Blob) {
			return m, fmt.Errorf("%w: blob id", errCorrupt)
		}
		copy(m.Blob[:], b)
		b = b[len(m.Blob):]
	}
	nflags, ok := uv()
	if !ok || nflags > MaxFlags {
		return m, fmt.Errorf("%w: flag count", errCorrupt)
	}
	if nflags > 0 {
		if arena != nil && uint64(cap(*arena)-len(*arena)) >= nflags {
			a := *arena
			*arena = a[: len(a)+int(nflags) : cap(a)]
			m.Flags = a[len(a) : len(a) : len(a)+int(nflags)]
		} else {
			m.Flags = make([]string, 0, nflags)
		}
	}
	for i := uint64(0); i < nflags; i++ {
		l, ok := uv()
		if !ok || l > uint64(len(b)) {
			return m, fmt.Errorf("%w: flag", errCorrupt)
		}
		m.Flags = append(m.Flags, internFlag(b[:l]))
		b = b[l:]
	}
	if len(b) != 0 {
		return m, fmt.Errorf("%w: trailing bytes", errCorrupt)
	}
	return m, nil
}

// System flags (RFC 9051 section 2.3.2), in their canonical spelling.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

var systemFlags = []string{FlagSeen, FlagAnswered, FlagFlagged, FlagDeleted, FlagDraft}

// canonicalFlag returns the stored spelling of flag and whether it can be
// stored at all (\Recent and malformed atoms cannot; see normalizeFlags
// for those too long).
func canonicalFlag(flag string) (string, bool) {
	if flag == "" || len(flag) > MaxKeywordLen {
		return "", false
	}
	if strings.HasPrefix(flag, `\`) {
		for _, f := range systemFlags {
			if strings.EqualFold(f, flag) {
				return f, true
			}
		}
		return "", false // \Recent, \* or an unknown system flag
	}
	for _, c := range []byte(flag) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return "", false
		}
	}
	return flag, true
}

// normalizeFlags canonicalises flags, drops what cannot be stored and
// removes case-insensitive duplicates, keeping the first spelling. A flag
// longer than MaxKeywordLen, or more than MaxFlags of them, is an error
// (ErrLimit) rather than dropped: the client learns that it was not kept.
func normalizeFlags(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if len(f) > MaxKeywordLen {
			return nil, limitErr("keyword longer than %d bytes", MaxKeywordLen)
		}
		c, ok := canonicalFlag(f)
		if !ok || hasFlag(out, c) {
			continue
		}
		out = append(out, c)
		if len(out) > MaxFlags {
			return nil, limitErr("too many keywords (more than %d)", MaxFlags)
		}
	}
	return out, nil
}

func hasFlag(flags []string, flag string) bool {
	for _, f := range flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

func uidKey(uid uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, uid)
}

func mailboxKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}

// internFlag returns the flag in b: one of the system flags' constants
// (no allocation), else a copy.
func internFlag(b []byte) string {
	switch string(b) {
	case FlagSeen:
		return FlagSeen
	case FlagAnswered:
		return FlagAnswered
	case FlagFlagged:
		return FlagFlagged
	case FlagDeleted:
		return FlagDeleted
	case FlagDraft:
		return FlagDraft
	}
	return string(b)
}
