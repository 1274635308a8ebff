package imap

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mailctl/mailctl/server/store"
)

// maxParsedHeader bounds how much of a message is read as its header.
const maxParsedHeader = 1 << 20

// readHeader parses the header of a message. A message without a valid
// header yields an empty one.
func readHeader(r io.Reader) textproto.Header {
	h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(r, maxParsedHeader)))
	if err != nil {
		return textproto.Header{}
	}
	return h
}

// envelope returns the ENVELOPE (RFC 9051 section 7.5.2) of a message.
func envelope(r io.Reader) *goimap.Envelope {
	return envelopeOf(readHeader(r))
}

// envelopeBytes is envelope for a header in memory (as cached in the
// index).
func envelopeBytes(hdr []byte) *goimap.Envelope {
	// A buffer larger than hdr, so that its end reads as EOF, as from the file.
	h, err := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(hdr), len(hdr)+1))
	if err != nil {
		h = textproto.Header{}
	}
	return envelopeOf(h)
}

// envelopeOf builds an ENVELOPE like imapserver.ExtractEnvelope, with
// the usual Date format (RFC 5322 section 3.3, as written by nearly every
// client) parsed directly: net/mail tries a long list of layouts, which
// made dates the dearest part of FETCH ENVELOPE.
func envelopeOf(h textproto.Header) *goimap.Envelope {
	mh := mail.Header{Header: gomessage.Header{Header: h}}
	date, err := time.Parse(time.RFC1123Z, h.Get("Date"))
	if err != nil {
		date, _ = mh.Date()
	}
	subject, _ := mh.Subject()
	inReplyTo, _ := mh.MsgIDList("In-Reply-To")
	messageID, _ := mh.MessageID()
	return &goimap.Envelope{
		Date:      date,
		Subject:   subject,
		From:      addressList(mh, "From"),
		Sender:    addressList(mh, "Sender"),
		ReplyTo:   addressList(mh, "Reply-To"),
		To:        addressList(mh, "To"),
		Cc:        addressList(mh, "Cc"),
		Bcc:       addressList(mh, "Bcc"),
		InReplyTo: inReplyTo,
		MessageID: messageID,
	}
}

// addressList returns the addresses of a header field for an ENVELOPE;
// like the library, groups are flattened and addresses without "@"
// skipped.
func addressList(mh mail.Header, key string) []goimap.Address {
	if !mh.Has(key) {
		return nil
	}
	addrs, _ := mh.AddressList(key)
	var out []goimap.Address
	for _, a := range addrs {
		mailbox, host, ok := strings.Cut(a.Address, "@")
		if !ok {
			continue
		}
		out = append(out, goimap.Address{Name: a.Name, Mailbox: mailbox, Host: host})
	}
	return out
}

// lazyMessage reads a message body only when a search key needs it.
type lazyMessage struct {
	s       *session
	m       store.Message
	hdr     []byte // header cached in the index, or nil
	flat    []byte // see mayMatchHeader
	scratch []byte // memory for flat, handed from message to message
	body    []byte
	loaded  bool
}

func (l *lazyMessage) bytes() []byte {
	if !l.loaded {
		l.loaded = true
		f, err := l.s.srv.st.OpenBody(l.s.ctx, l.m)
		if err != nil {
			return nil
		}
		defer f.Close()
		l.body, _ = io.ReadAll(f)
	}
	return l.body
}

func (l *lazyMessage) header() mail.Header {
	if l.hdr != nil {
		return mail.Header{Header: gomessage.Header{Header: readHeader(bytes.NewReader(l.hdr))}}
	}
	return mail.Header{Header: gomessage.Header{Header: readHeader(bytes.NewReader(l.bytes()))}}
}

// needsHeader reports whether criteria have keys on header fields.
func needsHeader(c *goimap.SearchCriteria) bool {
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		return true
	}
	for i := range c.Not {
		if needsHeader(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsHeader(&c.Or[i][0]) || needsHeader(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// mayMatchHeader reports whether some field of the message's cached
// header could contain pattern (as matchFields compares: decoded, unfolded,
// case-insensitively). false is certain, true needs the full parse. It
// holds because, in a header without MIME encoded-words (RFC 2047), every
// field value is a substring of the header's lines trimmed and joined by
// one space, which is how values are unfolded; a header with "=?" is
// always parsed.
func (l *lazyMessage) mayMatchHeader(pattern string) bool {
	if l.hdr == nil || pattern == "" {
		return true
	}
	if l.flat == nil {
		if bytes.Contains(l.hdr, []byte("=?")) {
			l.flat = []byte{} // always parse
		} else {
			l.flat = flatten(l.scratch[:0], l.hdr)
			l.scratch = l.flat
		}
	}
	if len(l.flat) == 0 {
		return true
	}
	return bytes.Contains(l.flat, []byte(strings.ToLower(pattern)))
}

func (l *lazyMessage) entity() *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(l.bytes()))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

func (l *lazyMessage) close() { l.body, l.flat = nil, nil }

// flatten appends to dst the lines of hdr, trimmed of spaces and tabs,
// without the empty ones, joined by one space, in lower case.
func flatten(dst, hdr []byte) []byte {
	ascii := true
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = nil
		}
		// As go-message unfolds: one trailing CR off, then spaces and tabs.
		line = bytes.Trim(bytes.TrimSuffix(line, []byte("\r")), " \t")
		if len(line) == 0 {
			continue
		}
		if len(dst) > 0 {
			dst = append(dst, ' ')
		}
		for _, c := range line {
			if c >= 0x80 {
				ascii = false
			} else if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
	}
	if !ascii {
		return bytes.ToLower(dst)
	}
	return dst
}

// matchCriteria evaluates SEARCH keys (RFC 9051 section 6.4.4) on one
// message; seq is its sequence number in the client's view.
func matchCriteria(l *lazyMessage, seq uint32, c *goimap.SearchCriteria) bool {
	m := l.m
	for _, ss := range c.SeqNum {
		if seq == 0 || !ss.Contains(seq) {
			return false
		}
	}
	for _, us := range c.UID {
		if !us.Contains(goimap.UID(m.UID)) {
			return false
		}
	}
	if !matchDate(m.InternalDate, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if !m.HasFlag(string(f)) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if m.HasFlag(string(f)) {
			return false
		}
	}
	if c.Larger != 0 && m.Size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && m.Size >= c.Smaller {
		return false
	}
	if c.ModSeq != nil && m.ModSeq < c.ModSeq.ModSeq {
		return false
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		var h mail.Header
		parsed := false
		parse := func() {
			if !parsed {
				h, parsed = l.header(), true
			}
		}
		for _, hc := range c.Header {
			if !l.mayMatchHeader(hc.Value) {
				return false
			}
			parse()
			if !matchFields(h.FieldsByKey(hc.Key), hc.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			parse()
			t, err := h.Date()
			if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
				return false
			}
		}
	}
	for _, text := range c.Text {
		if !matchEntity(l.entity(), text, true) {
			return false
		}
	}
	for _, body := range c.Body {
		if !matchEntity(l.entity(), body, false) {
			return false
		}
	}
	for i := range c.Not {
		if matchCriteria(l, seq, &c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !matchCriteria(l, seq, &c.Or[i][0]) && !matchCriteria(l, seq, &c.Or[i][1]) {
			return false
		}
	}
	return true
}

// matchDate compares dates without time zones, as RFC 9051 requires.
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	if !before.IsZero() && !t.Before(before) {
		return false
	}
	return true
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, withHeader bool) bool {
	if pattern == "" {
		return true
	}
	if withHeader && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, withHeader) {
				return true
			}
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil {
		t = "text/plain"
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf, err := io.ReadAll(io.LimitReader(e.Body, 32<<20))
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(buf), bytes.ToLower([]byte(pattern)))
}
