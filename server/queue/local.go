package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	sievedeliver "github.com/mailctl/mailctl/server/sieve/deliver"
	"github.com/mailctl/mailctl/server/store"
)

// Directory resolves local addresses; *auth.Directory implements it.
type Directory interface {
	Resolve(addr string) (auth.Resolution, error)
}

// Mailboxes stores messages; *store.Store implements it.
type Mailboxes interface {
	Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error)
}

// Stamper returns the header fields (each ending in CRLF) to prepend to a
// message from the local sender from before it is stored, and the byte
// ranges [start, end) of msg to leave out (ascending, not overlapping).
// The daemon's stamper adds the Authentication-Results field a receiver
// would add (inbound.Checker.EvaluateOwn). An error defers the delivery.
type Stamper func(ctx context.Context, from string, msg []byte) (header string, remove [][2]int64, err error)

// StoreDeliverer returns the LocalDeliverer that `mailctl serve` uses:
// recipients are resolved by dir and delivered into their INBOX in st;
// an unknown recipient fails for good. (Alias forwarding outside is not
// followed: a DSN never goes back out through an alias.)
func StoreDeliverer(dir Directory, st Mailboxes) LocalDeliverer {
	return StampingDeliverer(dir, st, nil)
}

// StampingDeliverer is StoreDeliverer that passes each message with a
// sender (not a DSN: those have the null sender) through stamp first, once
// per recipient. A full mailbox fails the recipient for good (the sender
// gets a DSN) instead of being retried for days.
func StampingDeliverer(dir Directory, st Mailboxes, stamp Stamper) LocalDeliverer {
	return func(ctx context.Context, from, rcpt string, body io.Reader) error {
		res, err := dir.Resolve(rcpt)
		if errors.Is(err, auth.ErrUnknownRecipient) || errors.Is(err, auth.ErrNotLocal) {
			return &PermanentError{Err: fmt.Errorf("deliver to %s: %w", rcpt, err)}
		}
		if err != nil {
			return fmt.Errorf("deliver to %s: %w", rcpt, err)
		}
		if len(res.Users) == 0 {
			return &PermanentError{Err: fmt.Errorf("deliver to %s: no local mailbox", rcpt)}
		}
		data, err := io.ReadAll(body)
		if err != nil {
			return fmt.Errorf("deliver to %s: read message: %w", rcpt, err)
		}
		if stamp != nil && from != "" {
			header, remove, err := stamp(ctx, from, data)
			if err != nil {
				return fmt.Errorf("deliver to %s: %w", rcpt, err)
			}
			data = withFields(header, data, remove)
		}
		ctx = sievedeliver.WithEnvelope(ctx, sievedeliver.Envelope{From: from, Rcpt: rcpt})
		for _, u := range res.Users {
			if _, err := st.Deliver(ctx, u, "INBOX", bytes.NewReader(data), nil, time.Now()); err != nil {
				if errors.Is(err, store.ErrQuotaExceeded) {
					return &PermanentError{Err: fmt.Errorf("deliver to %s: %w", u, err)}
				}
				return fmt.Errorf("deliver to %s: %w", u, err)
			}
		}
		return nil
	}
}

// withFields returns header followed by msg without the ranges in remove.
func withFields(header string, msg []byte, remove [][2]int64) []byte {
	out := make([]byte, 0, len(header)+len(msg))
	out = append(out, header...)
	var off int64
	for _, r := range remove {
		start, end := max(r[0], off), min(r[1], int64(len(msg)))
		if start >= end {
			continue
		}
		out = append(out, msg[off:start]...)
		off = end
	}
	return append(out, msg[off:]...)
}
