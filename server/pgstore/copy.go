package pgstore

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// Copy copies the messages of src whose UIDs are in uids to dst, in one
// transaction. The copies share their bodies with the originals (a
// reference more) but count against the quota.
func (s *Store) Copy(ctx context.Context, user, src string, uids []uint32, dst string) (store.CopyResult, error) {
	res, err := s.copyMove(ctx, user, src, uids, dst, false)
	if err != nil {
		return store.CopyResult{}, fmt.Errorf("copy from %q to %q of %q: %w", src, dst, user, err)
	}
	return res, nil
}

// Move moves the messages of src whose UIDs are in uids to dst (RFC 6851),
// in one transaction, which records their old UIDs for Vanished.
func (s *Store) Move(ctx context.Context, user, src string, uids []uint32, dst string) (store.CopyResult, error) {
	res, err := s.copyMove(ctx, user, src, uids, dst, true)
	if err != nil {
		return store.CopyResult{}, fmt.Errorf("move from %q to %q of %q: %w", src, dst, user, err)
	}
	return res, nil
}

type lockedMailbox struct {
	id, modseq, uidNext, uidValidity int64
}

// lockMailboxes locks the rows of the mailboxes of user named (normalized
// names, one or two), in the order of their ids, and returns them in the
// order of names.
func lockMailboxes(ctx context.Context, tx pgx.Tx, userID int64, names ...string) ([]lockedMailbox, error) {
	rows, err := tx.Query(ctx, `SELECT name, id, highestmodseq, uidnext, uidvalidity FROM mailboxes
		WHERE user_id = $1 AND name = ANY($2) ORDER BY id FOR NO KEY UPDATE`, userID, names)
	if err != nil {
		return nil, err
	}
	found := map[string]lockedMailbox{}
	var name string
	var m lockedMailbox
	if _, err := pgx.ForEachRow(rows, []any{&name, &m.id, &m.modseq, &m.uidNext, &m.uidValidity}, func() error {
		found[name] = m
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]lockedMailbox, len(names))
	for i, n := range names {
		var ok bool
		if out[i], ok = found[n]; !ok {
			return nil, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, n)
		}
	}
	return out, nil
}

func (s *Store) copyMove(ctx context.Context, user, src string, uids []uint32, dst string, move bool) (store.CopyResult, error) {
	srcName, err := normalizeMailbox(src)
	if err != nil {
		return store.CopyResult{}, err
	}
	dstName, err := normalizeMailbox(dst)
	if err != nil {
		return store.CopyResult{}, err
	}
	var res store.CopyResult
	err = s.writeTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		res = store.CopyResult{}
		userID, err := lockUser(ctx, tx, user)
		if err != nil {
			return err
		}
		boxes, err := lockMailboxes(ctx, tx, userID, srcName, dstName)
		if err != nil {
			return err
		}
		sm, dm := boxes[0], boxes[1]
		res.UIDValidity = uint32(dm.uidValidity)
		rows, err := tx.Query(ctx, "SELECT uid, size, body_id FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid",
			sm.id, toInt64s(uids))
		if err != nil {
			return err
		}
		var uid, size, bodyID, total int64
		var suids, duids, bodies []int64
		if _, err := pgx.ForEachRow(rows, []any{&uid, &size, &bodyID}, func() error {
			suids = append(suids, uid)
			duids = append(duids, dm.uidNext+int64(len(duids)))
			bodies = append(bodies, bodyID)
			total += size
			return nil
		}); err != nil {
			return err
		}
		n := int64(len(suids))
		if n == 0 {
			return nil
		}
		if dm.uidNext+n-1 > math.MaxUint32 {
			return errUIDsExhausted
		}
		// One new MODSEQ per mailbox changed (one for both within one
		// mailbox), which the copies or moved messages take.
		dmod := dm.modseq + 1
		if move {
			if _, err := tx.Exec(ctx, `UPDATE messages m SET mailbox_id = $2, uid = d.nuid, modseq = $3
				FROM unnest($4::bigint[], $5::bigint[]) AS d (suid, nuid)
				WHERE m.mailbox_id = $1 AND m.uid = d.suid`, sm.id, dm.id, dmod, suids, duids); err != nil {
				return fmt.Errorf("move messages: %w", err)
			}
		} else {
			if _, err := tx.Exec(ctx, `INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, body_id)
				SELECT $2, d.nuid, $3, m.flags, m.internal_date, m.size, m.body_id
				FROM unnest($4::bigint[], $5::bigint[]) AS d (suid, nuid)
				JOIN messages m ON m.mailbox_id = $1 AND m.uid = d.suid`, sm.id, dm.id, dmod, suids, duids); err != nil {
				return fmt.Errorf("copy messages: %w", err)
			}
			if _, err := tx.Exec(ctx, `UPDATE bodies b SET refs = b.refs + d.n, released_at = NULL
				FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id GROUP BY id) d
				WHERE b.id = d.id`, bodies); err != nil {
				return fmt.Errorf("share bodies: %w", err)
			}
			var quota, used int64
			if err := tx.QueryRow(ctx, "UPDATE users SET used = used + $2, messages = messages + $3 WHERE id = $1 RETURNING quota, used",
				userID, total, n).Scan(&quota, &used); err != nil {
				return err
			}
			if quota > 0 && used > quota {
				return store.ErrQuotaExceeded
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET uidnext = uidnext + $2, highestmodseq = $3, messages = messages + $2, size = size + $4
			WHERE id = $1`, dm.id, n, dmod, total); err != nil {
			return err
		}
		for _, u := range suids {
			res.SourceUIDs = append(res.SourceUIDs, uint32(u))
		}
		for _, u := range duids {
			res.DestUIDs = append(res.DestUIDs, uint32(u))
		}
		if move {
			smod := sm.modseq + 1
			if sm.id == dm.id {
				smod = dmod
			}
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET highestmodseq = $2, messages = messages - $3, size = size - $4
				WHERE id = $1`, sm.id, smod, n, total); err != nil {
				return err
			}
			if err := recordVanished(ctx, tx, sm.id, smod, res.SourceUIDs); err != nil {
				return err
			}
			if sm.id != dm.id {
				if err := notify(ctx, tx, user, uint64(sm.id)); err != nil {
					return err
				}
			}
		}
		return notify(ctx, tx, user, uint64(dm.id))
	})
	if err != nil {
		return store.CopyResult{}, err
	}
	return res, nil
}
