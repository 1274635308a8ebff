package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// ClaimRecent takes the \Recent flag (RFC 3501 section 2.3.2) of the
// messages of mailbox id whose UIDs are below upTo for one IMAP session:
// the caller's session has \Recent for the UIDs in [first, upTo), and no
// later caller gets them. It changes no message, so the mailbox's ModSeq
// stays as it is.
func (s *Store) ClaimRecent(ctx context.Context, user string, id uint64, upTo uint32) (first uint32, err error) {
	err = s.update(ctx, user, func(u *userTx) error {
		var r *mailboxRecord
		var name string
		err := u.b.Bucket(bucketMailboxes).ForEach(func(k, v []byte) error {
			var rec mailboxRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("mailbox %q: %w: %v", k, errCorrupt, err)
			}
			if rec.ID == id {
				r, name = &rec, string(k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if r == nil {
			return ErrNoSuchMailbox
		}
		first = max(r.RecentUID, 1)
		if upTo > r.UIDNext {
			upTo = r.UIDNext
		}
		if upTo <= first {
			first = upTo
			return nil
		}
		r.RecentUID = upTo
		return u.putMailbox(name, r)
	})
	if err != nil {
		return 0, fmt.Errorf("claim recent messages of mailbox %d of %q: %w", id, user, err)
	}
	return first, nil
}

// ApplyFlags returns the flags that SetFlags with op and flags makes of
// cur: for IMAP sessions that tell what a client expects after STORE.
// Flags SetFlags would refuse (too long, too many) leave cur as it is.
func ApplyFlags(cur []string, op FlagOp, flags []string) []string {
	norm, err := normalizeFlags(flags)
	if err != nil {
		return cur
	}
	return applyFlags(cur, op, norm)
}
