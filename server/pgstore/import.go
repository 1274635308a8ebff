package pgstore

import (
	"bytes"
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

// importBatchRows and importBatchBytes bound the messages (with their
// bodies of one chunk) sent to the server in one round trip.
const (
	importBatchRows        = 1000
	importBatchBytes int64 = 8 << 20
)

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
// quota is not checked. The \Recent mark (mb.RecentUID) is kept; the
// expunge records (QRESYNC) start complete at HIGHESTMODSEQ.
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
		err = s.writeTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
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
		// Empty and never used: replaced, with a tombstone for the change
		// feed's catch-up as DeleteMailbox leaves.
		if _, err := tx.Exec(ctx, "DELETE FROM mailboxes WHERE id = $1", int64(cur.ID)); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO deleted_mailboxes (mailbox_id, user_name, change_xid)
			VALUES ($1, $2, pg_current_xact_id()::text::bigint)`, int64(cur.ID), user); err != nil {
			return false, err
		}
		if err := notify(ctx, tx, user, cur.ID); err != nil {
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
	// A subscription kept for the name while it named no mailbox is now
	// the mailbox's.
	if _, err := tx.Exec(ctx, "DELETE FROM gone_subscriptions WHERE user_id = $1 AND name = $2", userID, name); err != nil {
		return false, err
	}
	var (
		buf        = make([]byte, s.chunkSize) // the first chunk of each body
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
		// As at delivery: a body that fits in one chunk goes with its
		// message in one statement, queued (no round trip of its own); a
		// larger one is streamed in chunks of the store's size.
		k, err := io.ReadFull(ctxReader{ctx, body}, buf)
		rest := body
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			rest = nil
		case err != nil:
			return false, fmt.Errorf("message UID %d: read body: %w", m.UID, err)
		}
		var n int64
		if rest == nil {
			data := bytes.Clone(buf[:k])
			n = int64(k)
			var hc headerCapture
			hc.add(data)
			hdr := hc.header()
			head, text := s.textOf(data) // bodysearch.go
			batch.Queue(`WITH b AS (
					INSERT INTO bodies (size, chunk_size, refs, header, summary) VALUES ($1, $2, 1, $3, $4) RETURNING id),
				c AS (INSERT INTO body_chunks (body_id, chunk_no, data) SELECT id, 0, $5 FROM b WHERE $1 > 0),
				`+withTextCTE(11, 12)+`
				INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, body_id)
				SELECT $6, $7, $8, $9, $10, $1, id FROM b`,
				n, s.chunkSize, hdr, s.summarize(hdr), data, id, int64(m.UID), int64(m.ModSeq), flags, m.InternalDate, head, text)
			batchBytes += n
		} else {
			var bodyID int64
			bodyID, n, _, err = s.insertBody(ctx, tx, buf[:k], rest)
			if err != nil {
				return false, fmt.Errorf("message UID %d: %w", m.UID, err)
			}
			batch.Queue(`INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, body_id) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				id, int64(m.UID), int64(m.ModSeq), flags, m.InternalDate, n, bodyID)
		}
		if m.Size != 0 && n != m.Size {
			return false, fmt.Errorf("message UID %d: body of %d bytes, the source says %d", m.UID, n, m.Size)
		}
		count++
		size += n
		if batch.Len() >= importBatchRows || batchBytes >= importBatchBytes {
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
		recent_uid = $4, vanished_floor = highestmodseq WHERE id = $1`, id, count, size, int64(min(max(mb.RecentUID, 1), mb.UIDNext))); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET messages = messages + $2, used = used + $3,
		last_uidvalidity = greatest(last_uidvalidity, $4) WHERE id = $1`, userID, count, size, int64(mb.UIDValidity)); err != nil {
		return false, err
	}
	return false, notify(ctx, tx, user, uint64(id))
}

// ImportSubscriptions adds names to the subscriptions of user that name
// no mailbox (gone_subscriptions); names of mailboxes are left alone
// (their subscription is part of ImportMailbox).
func (s *Store) ImportSubscriptions(ctx context.Context, user string, names []string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		userID, err := lockUser(ctx, tx, user)
		if err != nil {
			return err
		}
		for _, n := range names {
			n, err := normalizeMailbox(n)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO gone_subscriptions (user_id, name)
				SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $2)
				ON CONFLICT DO NOTHING`, userID, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import subscriptions of %q: %w", user, err)
	}
	return nil
}
