package queue

import (
	"context"
	"io"
	"strings"
	"unicode/utf8"
)

// International mail (RFC 6531-6533). A message received with SMTPUTF8
// whose envelope or header is not ASCII is queued with Message.SMTPUTF8
// set. It is then sent with SMTPUTF8 to a next hop that offers it; one that
// does not gets nothing (no downgrade: RFC 6531 section 3.2 leaves the
// client no way to deliver such a message faithfully), and once every MX
// host was tried the recipients fail with 5.6.7, so the sender gets a
// DSN. The DSN of such a message is an RFC 6533 one: message/global-
// delivery-status and message/global-headers, UTF-8 addresses typed
// "utf-8", and it needs SMTPUTF8 itself when the sender's address does.

// EnqueueSMTPUTF8 is Enqueue for a message that needs SMTPUTF8 from every
// next hop (server/smtp calls it through its UTF8Queue interface).
func (q *Queue) EnqueueSMTPUTF8(ctx context.Context, from string, to []string, body io.Reader) error {
	return q.enqueue(ctx, from, to, body, true)
}

// noSMTPUTF8 fails every recipient for good on a host that lacks SMTPUTF8;
// the next MX host, if any, is tried.
func noSMTPUTF8(p sessionParams) []result {
	return permAll(p.rcpts, "5.6.7", p.host, "non-ASCII addresses require SMTPUTF8, which %s does not offer (not downgraded)", p.host)
}

// isASCII reports whether s holds only ASCII bytes.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// headerValueUTF8 is headerValue keeping valid UTF-8 (for the DSN of an
// international message, RFC 6533): controls become spaces or "?".
func headerValueUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 900 {
			break
		}
		switch {
		case r == '\r' || r == '\n' || r == '\t':
			b.WriteByte(' ')
		case r < 32 || r == 127 || r == utf8.RuneError || (r >= 0x80 && r < 0xa0):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

// addrType is the RFC 3464 / RFC 6533 address type of addr.
func addrType(addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return "utf-8"
}
