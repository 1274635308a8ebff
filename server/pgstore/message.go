package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// Deliver stores body as a new message of mailbox ("" means INBOX) with the
// given flags and internal date (zero means now). It returns once the
// transaction has committed (durable as far as the server's
// synchronous_commit and replication make it), and the change feed then
// tells every node's watchers. It fails with store.ErrQuotaExceeded when
// the message would take user beyond the quota.
//
// The UID and MODSEQ come from an UPDATE of the mailbox row in the same
// transaction: that row lock orders concurrent deliveries, from any node,
// so that no two get the same UID and UIDs are given in commit order.
func (s *Store) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uid uint32, err error) {
	uid, _, err = s.deliver(ctx, user, mailbox, body, flags, date)
	return uid, err
}

// Append is Deliver for IMAP APPEND: it also returns the UIDVALIDITY of the
// mailbox (RFC 4315 APPENDUID).
func (s *Store) Append(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uidValidity, uid uint32, err error) {
	uid, uidValidity, err = s.deliver(ctx, user, mailbox, body, flags, date)
	return uidValidity, uid, err
}

// errUIDsExhausted says that a mailbox has given its last 32-bit UID.
var errUIDsExhausted = errors.New("no UID left in the mailbox (RFC 9051: a new UIDVALIDITY is needed)")

func (s *Store) deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uid, uidValidity uint32, err error) {
	if mailbox == "" {
		mailbox = store.Inbox
	}
	if date.IsZero() {
		date = time.Now()
	}
	wrap := func(err error) error { return fmt.Errorf("deliver to %q of %q: %w", mailbox, user, err) }
	mailbox, err = normalizeMailbox(mailbox)
	if err != nil {
		return 0, 0, wrap(err)
	}
	if flags, err = normalizeFlags(flags); err != nil {
		return 0, 0, wrap(err)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return 0, 0, wrap(fmt.Errorf("read body: %w", err))
	}
	size := int64(len(data))
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var userID, quota, used int64
		err := tx.QueryRow(ctx, `UPDATE users SET used = used + $2, messages = messages + 1
			WHERE name = $1 RETURNING id, quota, used`, user, size).Scan(&userID, &quota, &used)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNoSuchUser
		}
		if err != nil {
			return err
		}
		if quota > 0 && used > quota {
			return store.ErrQuotaExceeded
		}
		var mboxID, next, modseq, validity int64
		err = tx.QueryRow(ctx, `UPDATE mailboxes
			SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1, messages = messages + 1, size = size + $3
			WHERE user_id = $1 AND name = $2
			RETURNING id, uidnext - 1, highestmodseq, uidvalidity`, userID, mailbox, size).Scan(&mboxID, &next, &modseq, &validity)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, mailbox)
		}
		if err != nil {
			return err
		}
		if next > math.MaxUint32 {
			return errUIDsExhausted
		}
		if _, err := tx.Exec(ctx, `INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size)
			VALUES ($1, $2, $3, $4, $5, $6)`, mboxID, next, modseq, flags, date, size); err != nil {
			return fmt.Errorf("insert message: %w", err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO message_bodies (mailbox_id, uid, body) VALUES ($1, $2, $3)", mboxID, next, data); err != nil {
			return fmt.Errorf("insert body: %w", err)
		}
		uid, uidValidity = uint32(next), uint32(validity)
		return notify(ctx, tx, user, uint64(mboxID))
	})
	if err != nil {
		return 0, 0, wrap(err)
	}
	return uid, uidValidity, nil
}

const messageColumns = "uid, modseq, flags, internal_date, size"

func scanMessage(mboxID uint64, row pgx.Row) (Message, error) {
	var m Message
	var uid, modseq int64
	err := row.Scan(&uid, &modseq, &m.Flags, &m.InternalDate, &m.Size)
	m.UID, m.ModSeq, m.mailboxID = uint32(uid), uint64(modseq), mboxID
	return m, err
}

// Messages returns a mailbox and its messages in UID order, from one
// snapshot of the database.
func (s *Store) Messages(ctx context.Context, user, mailbox string) (Mailbox, []Message, error) {
	var mb Mailbox
	var msgs []Message
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if mb, err = s.mailbox(ctx, tx, user, mailbox); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+messageColumns+" FROM messages WHERE mailbox_id = $1 ORDER BY uid", int64(mb.ID))
		if err != nil {
			return err
		}
		msgs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Message, error) { return scanMessage(mb.ID, r) })
		return err
	})
	if err != nil {
		return Mailbox{}, nil, fmt.Errorf("list messages of %q of %q: %w", mailbox, user, err)
	}
	return mb, msgs, nil
}

type memBody struct{ *bytes.Reader }

func (memBody) Close() error { return nil }

// OpenBody returns the body of a message returned by Messages or
// SetFlags, read into memory. It fails with os.ErrNotExist once the
// message has been expunged.
func (s *Store) OpenBody(ctx context.Context, m Message) (store.Body, error) {
	var data []byte
	err := s.pool.QueryRow(ctx, "SELECT body FROM message_bodies WHERE mailbox_id = $1 AND uid = $2",
		int64(m.mailboxID), int64(m.UID)).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		err = os.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("open message %d: %w", m.UID, err)
	}
	return memBody{bytes.NewReader(data)}, nil
}

// lockMailbox returns the id and HIGHESTMODSEQ of a mailbox of user and
// locks its row until the end of tx.
func lockMailbox(ctx context.Context, tx pgx.Tx, user, mailbox string) (id, modseq int64, err error) {
	name, err := normalizeMailbox(mailbox)
	if err != nil {
		return 0, 0, err
	}
	err = tx.QueryRow(ctx, `SELECT m.id, m.highestmodseq FROM mailboxes m JOIN users u ON u.id = m.user_id
		WHERE u.name = $1 AND m.name = $2 FOR NO KEY UPDATE OF m`, user, name).Scan(&id, &modseq)
	if errors.Is(err, pgx.ErrNoRows) {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM users WHERE name = $1", user).Scan(&n); err == nil && n == 0 {
			return 0, 0, store.ErrNoSuchUser
		}
		return 0, 0, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name)
	}
	return id, modseq, err
}

func toInt64s(uids []uint32) []int64 {
	out := make([]int64, len(uids))
	for i, u := range uids {
		out[i] = int64(u)
	}
	return out
}

// SetFlags changes the flags of the messages of mailbox whose UIDs are in
// uids, and returns those messages (changed or not) in UID order. Changed
// messages get a new modification sequence, one for the whole call, which
// becomes the mailbox's HIGHESTMODSEQ.
func (s *Store) SetFlags(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string) ([]Message, error) {
	out, _, err := s.setFlags(ctx, user, mailbox, uids, op, flags, false, 0)
	return out, err
}

// SetFlagsUnchangedSince is SetFlags for the messages whose ModSeq is at
// most unchangedSince (RFC 7162 STORE UNCHANGEDSINCE), checked under the
// mailbox's row lock, in the same transaction as the change; modified are
// the UIDs of the others, left as they are.
func (s *Store) SetFlagsUnchangedSince(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string, unchangedSince uint64) (updated []Message, modified []uint32, err error) {
	return s.setFlags(ctx, user, mailbox, uids, op, flags, true, unchangedSince)
}

func (s *Store) setFlags(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string, cond bool, unchangedSince uint64) ([]Message, []uint32, error) {
	wrap := func(err error) error { return fmt.Errorf("store flags in %q of %q: %w", mailbox, user, err) }
	flags, err := normalizeFlags(flags)
	if err != nil {
		return nil, nil, wrap(err)
	}
	var out []Message
	var modified []uint32
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out, modified = out[:0], modified[:0]
		id, modseq, err := lockMailbox(ctx, tx, user, mailbox)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+messageColumns+" FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid", id, toInt64s(uids))
		if err != nil {
			return err
		}
		msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Message, error) { return scanMessage(uint64(id), r) })
		if err != nil {
			return err
		}
		next := modseq + 1
		var batch pgx.Batch
		for _, m := range msgs {
			if cond && m.ModSeq > unchangedSince {
				modified = append(modified, m.UID)
				continue
			}
			nf := applyFlags(m.Flags, op, flags)
			if !sameFlags(nf, m.Flags) {
				m.Flags, m.ModSeq = nf, uint64(next)
				batch.Queue("UPDATE messages SET flags = $3, modseq = $4 WHERE mailbox_id = $1 AND uid = $2", id, int64(m.UID), nf, next)
			}
			out = append(out, m)
		}
		if batch.Len() == 0 {
			return nil
		}
		batch.Queue("UPDATE mailboxes SET highestmodseq = $2 WHERE id = $1", id, next)
		if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
			return err
		}
		return notify(ctx, tx, user, uint64(id))
	})
	if err != nil {
		return nil, nil, wrap(err)
	}
	return out, modified, nil
}

// Expunge removes the messages of mailbox flagged \Deleted, restricted to
// uids unless uids is nil (RFC 4315 UID EXPUNGE), and returns their UIDs in
// ascending order. Their bodies go with them, in the same transaction.
func (s *Store) Expunge(ctx context.Context, user, mailbox string, uids []uint32) ([]uint32, error) {
	var expunged []uint32
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		expunged = expunged[:0]
		userID, err := lockUser(ctx, tx, user)
		if err != nil {
			return err
		}
		id, _, err := lockMailbox(ctx, tx, user, mailbox)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM messages
			WHERE mailbox_id = $1 AND $2 = ANY(flags) AND ($3 OR uid = ANY($4))
			RETURNING uid, size`, id, store.FlagDeleted, uids == nil, toInt64s(uids))
		if err != nil {
			return err
		}
		var uid, size, total int64
		_, err = pgx.ForEachRow(rows, []any{&uid, &size}, func() error {
			expunged = append(expunged, uint32(uid))
			total += size
			return nil
		})
		if err != nil {
			return err
		}
		if len(expunged) == 0 {
			return nil
		}
		n := int64(len(expunged))
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET messages = messages - $2, size = size - $3, highestmodseq = highestmodseq + 1
			WHERE id = $1`, id, n, total); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE users SET messages = messages - $2, used = used - $3 WHERE id = $1", userID, n, total); err != nil {
			return err
		}
		return notify(ctx, tx, user, uint64(id))
	})
	if err != nil {
		return nil, fmt.Errorf("expunge %q of %q: %w", mailbox, user, err)
	}
	slices.Sort(expunged)
	return expunged, nil
}
