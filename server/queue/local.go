package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mailctl/mailctl/server/auth"
)

// Directory resolves local addresses; *auth.Directory implements it.
type Directory interface {
	Resolve(addr string) (auth.Resolution, error)
}

// Mailboxes stores messages; *store.Store implements it.
type Mailboxes interface {
	Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error)
}

// StoreDeliverer returns the LocalDeliverer that `mailctl serve` uses:
// recipients are resolved by dir and delivered into their INBOX in st;
// an unknown recipient fails for good. (Alias forwarding outside is not
// followed: a DSN never goes back out through an alias.)
func StoreDeliverer(dir Directory, st Mailboxes) LocalDeliverer {
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
		for _, u := range res.Users {
			if _, err := st.Deliver(ctx, u, "INBOX", bytes.NewReader(data), nil, time.Now()); err != nil {
				return fmt.Errorf("deliver to %s: %w", u, err)
			}
		}
		return nil
	}
}
