package mailfmt

import (
	"bytes"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Message is one message read from or written to a Maildir or an mbox.
type Message struct {
	// Flags are IMAP system flags (\Seen, ...) and keywords.
	Flags []string
	// Date is the internal date (zero when the source has none).
	Date time.Time
	// Body is the message with CRLF line ends (as IMAP and the store
	// keep it).
	Body []byte
	// Key identifies the message in its source: its ordinal (from 1) in
	// an mbox file, its unique name in a Maildir.
	Key string
	// Labels are the X-Gmail-Labels of a Google Takeout mbox message.
	Labels []string
}

// IMAP system flags.
const (
	FlagSeen      = `\Seen`
	FlagAnswered  = `\Answered`
	FlagFlagged   = `\Flagged`
	FlagDeleted   = `\Deleted`
	FlagDraft     = `\Draft`
	FlagForwarded = `$Forwarded`
)

// HasFlag reports whether flags holds flag (case-insensitively).
func HasFlag(flags []string, flag string) bool {
	return slices.ContainsFunc(flags, func(f string) bool { return strings.EqualFold(f, flag) })
}

// keywords returns the flags that are not system flags (nor $Forwarded,
// which Maildir keeps as a letter).
func keywords(flags []string) []string {
	var out []string
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) || strings.EqualFold(f, FlagForwarded) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// ToLF turns CRLF line ends into LF (the convention of mbox and Maildir
// files); a lone CR stays.
func ToLF(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

// ToCRLF turns bare LF line ends into CRLF; CRLF stays.
func ToCRLF(b []byte) []byte {
	n := bytes.Count(b, []byte("\n")) - bytes.Count(b, []byte("\r\n"))
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// headerEnd returns the length of the header section of an LF message,
// its blank line included (len(b) when there is none).
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\n")) {
		return 1
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return len(b)
}

// splitFields splits the header section h (LF line ends, blank line
// excluded) into fields, each with its continuation lines and final LF.
func splitFields(h []byte) [][]byte {
	var fields [][]byte
	for len(h) > 0 {
		end := bytes.IndexByte(h, '\n') + 1
		if end == 0 {
			end = len(h)
		}
		for end < len(h) && (h[end] == ' ' || h[end] == '\t') {
			next := bytes.IndexByte(h[end:], '\n') + 1
			if next == 0 {
				end = len(h)
			} else {
				end += next
			}
		}
		fields = append(fields, h[:end])
		h = h[end:]
	}
	return fields
}

// fieldName returns the lower-case name of a header field and its value
// (unfolded, trimmed).
func fieldName(f []byte) (name, value string) {
	i := bytes.IndexByte(f, ':')
	if i < 0 {
		return "", ""
	}
	v := strings.Join(strings.Fields(string(f[i+1:])), " ")
	return strings.ToLower(strings.TrimSpace(string(f[:i]))), v
}

// Modified UTF-7 (RFC 3501 section 5.1.3), for Maildir++ folder names as
// Dovecot writes them.

const mutf7Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

func encodeMUTF7(s string) string {
	var b strings.Builder
	var pending []rune
	flush := func() {
		if len(pending) == 0 {
			return
		}
		units := utf16.Encode(pending)
		buf := make([]byte, 0, 2*len(units))
		for _, u := range units {
			buf = append(buf, byte(u>>8), byte(u))
		}
		b.WriteByte('&')
		var acc uint32
		bits := 0
		for _, c := range buf {
			acc = acc<<8 | uint32(c)
			bits += 8
			for bits >= 6 {
				bits -= 6
				b.WriteByte(mutf7Alphabet[(acc>>uint(bits))&0x3f])
			}
		}
		if bits > 0 {
			b.WriteByte(mutf7Alphabet[(acc<<uint(6-bits))&0x3f])
		}
		b.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		pending = append(pending, r)
	}
	flush()
	return b.String()
}

func decodeMUTF7(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '&' {
			if c < 0x20 || c > 0x7e {
				return "", false
			}
			b.WriteByte(c)
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return "", false
		}
		enc := s[i+1 : i+1+j]
		i += j + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		var acc uint32
		bits := 0
		var buf []byte
		for k := 0; k < len(enc); k++ {
			v := strings.IndexByte(mutf7Alphabet, enc[k])
			if v < 0 {
				return "", false
			}
			acc = acc<<6 | uint32(v)
			bits += 6
			if bits >= 8 {
				bits -= 8
				buf = append(buf, byte(acc>>uint(bits)))
			}
		}
		if len(buf)%2 != 0 {
			return "", false
		}
		units := make([]uint16, len(buf)/2)
		for k := range units {
			units[k] = uint16(buf[2*k])<<8 | uint16(buf[2*k+1])
		}
		for _, r := range utf16.Decode(units) {
			if r == utf8.RuneError {
				return "", false
			}
			b.WriteRune(r)
		}
	}
	return b.String(), true
}
