package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Bounds of the expunge records of one mailbox (the table vanished, as
// rows of UID ranges): beyond maxVanishedRows rows, the oldest are dropped
// down to vanishedKeep rows, whole transactions at a time, the newest
// always kept. Variables for the tests.
var (
	maxVanishedRows = 8192
	vanishedKeep    = 4096
)

// uidRanges returns ascending UIDs as ranges [lo, hi], in two slices.
func uidRanges(uids []uint32) (los, his []int64) {
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] <= uids[j]+1 {
			j++
		}
		los, his = append(los, int64(uids[i])), append(his, int64(uids[j]))
		i = j + 1
	}
	return los, his
}

// recordVanished records that uids (ascending) left mailbox id at modseq,
// its new HIGHESTMODSEQ, in tx, which holds the mailbox's row lock.
func recordVanished(ctx context.Context, tx pgx.Tx, id, modseq int64, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	los, his := uidRanges(uids)
	if _, err := tx.Exec(ctx, `INSERT INTO vanished (mailbox_id, modseq, lo, hi)
		SELECT $1, $2, r.lo, r.hi FROM unnest($3::bigint[], $4::bigint[]) AS r (lo, hi)
		ON CONFLICT (mailbox_id, modseq, lo) DO UPDATE SET hi = greatest(vanished.hi, excluded.hi)`, id, modseq, los, his); err != nil {
		return fmt.Errorf("record expunged UIDs: %w", err)
	}
	var rows int64
	if err := tx.QueryRow(ctx, "UPDATE mailboxes SET vanished_rows = vanished_rows + $2 WHERE id = $1 RETURNING vanished_rows",
		id, len(los)).Scan(&rows); err != nil {
		return fmt.Errorf("record expunged UIDs: %w", err)
	}
	if rows <= int64(maxVanishedRows) {
		return nil
	}
	// The MODSEQ of the newest row beyond those kept: it and all older go.
	var cutoff int64
	err := tx.QueryRow(ctx, `SELECT modseq FROM vanished WHERE mailbox_id = $1
		ORDER BY modseq DESC, lo DESC OFFSET $2 LIMIT 1`, id, vanishedKeep).Scan(&cutoff)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trim expunged UIDs: %w", err)
	}
	cutoff = min(cutoff, modseq-1)
	if _, err := tx.Exec(ctx, `WITH d AS (DELETE FROM vanished WHERE mailbox_id = $1 AND modseq <= $2 RETURNING modseq)
		UPDATE mailboxes SET vanished_floor = greatest(vanished_floor, (SELECT max(modseq) FROM d)),
			vanished_rows = (SELECT count(*) FROM vanished WHERE mailbox_id = $1 AND modseq > $2)
		WHERE id = $1`, id, cutoff); err != nil {
		return fmt.Errorf("trim expunged UIDs: %w", err)
	}
	return nil
}

// Vanished returns the UIDs of the messages that left the mailbox (by ID)
// after modification sequence since, as ascending disjoint ranges [lo, hi].
// complete is false when the records do not go back that far: the UIDs
// returned are then only those known, and the caller must treat every UID
// not in the mailbox as possibly vanished.
func (s *Store) Vanished(ctx context.Context, user string, mailboxID uint64, since uint64) (ranges [][2]uint32, complete bool, err error) {
	since = min(since, math.MaxInt64)
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		ranges, complete = nil, false
		var floor int64
		err := tx.QueryRow(ctx, `SELECT m.vanished_floor FROM mailboxes m JOIN users u ON u.id = m.user_id
			WHERE u.name = $1 AND m.id = $2`, user, int64(mailboxID)).Scan(&floor)
		if errors.Is(err, pgx.ErrNoRows) {
			if err := noMailbox(ctx, tx, user, nil); err != nil {
				return err
			}
			return nil // no such mailbox: nothing is known
		}
		if err != nil {
			return err
		}
		complete = since >= uint64(floor)
		rows, err := tx.Query(ctx, "SELECT lo, hi FROM vanished WHERE mailbox_id = $1 AND modseq > $2", int64(mailboxID), int64(since))
		if err != nil {
			return err
		}
		var lo, hi int64
		_, err = pgx.ForEachRow(rows, []any{&lo, &hi}, func() error {
			ranges = append(ranges, [2]uint32{uint32(lo), uint32(hi)})
			return nil
		})
		if err != nil {
			return err
		}
		ranges = mergeRanges(ranges)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read expunged UIDs of mailbox %d of %q: %w", mailboxID, user, err)
	}
	return ranges, complete, nil
}

// mergeRanges sorts ranges and joins those that overlap or touch.
func mergeRanges(r [][2]uint32) [][2]uint32 {
	slices.SortFunc(r, func(a, b [2]uint32) int { return int(int64(a[0]) - int64(b[0])) })
	var out [][2]uint32
	for _, x := range r {
		if n := len(out); n > 0 && uint64(x[0]) <= uint64(out[n-1][1])+1 {
			out[n-1][1] = max(out[n-1][1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}
