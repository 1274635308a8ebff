package imap

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"strconv"
	"strings"

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

// noteLiteral8 records whether the command line the library reads ends
// in a literal8 ("~{n}"): APPEND then gets binary content (RFC 3516).
func (c *conn) noteLiteral8(line []byte) {
	if c.literal == 0 {
		return
	}
	line = bytes.TrimRight(line, "\r\n")
	i := bytes.LastIndexByte(line, '{')
	c.literal8.Store(i > 0 && line[i-1] == '~')
}

// maxBinaryAppend bounds the messages APPENDed as a literal8 that are
// read in memory to be converted (binaryToBase64); larger ones are
// stored as they come (BODY sections then send each NUL as 0x80).
const maxBinaryAppend = 16 << 20

// binaryToBase64 converts the parts of a message whose content holds NUL
// bytes (Content-Transfer-Encoding binary, RFC 3516) to base64, as
// Dovecot does on APPEND: FETCH BODY[] then carries no NUL, BINARY[]
// decodes them back. Everything else stays byte for byte; ok is false
// when nothing was converted. MIME is walked here rather than through
// go-message, whose writer re-encodes every part and header.
func binaryToBase64(msg []byte) (out []byte, ok bool) {
	if bytes.IndexByte(msg, 0) < 0 {
		return nil, false
	}
	out, ok = convertEntity(nil, msg, 0)
	return out, ok
}

// convertEntity appends to dst the entity e (header and body), with its
// parts holding NUL in base64; ok reports whether any was converted.
func convertEntity(dst, e []byte, depth int) ([]byte, bool) {
	end, contentType, _, found := scanHeader(e)
	if !found || depth > 20 {
		return append(dst, e...), false
	}
	header, body := e[:end], e[end:]
	mediaType, params, err := mime.ParseMediaType(contentType)
	if contentType == "" {
		mediaType, err = "text/plain", nil
	}
	if err != nil {
		return append(dst, e...), false
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		boundary := params["boundary"]
		if boundary == "" {
			return append(dst, e...), false
		}
		dst = append(dst, header...)
		return convertParts(dst, body, boundary, depth)
	}
	if bytes.IndexByte(body, 0) < 0 {
		return append(dst, e...), false
	}
	// The header without its Content-Transfer-Encoding, then base64.
	dst = appendWithoutField(dst, header[:len(header)-len(headerEnd(header))], "Content-Transfer-Encoding")
	dst = append(dst, "Content-Transfer-Encoding: base64\r\n"...)
	dst = append(dst, headerEnd(header)...)
	enc := base64.StdEncoding.EncodeToString(body)
	for len(enc) > 76 {
		dst = append(dst, enc[:76]...)
		dst = append(dst, "\r\n"...)
		enc = enc[76:]
	}
	return append(dst, enc...), true
}

// headerEnd is the empty line that ends header ("\r\n" or "\n").
func headerEnd(header []byte) []byte {
	if bytes.HasSuffix(header, []byte("\r\n")) {
		return header[len(header)-2:]
	}
	return header[len(header)-1:]
}

// appendWithoutField appends the fields of header but key (and its
// continuation lines).
func appendWithoutField(dst, header []byte, key string) []byte {
	skip := false
	for len(header) > 0 {
		line := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			line, header = header[:i+1], header[i+1:]
		} else {
			header = nil
		}
		if line[0] != ' ' && line[0] != '\t' {
			colon := bytes.IndexByte(line, ':')
			skip = colon > 0 && bytes.EqualFold(bytes.TrimSpace(line[:colon]), []byte(key))
		}
		if !skip {
			dst = append(dst, line...)
		}
	}
	return dst
}

// convertParts appends a multipart body, each of its parts through
// convertEntity, the delimiters and preamble and epilogue as they are.
func convertParts(dst, body []byte, boundary string, depth int) ([]byte, bool) {
	delim := []byte("--" + boundary)
	converted := false
	// Parts start after a delimiter line and end at the CRLF before the
	// next one.
	pos := 0
	inPart := false
	partStart := 0
	for pos <= len(body) {
		lineEnd := bytes.IndexByte(body[pos:], '\n')
		var line []byte
		next := len(body) + 1
		if lineEnd >= 0 {
			line = body[pos : pos+lineEnd+1]
			next = pos + lineEnd + 1
		} else {
			line = body[pos:]
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if bytes.HasPrefix(trimmed, delim) {
			rest := bytes.TrimRight(trimmed[len(delim):], " \t")
			if len(rest) == 0 || bytes.Equal(rest, []byte("--")) {
				if inPart {
					// The part ends before the line break preceding the delimiter.
					partEnd := pos
					if partEnd > partStart && body[partEnd-1] == '\n' {
						partEnd--
						if partEnd > partStart && body[partEnd-1] == '\r' {
							partEnd--
						}
					}
					var ok bool
					dst, ok = convertEntity(dst, body[partStart:partEnd], depth+1)
					converted = converted || ok
					dst = append(dst, body[partEnd:pos]...)
				} else {
					dst = append(dst, body[partStart:pos]...)
				}
				dst = append(dst, line...)
				if len(rest) > 0 { // the closing delimiter: the epilogue follows
					if next <= len(body) {
						dst = append(dst, body[next:]...)
					}
					return dst, converted
				}
				inPart, partStart = true, min(next, len(body))
			}
		}
		if lineEnd < 0 {
			break
		}
		pos = next
	}
	// No closing delimiter: the rest as it is.
	return append(dst, body[partStart:]...), converted
}
