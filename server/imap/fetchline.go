package imap

import (
	"mime"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/store"
)

// FETCH responses of the common kind (UID, FLAGS, INTERNALDATE,
// RFC822.SIZE, ENVELOPE: what a client asks of a whole mailbox when it
// opens it) are made here, byte for byte as the library's
// FetchResponseWriter makes them (TestFetchLinesAsLibrary), into one
// buffer written at once. The library builds every response through a
// locked encoder with a write deadline, a quoting strings.Builder per
// string and a flush per line: that was most of FETCH 1:* ENVELOPE. A
// message with anything this code does not write as the library does (a
// string that needs a literal, a flag that is not a plain atom) goes
// through the library.

// rawFetch turns this path off (tests: false).
var rawFetch atomic.Bool

func init() { rawFetch.Store(true) }

// Layouts of the library (internal.DateTimeLayout, envelopeDateLayout).
const (
	internalDateLayout = "_2-Jan-2006 15:04:05 -0700"
	envelopeDateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"
)

// fetchLineItems reports whether options ask only for items appendFetch
// writes.
func fetchLineItems(options *goimap.FetchOptions) bool {
	return rawFetch.Load() && options.BodyStructure == nil && len(options.BodySection) == 0 &&
		len(options.BinarySection) == 0 && len(options.BinarySectionSize) == 0 && !options.ModSeq
}

// appendFetch appends to b the FETCH response that fetchOne writes
// through the library for m, with env its envelope (when options ask for
// it). ok is false (and b unchanged) when the library must write it.
func appendFetch(b []byte, seq uint32, m *store.Message, options *goimap.FetchOptions, flagsChanged bool, env *goimap.Envelope) (_ []byte, ok bool) {
	return appendFetchUTF8(b, seq, m, options, flagsChanged, env, false)
}

// appendFetchUTF8 is appendFetch for a session that enabled UTF8=ACCEPT
// (RFC 9755) or IMAP4rev2 when utf8 is set: see appendEnvelope.
func appendFetchUTF8(b []byte, seq uint32, m *store.Message, options *goimap.FetchOptions, flagsChanged bool, env *goimap.Envelope, utf8 bool) (_ []byte, ok bool) {
	start := len(b)
	fail := func() ([]byte, bool) { return b[:start], false }
	b = append(b, "* "...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	b = append(b, " FETCH (UID "...)
	b = strconv.AppendUint(b, uint64(m.UID), 10)
	if options.Flags || flagsChanged {
		b = append(b, " FLAGS ("...)
		for i, f := range m.Flags {
			if !plainFlag(f) {
				return fail()
			}
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, f...)
		}
		b = append(b, ')')
	}
	if options.InternalDate {
		b = append(b, " INTERNALDATE \""...)
		b = m.InternalDate.AppendFormat(b, internalDateLayout)
		b = append(b, '"')
	}
	if options.RFC822Size {
		b = append(b, " RFC822.SIZE "...)
		b = strconv.AppendInt(b, m.Size, 10)
	}
	if options.Envelope {
		if env == nil {
			return fail()
		}
		b = append(b, " ENVELOPE "...)
		if b, ok = appendEnvelope(b, env, utf8); !ok {
			return fail()
		}
	}
	return append(b, ")\r\n"...), true
}

// appendEnvelope is the library's writeEnvelope. With utf8 (the client
// enabled UTF8=ACCEPT, RFC 9755 section 3, or IMAP4rev2), the subject and
// display names are sent in UTF-8 as the header has them, in quoted
// strings, where the library always makes RFC 2047 encoded words of them.
func appendEnvelope(b []byte, env *goimap.Envelope, utf8 bool) (_ []byte, ok bool) {
	sender, replyTo := env.Sender, env.ReplyTo
	if sender == nil {
		sender = env.From
	}
	if replyTo == nil {
		replyTo = env.From
	}
	ok = true
	nstring := func(s string) {
		if s == "" {
			b = append(b, "NIL"...)
			return
		}
		var good bool
		if utf8 {
			b, good = appendQuotedUTF8(b, s)
		} else {
			b, good = appendQuoted(b, s)
		}
		ok = ok && good
	}
	encodeWord := func(s string) string {
		if utf8 {
			return s
		}
		return mime.QEncoding.Encode("utf-8", s)
	}
	b = append(b, '(')
	if env.Date.IsZero() {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '"')
		b = env.Date.AppendFormat(b, envelopeDateLayout)
		b = append(b, '"')
	}
	b = append(b, ' ')
	nstring(encodeWord(env.Subject))
	for _, l := range [][]goimap.Address{env.From, sender, replyTo, env.To, env.Cc, env.Bcc} {
		b = append(b, ' ')
		if len(l) == 0 {
			b = append(b, "NIL"...)
			continue
		}
		b = append(b, '(')
		for i, a := range l {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, '(')
			nstring(encodeWord(a.Name))
			b = append(b, " NIL "...)
			nstring(a.Mailbox)
			b = append(b, ' ')
			nstring(a.Host)
			b = append(b, ')')
		}
		b = append(b, ')')
	}
	b = append(b, ' ')
	if len(env.InReplyTo) > 0 {
		nstring("<" + strings.Join(env.InReplyTo, "> <") + ">")
	} else {
		b = append(b, "NIL"...)
	}
	b = append(b, ' ')
	if env.MessageID != "" {
		nstring("<" + env.MessageID + ">")
	} else {
		b = append(b, "NIL"...)
	}
	return append(b, ')'), ok
}

// appendQuoted appends s as a quoted string, as the library writes the
// strings it may quote; ok is false for those it may write as a literal
// (beyond 4096 bytes, or with a byte that is not printable ASCII: the
// library quotes some of them, or not, depending on the client).
func appendQuoted(b []byte, s string) ([]byte, bool) {
	if len(s) > 4096 {
		return b, false
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return b, false
		}
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"'), true
}

// appendQuotedUTF8 is appendQuoted allowing UTF-8 (valid sequences only),
// as the library quotes strings once UTF8=ACCEPT or IMAP4rev2 is enabled.
func appendQuotedUTF8(b []byte, s string) ([]byte, bool) {
	if len(s) > 4096 || !utf8.ValidString(s) {
		return b, false
	}
	start := len(b)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return b[:start], false
		}
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"'), true
}

// plainFlag reports whether f is a flag the library writes as is: an
// atom, maybe after a backslash, of letters, digits and a few others.
func plainFlag(f string) bool {
	f = strings.TrimPrefix(f, `\`)
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("$-_.", c) >= 0) {
			return false
		}
	}
	return true
}
