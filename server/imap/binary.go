package imap

import (
	"bytes"
	"io"
	"strconv"

	goimap "github.com/emersion/go-imap/v2"
)

// BINARY (RFC 3516, part of IMAP4rev2) beside the library:
//
//   - The library's FetchResponseWriter.WriteBinarySection writes
//     "BINARY[part] ~{n}" without the origin of a partial fetch, which
//     RFC 9051 section 7.5.2 requires ("BINARY[5]<0> ~{7}"). fetchOne
//     queues the origin of each BINARY section it writes (noteBinary), and
//     conn.Write puts it into the line the library writes
//     (patchBinaryOrigin).
//   - A message APPENDed as a literal8 may hold NUL bytes, which a normal
//     literal must not (RFC 9051 section 4.3): BODY[] and the other BODY
//     sections are sent with each NUL replaced by 0x80, as Dovecot does;
//     BINARY[] sends the bytes as stored, in a literal8.

// noteBinary queues the origin of a BINARY section about to be written
// (-1: not partial).
func (c *conn) noteBinary(bs *goimap.FetchItemBinarySection) {
	origin := int64(-1)
	if bs.Partial != nil {
		origin = bs.Partial.Offset
	}
	c.wmu.Lock()
	c.binOrigins = append(c.binOrigins, origin)
	c.wmu.Unlock()
}

var binaryLiteral = []byte(" ~{")

// patchBinaryOrigin inserts the queued origin into the line out[start:]
// when it is a BINARY section's start ("... BINARY[1.2] ~{7}\r\n").
// wmu is held.
func (c *conn) patchBinaryOrigin(out []byte, start int) []byte {
	if len(c.binOrigins) == 0 {
		return out
	}
	line := out[start:]
	i := bytes.LastIndex(line, binaryLiteral)
	if i < 0 || i == 0 || line[i-1] != ']' || literalSize(line) == 0 {
		return out
	}
	j := bytes.LastIndex(line[:i], []byte("BINARY["))
	if j < 0 || bytes.ContainsAny(line[j+len("BINARY["):i-1], " \"") {
		return out
	}
	origin := c.binOrigins[0]
	c.binOrigins = c.binOrigins[1:]
	if origin < 0 {
		return out
	}
	at := start + i
	tail := append([]byte(nil), out[at:]...)
	out = append(out[:at], '<')
	out = strconv.AppendInt(out, origin, 10)
	out = append(out, '>')
	return append(out, tail...)
}

// noNUL copies to w with each NUL byte replaced by 0x80.
type noNUL struct{ w io.Writer }

func (n noNUL) Write(p []byte) (int, error) {
	if bytes.IndexByte(p, 0) < 0 {
		return n.w.Write(p)
	}
	q := append([]byte(nil), p...)
	replaceNUL(q)
	return n.w.Write(q)
}

// replaceNUL replaces in place each NUL byte of b by 0x80.
func replaceNUL(b []byte) {
	for i := bytes.IndexByte(b, 0); i >= 0; {
		b[i] = 0x80
		j := bytes.IndexByte(b[i+1:], 0)
		if j < 0 {
			return
		}
		i += 1 + j
	}
}
