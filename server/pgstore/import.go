package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// Import: writing mailboxes copied from another store (server/storecopy,
// `mailctl store copy`) with the source's UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ and each message's UID, MODSEQ, flags, internal date and
// body, as server/store's ImportMailbox does. A mailbox is imported in one
// transaction: an interrupted import leaves nothing to clean.

// importBatchBytes bounds the bodies sent to the server in one round trip.
const importBatchBytes = 8 << 20

// ImportUser creates user, when absent, without any mailbox (the import
// brings them, INBOX included), and sets its quota in bytes (0 =
// unlimited).
func (s *Store) ImportUser(ctx context.Context, user string, quotaBytes int64) error {
	if user == "" {
		return fmt.Errorf("import user %q: invalid name", user)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO users (name, quota) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET quota = excluded.quota`, user, quotaBytes)
	if err != nil {
		return fmt.Errorf("import user %q: %w", user, err)
	}
	return nil
}

// ImportMailbox writes the mailbox mb of user (which ImportUser made)
// with mb's UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (ModSeq), special use and
// subscription, and the messages next returns, until it returns io.EOF:
// each with its UID, MODSEQ, flags, internal date and body (read before
// next is called again). Messages must come in ascending UID order, below
// UIDNEXT, with MODSEQs up to HIGHESTMODSEQ, mb.Messages of them. The
// quota is not checked.
//
// A mailbox of that name at the destination is replaced when empty and
// never used, skipped (skipped true, next never called) when it is the
// complete copy, and refused otherwise (store.CheckImport).
func (s *Store) ImportMailbox(ctx context.Context, user string, mb store.Mailbox, next func() (store.Message, io.Reader, error)) (skipped bool, err error) {
	name, err := normalizeMailbox(mb.Name)
	if err == nil && (mb.UIDValidity == 0 || mb.UIDNext == 0 || mb.ModSeq == 0 || mb.ModSeq > math.MaxInt64) {
		err = fmt.Errorf("UIDVALIDITY %d, UIDNEXT %d, HIGHESTMODSEQ %d: out of range", mb.UIDValidity, mb.UIDNext, mb.ModSeq)
	}
	if err == nil {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var e error
			skipped, e = s.importMailbox(ctx, tx, user, name, mb, next)
			return e
		})
	}
	if err != nil {
		return false, fmt.Errorf("import mailbox %q of %q: %w", mb.Name, user, err)
	}
	return skipped, nil
}

func (s *Store) importMailbox(ctx context.Context, tx pgx.Tx, user, name string, mb store.Mailbox, next func() (store.Message, io.Reader, error)) (bool, error) {
	userID, err := lockUser(ctx, tx, user)
	if err != nil {
		return false, err
	}
	cur, err := scanMailbox(tx.QueryRow(ctx, "SELECT "+mailboxColumns+" FROM mailboxes m WHERE m.user_id = $1 AND m.name = $2 FOR UPDATE", userID, name))
	switch {
	case err == nil:
		skip, err := store.CheckImport(store.Mailbox{UIDValidity: cur.UIDValidity, UIDNext: cur.UIDNext, ModSeq: cur.ModSeq, Messages: cur.Messages}, mb)
		if skip || err != nil {
			return skip, err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM mailboxes WHERE id = $1", int64(cur.ID)); err != nil {
			return false, err
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return false, err
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		userID, name, int64(mb.UIDValidity), int64(mb.UIDNext), int64(mb.ModSeq), mb.SpecialUse, mb.Subscribed).Scan(&id)
	if err != nil {
		return false, fmt.Errorf("insert mailbox: %w", err)
	}
	var (
		batch      pgx.Batch
		batchBytes int64
		count      int64
		size       int64
		prev       uint32
	)
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		err := tx.SendBatch(ctx, &batch).Close()
		batch, batchBytes = pgx.Batch{}, 0
		if err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		return nil
	}
	for {
		m, body, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("read source: %w", err)
		}
		if err := store.CheckImportMessage(mb, prev, m); err != nil {
			return false, err
		}
		prev = m.UID
		flags, err := normalizeFlags(m.Flags)
		if err != nil {
			return false, fmt.Errorf("message UID %d: %w", m.UID, err)
		}
		data, err := io.ReadAll(body)
		if err != nil {
			return false, fmt.Errorf("message UID %d: read body: %w", m.UID, err)
		}
		n := int64(len(data))
		if m.Size != 0 && n != m.Size {
			return false, fmt.Errorf("message UID %d: body of %d bytes, the source says %d", m.UID, n, m.Size)
		}
		bodyID, _, _, err := s.insertBody(ctx, tx, data, nil)
		if err != nil {
			return false, fmt.Errorf("message UID %d: %w", m.UID, err)
		}
		batch.Queue(`INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, body_id) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, int64(m.UID), int64(m.ModSeq), flags, m.InternalDate, n, bodyID)
		count++
		size += n
		batchBytes += n
		if batchBytes >= importBatchBytes || batch.Len() >= 2000 {
			if err := flush(); err != nil {
				return false, err
			}
		}
	}
	if err := flush(); err != nil {
		return false, err
	}
	if count != int64(mb.Messages) {
		return false, fmt.Errorf("the source gave %d messages, its mailbox says %d", count, mb.Messages)
	}
	if _, err := tx.Exec(ctx, `UPDATE mailboxes SET messages = $2, size = $3,
		recent_uid = uidnext, vanished_floor = highestmodseq WHERE id = $1`, id, count, size); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET messages = messages + $2, used = used + $3,
		last_uidvalidity = greatest(last_uidvalidity, $4) WHERE id = $1`, userID, count, size, int64(mb.UIDValidity)); err != nil {
		return false, err
	}
	return false, notify(ctx, tx, user, uint64(id))
}
