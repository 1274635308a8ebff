package smtp

import (
	"context"
	"errors"
	"slices"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	sievedeliver "github.com/mailctl/mailctl/server/sieve/deliver"
)

// sieveEnvelope passes the envelope of user's delivery to the Sieve filter
// in front of the store (server/sieve/deliver): the sender, the first
// recipient address that reached user (alice+lists@ for alice@, so that
// "envelope :detail" sees it), and canReject, true when a script's reject
// can be this transaction's reply (one local recipient, nothing relayed).
func (se *session) sieveEnvelope(ctx context.Context, user string, canReject bool) context.Context {
	env := sievedeliver.Envelope{From: se.from, CanReject: canReject}
	for _, r := range se.rcpts {
		if strings.EqualFold(r, user) {
			env.Rcpt = r
			break
		}
		if res, err := se.s.opts.Directory.Resolve(r); err == nil && slices.Contains(res.Users, user) {
			env.Rcpt = r
			break
		}
	}
	return sievedeliver.WithEnvelope(ctx, env)
}

// sieveRejection is the 550 reply for a delivery a user's Sieve script
// rejected (RFC 5429 2.1), or nil for another error.
func sieveRejection(err error) *gosmtp.SMTPError {
	var rej *sievedeliver.RejectError
	if !errors.As(err, &rej) {
		return nil
	}
	msg := "Rejected by the recipient"
	if rej.Reason != "" {
		msg += ": " + rej.Reason
	}
	if len(msg) > 400 {
		msg = msg[:400]
	}
	return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: msg}
}
