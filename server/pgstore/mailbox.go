package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// DeleteMailbox deletes a mailbox and its messages (their bodies, unless
// copies elsewhere use them, go a grace later: sweep.go). INBOX (store.ErrInboxNotAllowed) and
// mailboxes that have children (store.ErrHasChildren) cannot be deleted.
// A subscribed mailbox stays subscribed by name (GoneSubscriptions).
func (s *Store) DeleteMailbox(ctx context.Context, user, name string) error {
	n, err := normalizeMailbox(name)
	if err == nil {
		err = s.writeTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
			userID, err := lockUser(ctx, tx, user)
			if err != nil {
				return err
			}
			boxes, err := lockMailboxes(ctx, tx, userID, n)
			if err != nil {
				return err
			}
			if n == store.Inbox {
				return store.ErrInboxNotAllowed
			}
			// Like Dovecot and the embedded store: children first, so
			// that no name is left without its parent.
			var children bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE user_id = $1 AND starts_with(name, $2))",
				userID, n+string(store.Delim)).Scan(&children); err != nil {
				return err
			}
			if children {
				return store.ErrHasChildren
			}
			id := boxes[0].id
			rows, err := tx.Query(ctx, "DELETE FROM messages WHERE mailbox_id = $1 RETURNING size, body_id", id)
			if err != nil {
				return err
			}
			var size, bodyID, total int64
			var bodies []int64
			if _, err := pgx.ForEachRow(rows, []any{&size, &bodyID}, func() error {
				bodies = append(bodies, bodyID)
				total += size
				return nil
			}); err != nil {
				return err
			}
			if err := releaseBodies(ctx, tx, bodies); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE users SET used = used - $2, messages = messages - $3 WHERE id = $1", userID, total, len(bodies)); err != nil {
				return err
			}
			var subscribed bool
			if err := tx.QueryRow(ctx, "DELETE FROM mailboxes WHERE id = $1 RETURNING subscribed", id).Scan(&subscribed); err != nil {
				return err
			}
			if subscribed {
				if _, err := tx.Exec(ctx, "INSERT INTO gone_subscriptions (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", userID, n); err != nil {
					return err
				}
			}
			// For the change feed's catch-up after a lost connection;
			// tombstones older than a day go.
			if _, err := tx.Exec(ctx, `WITH old AS (DELETE FROM deleted_mailboxes WHERE deleted_at < now() - interval '1 day')
				INSERT INTO deleted_mailboxes (mailbox_id, user_name, change_xid)
				VALUES ($1, $2, pg_current_xact_id()::text::bigint)`, id, user); err != nil {
				return err
			}
			return notify(ctx, tx, user, uint64(id))
		})
	}
	if err != nil {
		return fmt.Errorf("delete mailbox %q of %q: %w", name, user, err)
	}
	return nil
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves
// its messages to the new mailbox (the same mailbox ID and UIDVALIDITY)
// and leaves a new, empty INBOX (RFC 9051 section 6.3.6). Renamed
// mailboxes get a new modification sequence and watchers are told, so
// that sessions follow the new name.
func (s *Store) RenameMailbox(ctx context.Context, user, oldName, newName string) error {
	err := s.writeTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		from, err := normalizeMailbox(oldName)
		if err != nil {
			return err
		}
		userID, err := lockUser(ctx, tx, user)
		if err != nil {
			return err
		}
		if _, err := lockMailboxes(ctx, tx, userID, from); err != nil {
			return err
		}
		to, err := normalizeMailbox(newName)
		if err != nil {
			return err
		}
		if to == store.Inbox {
			return store.ErrInboxNotAllowed
		}
		// The mailbox and, unless it is INBOX, its children, in name
		// order (a parent before its children).
		rows, err := tx.Query(ctx, `SELECT id, name FROM mailboxes WHERE user_id = $1 AND (name = $2 OR ($2 <> $3 AND starts_with(name, $4)))
			FOR NO KEY UPDATE`, userID, from, store.Inbox, from+string(store.Delim))
		if err != nil {
			return err
		}
		type box struct {
			id   int64
			name string
		}
		var moves []box
		var b box
		if _, err := pgx.ForEachRow(rows, []any{&b.id, &b.name}, func() error {
			moves = append(moves, b)
			return nil
		}); err != nil {
			return err
		}
		slices.SortFunc(moves, func(a, b box) int { return strings.Compare(a.name, b.name) })
		for _, m := range moves {
			target := to + m.name[len(from):]
			if _, err := normalizeMailbox(target); err != nil {
				return err
			}
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $2)", userID, target).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return fmt.Errorf("%w: %q", store.ErrMailboxExists, target)
			}
			if _, err := tx.Exec(ctx, "UPDATE mailboxes SET name = $2, highestmodseq = highestmodseq + 1 WHERE id = $1", m.id, target); err != nil {
				if isUniqueViolation(err) {
					return fmt.Errorf("%w: %q", store.ErrMailboxExists, target)
				}
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM gone_subscriptions WHERE user_id = $1 AND name = $2", userID, target); err != nil {
				return err
			}
			if err := notify(ctx, tx, user, uint64(m.id)); err != nil {
				return err
			}
		}
		if from == store.Inbox {
			if _, err := createMailbox(ctx, tx, userID, store.Inbox, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rename mailbox %q of %q to %q: %w", oldName, user, newName, err)
	}
	return nil
}

// SetSubscribed sets the subscription state of a mailbox. A name that
// names no mailbox can be unsubscribed (see GoneSubscriptions), not
// subscribed.
func (s *Store) SetSubscribed(ctx context.Context, user, name string, subscribed bool) error {
	n, err := normalizeMailbox(name)
	if err == nil {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			userID, err := lockUser(ctx, tx, user)
			if err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, "UPDATE mailboxes SET subscribed = $3 WHERE user_id = $1 AND name = $2", userID, n, subscribed)
			if err != nil {
				return err
			}
			if tag.RowsAffected() > 0 {
				return nil
			}
			if subscribed {
				return fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, n)
			}
			_, err = tx.Exec(ctx, "DELETE FROM gone_subscriptions WHERE user_id = $1 AND name = $2", userID, n)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("subscribe mailbox %q of %q: %w", name, user, err)
	}
	return nil
}

// GoneSubscriptions returns the names subscribed that name no mailbox,
// sorted byte-wise.
func (s *Store) GoneSubscriptions(ctx context.Context, user string) ([]string, error) {
	var out []string
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var userID int64
		err := tx.QueryRow(ctx, "SELECT id FROM users WHERE name = $1", user).Scan(&userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", store.ErrNoSuchUser, user)
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT name FROM gone_subscriptions WHERE user_id = $1", userID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("subscriptions of %q: %w", user, err)
	}
	slices.Sort(out)
	return out, nil
}

// ClaimRecent takes the \Recent flag (RFC 3501 section 2.3.2) of the
// messages of mailbox id whose UIDs are below upTo for one IMAP session:
// the caller's session has \Recent for the UIDs in [first, upTo), and no
// later caller, on any node, gets them (the mailbox row is locked). It
// changes no message, so the mailbox's ModSeq stays as it is.
func (s *Store) ClaimRecent(ctx context.Context, user string, id uint64, upTo uint32) (first uint32, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var recent, uidNext int64
		err := tx.QueryRow(ctx, `SELECT m.recent_uid, m.uidnext FROM mailboxes m JOIN users u ON u.id = m.user_id
			WHERE u.name = $1 AND m.id = $2 FOR NO KEY UPDATE OF m`, user, int64(id)).Scan(&recent, &uidNext)
		if errors.Is(err, pgx.ErrNoRows) {
			return noMailbox(ctx, tx, user, store.ErrNoSuchMailbox)
		}
		if err != nil {
			return err
		}
		f, to := max(recent, 1), min(int64(upTo), uidNext)
		if to <= f {
			first = uint32(to)
			return nil
		}
		first = uint32(f)
		_, err = tx.Exec(ctx, "UPDATE mailboxes SET recent_uid = $2 WHERE id = $1", int64(id), to)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("claim recent messages of mailbox %d of %q: %w", id, user, err)
	}
	return first, nil
}
