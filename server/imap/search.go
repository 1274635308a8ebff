package imap

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

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

// addressList returns the addresses of a header field for an ENVELOPE
// (see parseAddresses): groups as RFC 9051 writes them, addresses without
// "@" skipped, as the library does.
func addressList(mh mail.Header, key string) []goimap.Address {
	if !mh.Has(key) {
		return nil
	}
	return parseAddresses(mh.Get(key))
}

// lazyMessage reads a message body only when a search key needs it.
type lazyMessage struct {
	s      *session
	m      store.Message
	hdr    []byte     // header cached in the index, or nil
	pre    store.Body // the body read ahead (bodyBatch), or nil
	flat   []byte     // see mayMatchHeader
	sc     *scanState
	body   []byte
	loaded bool
	// text and kind: see plainText; kind is textUnparsed until then.
	text []byte
	kind textKind
	// kept: what the backend told of BODY and TEXT (keptTexts), or nil;
	// ki is the message's index in it.
	kept *keptTexts
	ki   int
}

// scanState is the memory that the messages of one SEARCH hand on from
// message to message.
type scanState struct {
	flat []byte // lowered header, see mayMatchHeader
	body []byte // message file, see bytes
	rd   bytes.Reader
	br   *bufio.Reader
	// The last pattern lowered by containsFold.
	pattern, lowered string
}

func (l *lazyMessage) state() *scanState {
	if l.sc == nil {
		l.sc = &scanState{}
	}
	return l.sc
}

// bytes returns the message as stored. It is valid until the next message
// of the search is read.
func (l *lazyMessage) bytes() []byte {
	if !l.loaded {
		l.loaded = true
		f := l.pre // closed by its bodyBatch
		if f == nil {
			var err error
			if f, err = l.s.srv.st.OpenBody(l.s.ctx, l.m); err != nil {
				return nil
			}
			defer f.Close()
		}
		l.body = readBody(f, l.m.Size, &l.state().body)
	}
	return l.body
}

// readBody reads a message of size bytes (its RFC822.SIZE, what FETCH
// BODY[] sends) into *buf, grown as needed and kept for the next message:
// one read(2) per message where io.ReadAll makes several, each message in
// a buffer of its own.
func readBody(r io.Reader, size int64, buf *[]byte) []byte {
	if size <= 0 {
		return nil
	}
	if int64(cap(*buf)) < size {
		*buf = make([]byte, size)
	}
	b := (*buf)[:size]
	n, _ := io.ReadFull(r, b)
	return b[:n]
}

func (l *lazyMessage) header() mail.Header {
	if l.hdr != nil {
		return mail.Header{Header: gomessage.Header{Header: readHeader(bytes.NewReader(l.hdr))}}
	}
	return mail.Header{Header: gomessage.Header{Header: readWholeHeader(l.bytes())}}
}

// readsBodies reports whether criteria have keys on message text (BODY,
// TEXT), which read every message they are tested on.
func readsBodies(c *goimap.SearchCriteria) bool {
	return anyCriteria(c, func(c *goimap.SearchCriteria) bool { return len(c.Body) > 0 || len(c.Text) > 0 })
}

// needsHeader reports whether criteria have keys on header fields.
func needsHeader(c *goimap.SearchCriteria) bool {
	return anyCriteria(c, func(c *goimap.SearchCriteria) bool {
		return len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero()
	})
}

// anyCriteria reports whether has holds for c or for one of the criteria
// under its NOT and OR keys.
func anyCriteria(c *goimap.SearchCriteria, has func(*goimap.SearchCriteria) bool) bool {
	if has(c) {
		return true
	}
	for i := range c.Not {
		if anyCriteria(&c.Not[i], has) {
			return true
		}
	}
	for i := range c.Or {
		if anyCriteria(&c.Or[i][0], has) || anyCriteria(&c.Or[i][1], has) {
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
			sc := l.state()
			l.flat = flatten(sc.flat[:0], l.hdr)
			sc.flat = l.flat
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

// textKind says what plainText found.
type textKind uint8

const (
	textUnparsed textKind = iota // plainText not called yet
	textMIME                     // the MIME structure must be parsed
	textPlain                    // one text part, stored as sent
	textNone                     // one part that is not text
)

// maxPlainHeader bounds the header of messages that plainText reads (well
// within go-message's 1 MiB limit, beyond which it reads no message).
const maxPlainHeader = 512 << 10

// maxSearchedText is how much of a part matchEntity searches.
const maxSearchedText = 32 << 20

// plainText tells, without go-message's MIME parsing, the common case of
// a message that is one text part stored as sent: no multipart type, a
// Content-Transfer-Encoding of 7bit, 8bit or binary (or none), and a
// charset (of text/*) that is US-ASCII or UTF-8 (or none). The text that
// matchEntity would search is then the body as stored. textNone: the
// message is one part of another type, which BODY and TEXT do not search.
// The header is read by go-message's own textproto.ReadHeader, the
// Content-Type parsed as go-message does, so both agree on the header;
// everything else (textMIME) goes through go-message.
func (l *lazyMessage) plainText() ([]byte, textKind) {
	if l.kind != textUnparsed {
		return l.text, l.kind
	}
	l.text, l.kind = nil, textMIME
	msg := l.bytes()
	end, contentType, encoding, ok := scanHeader(msg)
	if !ok {
		sc := l.state()
		sc.rd.Reset(msg)
		if sc.br == nil {
			sc.br = bufio.NewReader(&sc.rd)
		} else {
			sc.br.Reset(&sc.rd)
		}
		h, err := textproto.ReadHeader(sc.br)
		end = len(msg) - sc.rd.Len() - sc.br.Buffered()
		sc.rd.Reset(nil)
		if err != nil || end > maxPlainHeader {
			return nil, l.kind
		}
		contentType, encoding = h.Get("Content-Type"), h.Get("Content-Transfer-Encoding")
	}
	mediaType, params := "text/plain", map[string]string(nil)
	if contentType != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(contentType); err != nil {
			return nil, l.kind
		}
	}
	text := strings.HasPrefix(mediaType, "text/")
	switch {
	case strings.HasPrefix(mediaType, "multipart/"):
		return nil, l.kind
	case !text && !strings.HasPrefix(mediaType, "message/"):
		l.kind = textNone
		return nil, l.kind
	}
	switch strings.ToLower(encoding) {
	case "", "7bit", "8bit", "binary":
	default:
		return nil, l.kind
	}
	if cs, ok := params["charset"]; ok && text {
		if cs = strings.ToLower(cs); cs != "utf-8" && cs != "us-ascii" {
			return nil, l.kind
		}
	}
	if len(msg)-end > maxSearchedText {
		return nil, l.kind
	}
	l.text, l.kind = msg[end:], textPlain
	return l.text, l.kind
}

// scanHeader finds in msg, as textproto.ReadHeader would, the end of the
// header (past its empty line) and the values of Content-Type and
// Content-Transfer-Encoding ("" when absent), without making a Header.
// ok is false, and ReadHeader must be asked, for anything unusual: a CR
// but before LF, a line without a colon or with an empty or invalid key,
// one of the two fields twice, no empty line within maxPlainHeader bytes.
func scanHeader(msg []byte) (end int, contentType, encoding string, ok bool) {
	if len(msg) > 0 && (msg[0] == ' ' || msg[0] == '\t') {
		return 0, "", "", false
	}
	var ct, cte []byte // raw values: from the colon to the end of the field
	var cur *[]byte    // the field being read, if one of the two
	for i := 0; ; {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 || i+j > maxPlainHeader {
			return 0, "", "", false
		}
		line := bytes.TrimSuffix(msg[i:i+j], []byte("\r"))
		if bytes.IndexByte(line, '\r') >= 0 {
			return 0, "", "", false
		}
		next := i + j + 1
		switch {
		case len(line) == 0:
			if ct != nil {
				contentType = unfold(ct)
			}
			if cte != nil {
				encoding = unfold(cte)
			}
			return next, contentType, encoding, true
		case line[0] == ' ' || line[0] == '\t':
			if cur != nil {
				*cur = (*cur)[:len(*cur)+j+1] // through this line's LF
			}
		default:
			colon := bytes.IndexByte(line, ':')
			if colon < 0 {
				return 0, "", "", false
			}
			key := bytes.Trim(line[:colon], " \t")
			if len(key) == 0 {
				return 0, "", "", false
			}
			for _, c := range key {
				if c < 33 || c > 126 {
					return 0, "", "", false
				}
			}
			cur = nil
			switch {
			case bytes.EqualFold(key, []byte("Content-Type")):
				cur = &ct
			case bytes.EqualFold(key, []byte("Content-Transfer-Encoding")):
				cur = &cte
			}
			if cur != nil {
				if *cur != nil {
					return 0, "", "", false
				}
				*cur = msg[i+colon+1 : next]
			}
		}
		i = next
	}
}

// unfold returns a field's value as go-message's textproto reads it: its
// lines trimmed of CR, spaces and tabs, the empty ones left out, joined by
// one space.
func unfold(raw []byte) string {
	var b []byte
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.Trim(bytes.TrimSuffix(line, []byte("\r")), " \t")
		if len(line) == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, line...)
	}
	return string(b)
}

// matchBody is matchEntity(l.entity(), pattern, false), the BODY key,
// without go-message for the messages that plainText tells.
func (l *lazyMessage) matchBody(pattern string) bool {
	if pattern == "" {
		return true
	}
	if found, ok := l.keptMatch(pattern, false); ok {
		return found
	}
	switch text, kind := l.plainText(); kind {
	case textNone:
		return false
	case textPlain:
		if found, ok := containsFold(l.state(), text, pattern); ok {
			return found
		}
	}
	return matchEntity(l.entity(), pattern, false)
}

// foldsToASCII are the UTF-8 encodings of the only characters beyond
// ASCII whose lower case (unicode.ToLower) is ASCII: U+0130 and U+212A.
var foldsToASCII = [][]byte{[]byte("\u0130"), []byte("\u212a")}

// containsFold reports whether text contains pattern as matchEntity
// compares them: both lowered by bytes.ToLower. ok is false when that
// needs more than ASCII case folding: a pattern beyond ASCII, or a text
// with one of foldsToASCII. Otherwise the bytes beyond ASCII, which
// bytes.ToLower may change (or replace, when not UTF-8), can only match
// bytes beyond ASCII: none are in the pattern.
func containsFold(sc *scanState, text []byte, pattern string) (found, ok bool) {
	if sc.pattern != pattern || sc.lowered == "" {
		for i := 0; i < len(pattern); i++ {
			if pattern[i] >= utf8.RuneSelf {
				return false, false
			}
		}
		sc.pattern, sc.lowered = pattern, strings.ToLower(pattern)
	}
	for _, f := range foldsToASCII {
		if bytes.Contains(text, f) {
			return false, false
		}
	}
	return indexFoldASCII(text, sc.lowered) >= 0, true
}

// indexFoldASCII returns the index of the first instance of p in s, ASCII
// letters in any case, or -1. p is in lower case and not empty. The search
// skips with IndexByte to a byte of p that is not a letter (the same in
// both cases), or else to either case of its first letter.
func indexFoldASCII(s []byte, p string) int {
	k := -1
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 'a' || c > 'z' {
			k = i
			break
		}
	}
	if k >= 0 {
		for i := k; i < len(s); i++ {
			j := bytes.IndexByte(s[i:], p[k])
			if j < 0 {
				return -1
			}
			i += j
			start := i - k
			if start+len(p) > len(s) {
				return -1
			}
			if equalFoldASCII(s[start:start+len(p)], p) {
				return start
			}
		}
		return -1
	}
	lower, upper := p[0], p[0]-'a'+'A'
	next := func(c byte, from int) int {
		if j := bytes.IndexByte(s[from:], c); j >= 0 {
			return from + j
		}
		return -1
	}
	nl, nu := next(lower, 0), next(upper, 0)
	for nl >= 0 || nu >= 0 {
		var i int
		if nu < 0 || (nl >= 0 && nl < nu) {
			i, nl = nl, next(lower, nl+1)
		} else {
			i, nu = nu, next(upper, nu+1)
		}
		if i+len(p) > len(s) {
			return -1
		}
		if equalFoldASCII(s[i:i+len(p)], p) {
			return i
		}
	}
	return -1
}

// equalFoldASCII reports whether a equals p, which is in lower case, with
// ASCII letters of a in any case.
func equalFoldASCII(a []byte, p string) bool {
	for i := 0; i < len(p); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

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
			addr := isAddressField(hc.Key)
			if !l.mayMatchHeader(hc.Value) && !(addr && l.mayHaveCFWS()) {
				return false
			}
			parse()
			if !matchFields(h.FieldsByKey(hc.Key), hc.Value) && !(addr && matchAddresses(h.FieldsByKey(hc.Key), hc.Value)) {
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
		if found, ok := l.keptMatch(text, true); ok {
			if !found {
				return false
			}
			continue
		}
		if !matchEntity(l.entity(), text, true) {
			return false
		}
	}
	for _, body := range c.Body {
		if !l.matchBody(body) {
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

// isAddressField reports whether key names a header field of addresses.
func isAddressField(key string) bool {
	switch strings.ToLower(key) {
	case "from", "to", "cc", "bcc", "sender", "reply-to":
		return true
	}
	return false
}

// mayHaveCFWS reports whether the cached header may hold an address whose
// written form differs from its parsed one (a comment, blanks around
// "@"): then matchAddresses must look, even when mayMatchHeader says
// the text cannot match.
func (l *lazyMessage) mayHaveCFWS() bool {
	return l.hdr == nil || bytes.IndexByte(l.hdr, '(') >= 0 || bytes.Contains(l.hdr, []byte(" @")) ||
		bytes.Contains(l.hdr, []byte("@ ")) || bytes.Contains(l.hdr, []byte("@\t")) || bytes.Contains(l.hdr, []byte("@\r"))
}

// matchAddresses reports whether one of the addresses of fields, written
// as `name <mailbox@host>` without comments (RFC 5322 CFWS), contains
// pattern: SEARCH FROM "user@example.org" finds
// `From: user (comment)@ (comment) example.org`, as in Dovecot.
func matchAddresses(fields gomessage.HeaderFields, pattern string) bool {
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		for _, a := range parseAddresses(fields.Value()) {
			s := a.Mailbox + "@" + a.Host
			if a.Name != "" {
				s = a.Name + " <" + s + ">"
			}
			if strings.Contains(strings.ToLower(s), pattern) {
				return true
			}
		}
	}
	return false
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

// matchEntity reports whether one of the texts that walkText finds in e
// contains pattern, both lowered (bytes.ToLower, strings.ToLower: the
// same mapping).
func matchEntity(e *gomessage.Entity, pattern string, withHeader bool) bool {
	if pattern == "" {
		return true
	}
	lowered := bytes.ToLower([]byte(pattern))
	return walkText(e, withHeader, func(field string, body []byte) bool {
		if body == nil {
			return strings.Contains(strings.ToLower(field), string(lowered))
		}
		return bytes.Contains(bytes.ToLower(body), lowered)
	})
}

// Bodies read in batches (store.BodyBatcher) by a SEARCH that reads
// message text: at most batchBodies messages, batchBodyBytes in all, of
// messages of at most batchBodyMax bytes each; larger ones are opened one
// by one, as on a backend without batches.
const (
	batchBodies    = 256
	batchBodyBytes = 8 << 20
	batchBodyMax   = 1 << 20
)

// bodyBatch holds the bodies of the messages of a search read ahead by a
// store.BodyBatcher.
type bodyBatch struct {
	bb     store.BodyBatcher
	kept   *keptTexts // messages it knows are not read
	base   int        // bodies[i-base] is the body of msgs[i], if any
	bodies []store.Body
	msgs   []store.Message // of one batch, kept for the next
	idx    []int
}

// body returns the body read ahead for msgs[i], reading the batch that
// starts at i when i is past the current one; nil: none (OpenBody). The
// body stays open until the next batch is read or close is called.
// gone[i] marks messages to skip, as in eachMatch, and so do those whose
// kept text answers the search (b.kept).
func (b *bodyBatch) body(ctx context.Context, msgs []store.Message, gone []bool, i int) store.Body {
	if b.bb == nil || b.kept.known(i) {
		return nil
	}
	if b.bodies == nil || i-b.base >= len(b.bodies) {
		b.close()
		b.base = i
		b.msgs, b.idx = b.msgs[:0], b.idx[:0]
		var total int64
		j := i
		for ; j < len(msgs) && len(b.msgs) < batchBodies; j++ {
			m := &msgs[j]
			if (gone != nil && gone[j]) || m.Size > batchBodyMax || b.kept.known(j) {
				continue
			}
			if total+m.Size > batchBodyBytes && len(b.msgs) > 0 {
				break
			}
			total += m.Size
			b.msgs = append(b.msgs, *m)
			b.idx = append(b.idx, j-i)
		}
		b.bodies = make([]store.Body, j-i)
		if len(b.msgs) > 0 {
			got, err := b.bb.OpenBodies(ctx, b.msgs)
			if err == nil {
				for k, body := range got {
					b.bodies[b.idx[k]] = body
				}
			}
			// On an error each message is opened by itself, as without
			// batches; a failure there makes it not match.
		}
	}
	return b.bodies[i-b.base]
}

// close closes the bodies of the batch.
func (b *bodyBatch) close() {
	for i, body := range b.bodies {
		if body != nil {
			body.Close()
			b.bodies[i] = nil
		}
	}
}
