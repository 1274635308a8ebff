package store

import (
	"context"
	"fmt"
)

// Subscriptions live in the mailbox records (Mailbox.Subscribed), and,
// for names that no longer name a mailbox, in the user's bucket
// bucketGoneSubs: RFC 3501 section 6.3.6 and RFC 9051 section 6.3.7 say
// a server SHOULD NOT remove a name from the subscriptions because its
// mailbox went away. LIST (SUBSCRIBED) shows them \NonExistent; clients
// (Thunderbird) UNSUBSCRIBE them after a DELETE.
var bucketGoneSubs = []byte("subscribed-gone")

// keepSubscription records name, subscribed, as no longer a mailbox.
func (u *userTx) keepSubscription(name string) error {
	b, err := u.b.CreateBucketIfNotExists(bucketGoneSubs)
	if err != nil {
		return err
	}
	return b.Put([]byte(name), []byte{})
}

// forgetSubscription removes name from the subscriptions without a
// mailbox.
func (u *userTx) forgetSubscription(name string) error {
	b := u.b.Bucket(bucketGoneSubs)
	if b == nil || b.Get([]byte(name)) == nil {
		return nil
	}
	return b.Delete([]byte(name))
}

// GoneSubscriptions returns the names subscribed that name no mailbox,
// sorted.
func (s *Store) GoneSubscriptions(ctx context.Context, user string) ([]string, error) {
	var out []string
	err := s.view(ctx, user, func(u *userTx) error {
		b := u.b.Bucket(bucketGoneSubs)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("subscriptions of %q: %w", user, err)
	}
	return out, nil
}
