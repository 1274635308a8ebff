package sieve

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
)

// Message is a message as a script sees it: its header fields, unfolded,
// and its raw octets for the body test and the size test.
type Message struct {
	raw    []byte
	fields []field
	body   []byte
}

type field struct {
	name  string // lower case
	value string // unfolded, trimmed, not decoded
}

// ParseMessage splits raw (an RFC 5322 message) into header and body. It is
// tolerant: a line that is no header field ends the header, as a mail
// reader would show it.
func ParseMessage(raw []byte) *Message {
	m := &Message{raw: raw}
	rest := raw
	for len(rest) > 0 {
		line := rest
		n := len(rest)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, n = rest[:i], i+1
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			rest = rest[n:]
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(m.fields) > 0 {
			f := &m.fields[len(m.fields)-1]
			f.value += " " + strings.TrimSpace(string(line))
			rest = rest[n:]
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.ContainsAny(line[:colon], " \t") {
			break
		}
		m.fields = append(m.fields, field{
			name:  strings.ToLower(string(line[:colon])),
			value: strings.TrimSpace(string(line[colon+1:])),
		})
		rest = rest[n:]
	}
	m.body = rest
	return m
}

// Size is the size of the message in octets.
func (m *Message) Size() int { return len(m.raw) }

// Header returns the undecoded values of the fields named name.
func (m *Message) Header(name string) []string { return m.rawValues(name) }

func (m *Message) rawValues(name string) []string {
	name = strings.ToLower(name)
	var out []string
	for _, f := range m.fields {
		if f.name == name {
			out = append(out, f.value)
		}
	}
	return out
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// values returns the fields named name with RFC 2047 encoded words decoded
// (RFC 5228 5.7).
func (m *Message) values(name string) []string {
	vals := m.rawValues(name)
	for i, v := range vals {
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			vals[i] = d
		}
	}
	return vals
}

// addressesIn returns the addresses of an address header field; a value that
// does not parse counts as one address, the whole value.
func addressesIn(v string) []string {
	list, err := mail.ParseAddressList(v)
	if err != nil {
		return []string{v}
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

func parseMailbox(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", err
	}
	if !strings.Contains(a.Address, "@") {
		return "", errors.New("no domain")
	}
	return a.Address, nil
}

// bodyTexts returns what a body test compares (RFC 5173): the raw body,
// or the decoded text parts, or the decoded parts of the given types.
func (m *Message) bodyTexts(transform string, types []string, limit int) ([]string, error) {
	if transform == "raw" {
		b := m.body
		if len(b) > limit {
			b = b[:limit]
		}
		return []string{string(b)}, nil
	}
	if transform == "text" {
		types = []string{"text"}
	}
	e, err := message.Read(bytes.NewReader(m.raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, err
	}
	var out []string
	budget := limit
	werr := e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil || budget <= 0 {
			return nil
		}
		mt, _, _ := part.Header.ContentType()
		if mt == "" {
			mt = "text/plain"
		}
		if strings.HasPrefix(mt, "multipart/") || !typeWanted(mt, types) {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(part.Body, int64(budget)))
		budget -= len(b)
		out = append(out, string(b))
		return nil
	})
	return out, werr
}

func typeWanted(mt string, types []string) bool {
	for _, t := range types {
		if t == "" || t == mt || !strings.Contains(t, "/") && strings.HasPrefix(mt, t+"/") {
			return true
		}
	}
	return false
}
