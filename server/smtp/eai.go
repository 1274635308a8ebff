package smtp

import (
	"context"
	"io"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/auth"
)

// International addresses (RFC 6531 SMTPUTF8, RFC 6532 UTF-8 headers).
//
// go-smtp parses the commands and advertises SMTPUTF8 (and 8BITMIME); this
// file holds what the server decides: a non-ASCII address needs SMTPUTF8 on
// its MAIL command (553 5.6.7 otherwise, RFC 6531 section 3.6.2), and a
// message that needs SMTPUTF8 keeps the requirement in the outbound queue,
// which will not downgrade it (a next hop without SMTPUTF8 gets no copy and
// the sender a 5.6.7 DSN).

var (
	errNeedSMTPUTF8    = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII addresses require SMTPUTF8"}
	errNeedSMTPUTF8Out = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 7}, Message: "Message needs SMTPUTF8, which outbound delivery does not support"}
)

// UTF8Queue is implemented by a Queue that keeps a message's SMTPUTF8
// requirement (server/queue does): the message then goes only to next hops
// that offer SMTPUTF8.
type UTF8Queue interface {
	EnqueueSMTPUTF8(ctx context.Context, from string, to []string, body io.Reader) error
}

// needSMTPUTF8 reports whether the transaction's outbound copy needs
// SMTPUTF8 from the next hop: the client asked for it and the reverse path,
// a remote recipient or the header section (head) is not ASCII. A message
// that asked for SMTPUTF8 but is all ASCII is sent as any other.
func (se *session) needSMTPUTF8(head []byte) bool {
	if !se.utf8 {
		return false
	}
	if !auth.IsASCII(se.from) {
		return true
	}
	for r := range se.outbound {
		if !auth.IsASCII(r) {
			return true
		}
	}
	return !auth.IsASCII(string(headerSection(head)))
}

// headerSection returns the header part of head (up to the empty line).
func headerSection(head []byte) []byte {
	for i := 0; i+3 < len(head); i++ {
		if head[i] == '\r' && head[i+1] == '\n' && head[i+2] == '\r' && head[i+3] == '\n' {
			return head[:i+2]
		}
	}
	return head
}

// enqueue hands the outbound copy to the queue, with its SMTPUTF8
// requirement when it has one.
func (se *session) enqueue(ctx context.Context, utf8 bool, to []string, body io.Reader) error {
	if utf8 {
		return se.s.opts.Queue.(UTF8Queue).EnqueueSMTPUTF8(ctx, se.from, to, body)
	}
	return se.s.opts.Queue.Enqueue(ctx, se.from, to, body)
}
