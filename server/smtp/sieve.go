package smtp

import (
	"context"
	"errors"

	gosmtp "github.com/emersion/go-smtp"

	sievedeliver "github.com/mailctl/mailctl/server/sieve/deliver"
)

// withSieveEnvelope passes the envelope to the Sieve filter in front of the
// store (server/sieve/deliver); canReject is true when a script's reject
// can be this transaction's reply (one local recipient, nothing relayed).
func withSieveEnvelope(ctx context.Context, from string, canReject bool) context.Context {
	return sievedeliver.WithEnvelope(ctx, sievedeliver.Envelope{From: from, CanReject: canReject})
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
