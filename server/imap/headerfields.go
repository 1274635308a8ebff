package imap

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gotextproto "github.com/emersion/go-message/textproto"
)

// Header sections of FETCH (BODY[HEADER], BODY[HEADER.FIELDS (...)],
// BODY[HEADER.FIELDS.NOT (...)], RFC 9051 section 6.4.5), in time linear in
// the size of the header.
//
// imapserver.ExtractBodySection parses the header into a go-message
// textproto.Header and then deletes, one by one, the fields not asked
// for; each deletion shifts the list of fields, so a header of n fields
// costs n² (issue 17: 400 000 short lines, 130 s of CPU for
// BODY.PEEK[HEADER.FIELDS (SUBJECT)]). headerSection reads the lines the
// way the library's textproto.ReadHeader does and copies the fields that
// are kept as it meets them. Its answers are byte for byte the library's
// (FuzzHeaderSection compares them): the fields as sent, continuation
// lines included, each line ended by CRLF, then an empty line; nothing at
// all for a header that the library cannot parse.

// bodySection returns the body section bs of the message read from r,
// as imapserver.ExtractBodySection does.
func bodySection(r io.Reader, bs *goimap.FetchItemBodySection) []byte {
	if bs.Specifier != goimap.PartSpecifierHeader {
		return imapserver.ExtractBodySection(r, bs)
	}
	if len(bs.Part) > 0 {
		// The header of a part (a message/rfc822 one): the library finds
		// it and copies it whole (linear); the fields are picked here.
		whole := goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, Part: bs.Part}
		hdr := imapserver.ExtractBodySection(r, &whole)
		if len(hdr) == 0 {
			return nil
		}
		r = bytes.NewReader(hdr)
	}
	return headerSection(r, bs)
}

// headerSection returns the header section bs (HEADER, HEADER.FIELDS or
// HEADER.FIELDS.NOT, with its partial range) of the message read from r.
func headerSection(r io.Reader, bs *goimap.FetchItemBodySection) []byte {
	var keep map[string]bool // lower-case names; nil: every field
	if len(bs.HeaderFields) > 0 {
		keep = make(map[string]bool, len(bs.HeaderFields))
		for _, k := range bs.HeaderFields {
			keep[strings.ToLower(k)] = true
		}
	}
	var drop map[string]bool // canonical names, compared as the library's Header.Del
	if len(bs.HeaderFieldsNot) > 0 {
		drop = make(map[string]bool, len(bs.HeaderFieldsNot))
		for _, k := range bs.HeaderFieldsNot {
			drop[textproto.CanonicalMIMEHeaderKey(k)] = true
		}
	}
	br := bufio.NewReader(r)
	// The first line cannot start with a space.
	if b, err := br.Peek(1); err == nil && isWSP(b[0]) {
		return nil
	}
	var out, kv, lower []byte
	for {
		var err error
		kv, err = readField(br, kv[:0])
		if len(kv) == 0 {
			if err != nil {
				return nil
			}
			break
		}
		i := bytes.IndexByte(kv, ':')
		if i < 0 {
			return nil // not a header field: the library fails
		}
		key := bytes.TrimLeft(bytes.TrimRight(kv[:i], " \t"), " \t")
		for _, c := range key {
			if c < 33 || c > 126 {
				return nil
			}
		}
		if len(key) == 0 {
			continue // skipped, as the library does
		}
		ok := true
		if keep != nil {
			lower = append(lower[:0], key...)
			for j, c := range lower {
				if 'A' <= c && c <= 'Z' {
					lower[j] = c + 'a' - 'A'
				}
			}
			ok = keep[string(lower)]
		}
		if ok && drop != nil {
			ok = !drop[textproto.CanonicalMIMEHeaderKey(string(key))]
		}
		if ok {
			out = append(out, kv...)
		}
		if err != nil {
			return nil
		}
	}
	out = append(out, '\r', '\n')
	return partial(out, bs.Partial)
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// readField appends to dst one header field: its first line and the
// continuation lines that follow, each ended by CRLF whatever ended it in
// the message. An empty result is the end of the header (an empty line,
// or the end of the message).
func readField(br *bufio.Reader, dst []byte) ([]byte, error) {
	line, err := readLine(br, dst)
	if err == io.EOF && len(line) == len(dst) {
		return dst, nil
	}
	if err != nil {
		return line, err
	}
	if len(line) == len(dst) {
		return line, nil // the empty line
	}
	line = append(line, '\r', '\n')
	for {
		c, err := br.ReadByte()
		if err != nil {
			break
		}
		br.UnreadByte()
		if !isWSP(c) {
			break
		}
		if line, err = readLine(br, line); err != nil {
			break
		}
		line = append(line, '\r', '\n')
	}
	return line, nil
}

// readLine appends a line to dst without its "\n" or "\r\n", as
// bufio.Reader.ReadLine reads it.
func readLine(br *bufio.Reader, dst []byte) ([]byte, error) {
	for {
		l, more, err := br.ReadLine()
		dst = append(dst, l...)
		if err != nil || !more {
			return dst, err
		}
	}
}

// partial returns the range of b that a partial FETCH (<offset.size>)
// asks for, as the library does.
func partial(b []byte, p *goimap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset > int64(len(b)) {
		return nil
	}
	return b[p.Offset:min(p.Offset+p.Size, int64(len(b)))]
}

// readWholeHeader parses the header of a message in memory, however long
// (SEARCH HEADER and SUBJECT): textproto.ReadHeader is linear, and
// readHeader's bound (maxParsedHeader, for headers read from files) made
// SEARCH miss the fields of a longer header (issue 17).
func readWholeHeader(msg []byte) gotextproto.Header {
	h, err := gotextproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(msg), 64<<10))
	if err != nil {
		return gotextproto.Header{}
	}
	return h
}
