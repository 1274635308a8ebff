package imap

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
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
	return imapserver.ExtractEnvelope(readHeader(r))
}

// lazyMessage reads a message body only when a search key needs it.
type lazyMessage struct {
	s      *session
	m      store.Message
	body   []byte
	loaded bool
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
	return mail.Header{Header: gomessage.Header{Header: readHeader(bytes.NewReader(l.bytes()))}}
}

func (l *lazyMessage) entity() *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(l.bytes()))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

func (l *lazyMessage) close() { l.body = nil }

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
		h := l.header()
		for _, hc := range c.Header {
			if !matchFields(h.FieldsByKey(hc.Key), hc.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
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
