package imap

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"

	"github.com/mailctl/mailctl/server/store"
)

// walkText calls visit, in order, with each text of e that SEARCH TEXT
// (withHeader) or BODY searches, until visit returns true, and reports
// whether it did: with withHeader, the value of each header field,
// decoded (RFC 2047) when it can be, as field (body nil); the parts of a
// multipart entity, in order, to the first that cannot be read; and the
// body of an entity of type text/* or message/* (or without a valid
// Content-Type), decoded from its transfer encoding and charset as
// go-message reads it, its first maxSearchedText bytes, as body (not
// nil). A body that fails to decode is skipped.
//
// matchEntity (on the node) and searchText (the texts a TextSearcher
// backend keeps) are both made of it: a search that the backend answers
// finds what the node would.
func walkText(e *gomessage.Entity, withHeader bool, visit func(field string, body []byte) bool) bool {
	if withHeader {
		fields := e.Header.Fields()
		for fields.Next() {
			v, err := fields.Text()
			if err != nil {
				v = fields.Value()
			}
			if visit(v, nil) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if walkText(part, withHeader, visit) {
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
	buf, err := io.ReadAll(io.LimitReader(e.Body, maxSearchedText))
	if err != nil {
		return false
	}
	if buf == nil {
		buf = []byte{}
	}
	return visit("", buf)
}

// textSep separates the texts of a message in the strings searchText
// makes. One byte, which a needle sent to the backend never contains
// (sendableNeedle), so that a needle found in the joined string is found
// in one text: a match cannot straddle two. NUL, which PostgreSQL's text
// cannot hold, is written as textSep too: no needle can match across it
// either.
const textSep = '\x01'

// searchText makes the texts that a store.TextSearcher keeps of msg (a
// whole message): head, the values of its header fields (those of its
// parts included), and body, the bodies of its text parts, each text
// lowered as matchEntity lowers it, joined by textSep. A needle lowered
// as matchEntity lowers a pattern, without textSep or NUL, is in body
// exactly when matchEntity(entity, pattern, false) holds, and in head or
// body when matchEntity(entity, pattern, true) holds.
func searchText(msg []byte) (head, body string) {
	e, _ := gomessage.Read(bytes.NewReader(msg))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	var h, b []byte
	add := func(dst, text []byte) []byte {
		if len(dst) > 0 {
			dst = append(dst, textSep)
		}
		start := len(dst)
		dst = append(dst, bytes.ToLower(text)...)
		for i := bytes.IndexByte(dst[start:], 0); i >= 0; i = bytes.IndexByte(dst[start:], 0) {
			dst[start+i] = textSep
		}
		return dst
	}
	walkText(e, true, func(field string, text []byte) bool {
		if text == nil {
			h = add(h, []byte(field))
		} else {
			b = add(b, text)
		}
		return false
	})
	return string(h), string(b)
}

// SearchText is the function that the IMAP server gives a
// store.TextSearcher backend (SetSearchText), for tools that write
// messages while no server runs (`mailctl store copy`).
func SearchText(msg []byte) (head, body string) { return searchText(msg) }

// keptTexts is what a store.TextSearcher told of the messages of one
// SEARCH: the needles of its BODY and TEXT keys, matched where the texts
// are kept, so that only the messages without a kept text are read.
type keptTexts struct {
	bit     map[textKey]int    // the bit of a key's pattern in Found
	results []store.TextResult // results[i] of msgs[i]
}

// textKey is a BODY (header false) or TEXT key's pattern, as the client
// sent it.
type textKey struct {
	pattern string
	header  bool
}

// known reports whether the kept text of msgs[i] answers every BODY and
// TEXT key: its body need not be read for them.
func (k *keptTexts) known(i int) bool {
	return k != nil && k.results[i].Known
}

// textNeedles returns the needles of the BODY and TEXT keys of c, and
// the bit of each key; ok is false when the backend cannot answer them
// all: a pattern that holds NUL or textSep once lowered, or more than
// store.MaxTextNeedles of them. Empty patterns, which match every
// message without reading it, are left out.
func textNeedles(c *goimap.SearchCriteria) (needles []store.TextNeedle, bit map[textKey]int, ok bool) {
	bit = map[textKey]int{}
	ok = true
	var walk func(c *goimap.SearchCriteria)
	add := func(pattern string, header bool) {
		k := textKey{pattern, header}
		if _, seen := bit[k]; seen || pattern == "" || !ok {
			return
		}
		lowered := bytes.ToLower([]byte(pattern))
		if bytes.IndexByte(lowered, 0) >= 0 || bytes.IndexByte(lowered, textSep) >= 0 || len(needles) == store.MaxTextNeedles {
			ok = false
			return
		}
		bit[k] = len(needles)
		needles = append(needles, store.TextNeedle{Text: string(lowered), Header: header})
	}
	walk = func(c *goimap.SearchCriteria) {
		for _, p := range c.Body {
			add(p, false)
		}
		for _, p := range c.Text {
			add(p, true)
		}
		for i := range c.Not {
			walk(&c.Not[i])
		}
		for i := range c.Or {
			walk(&c.Or[i][0])
			walk(&c.Or[i][1])
		}
	}
	walk(c)
	return needles, bit, ok
}

// keptTexts asks a store.TextSearcher backend about the BODY and TEXT
// keys of criteria for msgs (the snapshot the search runs on); nil: the
// backend is no TextSearcher, or cannot answer these keys, and every
// message is read.
func (s *session) keptTexts(criteria *goimap.SearchCriteria, msgs []store.Message) (*keptTexts, error) {
	ts, ok := s.srv.st.(store.TextSearcher)
	if !ok || len(msgs) == 0 {
		return nil, nil
	}
	needles, bit, ok := textNeedles(criteria)
	if !ok {
		return nil, nil
	}
	if len(needles) == 0 { // only empty patterns: every message matches
		return &keptTexts{results: slices.Repeat([]store.TextResult{{Known: true}}, len(msgs))}, nil
	}
	uids := make([]uint32, len(msgs))
	for i := range msgs {
		uids[i] = msgs[i].UID
	}
	res, err := ts.SearchText(s.ctx, s.user, s.view.sm.key.id, uids, needles)
	if err != nil {
		return nil, err
	}
	return &keptTexts{bit: bit, results: res}, nil
}

// keepTextBytes bounds the texts that a search collects (keepRead)
// before it hands them to the backend.
const keepTextBytes = 8 << 20

// keepRead collects, for the backend to keep, the texts of messages that
// had none and that the search has read whole (at most batchBodyMax
// bytes), and hands them over keepTextBytes at a time and at the end
// (flush): a database whose bodies were written before it kept texts
// gets them from its first searches, and its next searches need not read
// those bodies.
type keepRead struct {
	ts     store.TextSearcher
	logger *slog.Logger
	msgs   []store.Message
	texts  []store.KeptText
	size   int
}

// add takes the text of l, when it had no kept text and was read whole.
func (k *keepRead) add(ctx context.Context, l *lazyMessage) {
	if k.ts == nil || l.kept == nil || l.kept.known(l.ki) || !l.loaded ||
		l.m.Size > batchBodyMax || int64(len(l.body)) != l.m.Size {
		return
	}
	head, body := searchText(l.body)
	k.msgs = append(k.msgs, l.m)
	k.texts = append(k.texts, store.KeptText{Head: head, Body: body})
	if k.size += len(head) + len(body); k.size >= keepTextBytes {
		k.flush(ctx)
	}
}

// flush hands the collected texts to the backend. A failure is only
// logged: the bodies are read again by the next search.
func (k *keepRead) flush(ctx context.Context) {
	if len(k.msgs) == 0 {
		return
	}
	if err := k.ts.KeepText(ctx, k.msgs, k.texts); err != nil && ctx.Err() == nil {
		k.logger.WarnContext(ctx, "imap: keep search texts", "err", err)
	}
	k.msgs, k.texts, k.size = k.msgs[:0], k.texts[:0], 0
}

// keptMatch reports whether the message's kept text contains pattern (a
// BODY key's, or with header a TEXT key's); ok is false when it has none
// and the message must be read. An empty pattern matches every message,
// read or not.
func (l *lazyMessage) keptMatch(pattern string, header bool) (found, ok bool) {
	if pattern == "" {
		return true, true
	}
	if !l.kept.known(l.ki) {
		return false, false
	}
	k, ok := l.kept.bit[textKey{pattern, header}]
	if !ok {
		return false, false
	}
	return l.kept.results[l.ki].Found&(1<<k) != 0, true
}
