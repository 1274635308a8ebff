package imap

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The library decodes the reference and patterns of LIST and LSUB as
// modified UTF-7 (RFC 3501 section 5.1.3) and answers a string that does
// not decode with NO [SERVERBUG]. No mailbox name can match such a
// pattern, so, as Dovecot does, conn answers OK with no mailbox. The
// library's decoder is internal, hence validMUTF7.

// answerBadListPattern answers a LIST or LSUB (args: its arguments) whose
// reference or a pattern is not valid modified UTF-7, and reports whether
// it did.
func (c *conn) answerBadListPattern(tag, cmd string, args []byte) (bool, error) {
	for _, tok := range listTokens(string(args)) {
		if !validMUTF7(tok) {
			return true, c.writeRaw(tag + " OK " + cmd + " completed (no mailbox name matches)\r\n")
		}
	}
	return false, nil
}

// listTokens returns the strings (quoted or atoms) of a LIST command's
// arguments, unquoted; parentheses are skipped.
func listTokens(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '(' || c == ')':
			i++
		case c == '"':
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
				i++
			}
			i++
			toks = append(toks, b.String())
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '(' && s[j] != ')' {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks
}

// mutf7 is the base64 alphabet of modified UTF-7: "," for "/", no padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// validMUTF7 reports whether s is modified UTF-7 as RFC 3501 section 5.1.3
// defines it (raw UTF-8 beyond ASCII accepted, as the library does): "&-"
// or "&" base64 of UTF-16 "-" shifts, encoding no printable ASCII, no two
// shifts in a row, nothing left in the shifted bits.
func validMUTF7(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	shifted := false // the last thing was a base64 run
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 && (c < 0x20 || c > 0x7e) {
			return false
		}
		if c != '&' {
			shifted = false
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return false
		}
		run := s[i+1 : i+1+j]
		i += j + 1
		if run == "" {
			shifted = false
			continue
		}
		if shifted {
			return false
		}
		b, err := mutf7.DecodeString(run)
		if err != nil || len(b)%2 != 0 || len(b) == 0 {
			return false
		}
		u := make([]uint16, len(b)/2)
		for k := range u {
			u[k] = uint16(b[2*k])<<8 | uint16(b[2*k+1])
		}
		for k := 0; k < len(u); k++ {
			r := rune(u[k])
			switch {
			case utf16.IsSurrogate(r):
				if k+1 >= len(u) || utf16.DecodeRune(r, rune(u[k+1])) == 0xfffd {
					return false
				}
				k++
			case r >= 0x20 && r <= 0x7e:
				return false
			}
		}
		shifted = true
	}
	return true
}

// isASCII reports whether b is all ASCII.
func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
