package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	// The first chunk decides: a body that fits goes in one statement; a
	// larger one is streamed, after a check (without locks) that refuses
	// early what the commit would refuse.
	// (Read as it comes: a small message takes no chunk-sized buffer.)
	first, err := io.ReadAll(io.LimitReader(ctxReader{ctx, body}, int64(s.chunkSize)+1))
	if err != nil {
		return 0, 0, wrap(fmt.Errorf("read body: %w", err))
	}
	var rest io.Reader
	if len(first) > s.chunkSize {
		rest = io.MultiReader(bytes.NewReader(first[s.chunkSize:]), body)
		first = first[:s.chunkSize]
	}
	if rest != nil {
		if err := s.precheck(ctx, user, mailbox); err != nil {
			return 0, 0, wrap(err)
		}
	}
	err = s.writeTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// The body before any lock: a slow sender holds none.
		bodyID, size, _, err := s.insertBody(ctx, tx, first, rest)
		if err != nil {
			return err
		}
		var userID, quota, used int64
		err = tx.QueryRow(ctx, `UPDATE users SET used = used + $2, messages = messages + 1
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
		var mboxID, next, modseq, validity, xid int64
		err = tx.QueryRow(ctx, `UPDATE mailboxes
			SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1, messages = messages + 1, size = size + $3,
				change_xid = pg_current_xact_id()::text::bigint
			WHERE user_id = $1 AND name = $2
			RETURNING id, uidnext - 1, highestmodseq, uidvalidity, change_xid`, userID, mailbox, size).Scan(&mboxID, &next, &modseq, &validity, &xid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, mailbox)
		}
		if err != nil {
			return err
		}
		if next > math.MaxUint32 {
			return errUIDsExhausted
		}
		// The mailbox is stamped for the feed above; its notification
		// goes after the COMMIT (writeTx).
		if _, err := tx.Exec(ctx, `INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, body_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, mboxID, next, modseq, flags, date, size, bodyID); err != nil {
			return fmt.Errorf("insert message: %w", err)
		}
		queueNote(ctx, user, uint64(mboxID), xid)
		uid, uidValidity = uint32(next), uint32(validity)
		return nil
	})
	if err != nil {
		return 0, 0, wrap(err)
	}
	return uid, uidValidity, nil
}

// precheck refuses, without locking, a delivery that its transaction
// would refuse: unknown user or mailbox, quota already used up.
func (s *Store) precheck(ctx context.Context, user, mailbox string) error {
	var quota, used int64
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT u.quota, u.used, EXISTS (SELECT 1 FROM mailboxes m WHERE m.user_id = u.id AND m.name = $2)
		FROM users u WHERE u.name = $1`, user, mailbox).Scan(&quota, &used, &exists)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrNoSuchUser
	case err != nil:
		return err
	case !exists:
		return fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, mailbox)
	case quota > 0 && used >= quota:
		return store.ErrQuotaExceeded
	}
	return nil
}

// messageColumns reads flags as one space-separated string: decoding a
// text[] per row took two thirds of a 2 000-message listing (9.9 ms
// against 3.5 ms), and flags never contain a space (canonicalFlag).
const messageColumns = "uid, modseq, array_to_string(flags, ' '), internal_date, size, id"

func scanMessage(row pgx.Row) (store.Message, error) {
	var m store.Message
	var uid, modseq, id int64
	var flags string
	err := row.Scan(&uid, &modseq, &flags, &m.InternalDate, &m.Size, &id)
	m.UID, m.ModSeq, m.Ref = uint32(uid), uint64(modseq), uint64(id)
	m.Flags = strings.Fields(flags)
	return m, err
}

func collectMessages(rows pgx.Rows) ([]store.Message, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Message, error) { return scanMessage(r) })
}

// Messages returns a mailbox and its messages in UID order, from one
// snapshot of the database.
func (s *Store) Messages(ctx context.Context, user, mailbox string) (store.Mailbox, []store.Message, error) {
	mb, msgs, err := s.messages(ctx, func(tx pgx.Tx) (store.Mailbox, error) { return s.mailbox(ctx, tx, user, mailbox) })
	if err != nil {
		return store.Mailbox{}, nil, fmt.Errorf("list messages of %q of %q: %w", mailbox, user, err)
	}
	return mb, msgs, nil
}

// MessagesByID is Messages for the mailbox whose ID is id: it follows a
// mailbox across renames.
func (s *Store) MessagesByID(ctx context.Context, user string, id uint64) (store.Mailbox, []store.Message, error) {
	mb, msgs, err := s.messages(ctx, func(tx pgx.Tx) (store.Mailbox, error) { return s.mailboxByID(ctx, tx, user, id) })
	if err != nil {
		return store.Mailbox{}, nil, fmt.Errorf("list messages of mailbox %d of %q: %w", id, user, err)
	}
	return mb, msgs, nil
}

func (s *Store) messages(ctx context.Context, find func(pgx.Tx) (store.Mailbox, error)) (store.Mailbox, []store.Message, error) {
	var mb store.Mailbox
	var msgs []store.Message
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if mb, err = find(tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+messageColumns+" FROM messages WHERE mailbox_id = $1 ORDER BY uid", int64(mb.ID))
		if err != nil {
			return err
		}
		msgs, err = collectMessages(rows)
		return err
	})
	return mb, msgs, err
}

// lockMailbox returns the id and HIGHESTMODSEQ of a mailbox of user and
// locks its row until the end of tx.
func lockMailbox(ctx context.Context, tx pgx.Tx, user, mailbox string) (id, modseq int64, err error) {
	return lockMailboxAfter(ctx, tx, "", user, mailbox)
}

// lockMailboxSQL locks the row of mailbox $2 of user $1 and returns its
// id and HIGHESTMODSEQ.
const lockMailboxSQL = `SELECT m.id, m.highestmodseq FROM mailboxes m JOIN users u ON u.id = m.user_id
	WHERE u.name = $1 AND m.name = $2 FOR NO KEY UPDATE OF m`

// lockMailboxAfter is lockMailbox after the statement pre (without
// parameters; none when empty) in the same round trip.
func lockMailboxAfter(ctx context.Context, tx pgx.Tx, pre, user, mailbox string) (id, modseq int64, err error) {
	name, err := normalizeMailbox(mailbox)
	if err != nil {
		return 0, 0, err
	}
	if pre == "" {
		err = tx.QueryRow(ctx, lockMailboxSQL, user, name).Scan(&id, &modseq)
	} else {
		b := &pgx.Batch{}
		b.Queue(pre)
		b.Queue(lockMailboxSQL, user, name)
		br := tx.SendBatch(ctx, b)
		if _, err = br.Exec(); err == nil {
			err = br.QueryRow().Scan(&id, &modseq)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, noMailbox(ctx, tx, user, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name))
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
func (s *Store) SetFlags(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string) ([]store.Message, error) {
	out, _, _, _, err := s.setFlags(ctx, user, mailbox, uids, op, flags, false, 0, nil)
	return out, err
}

// SetFlagsUnchangedSince is SetFlags for the messages whose ModSeq is at
// most unchangedSince (RFC 7162 STORE UNCHANGEDSINCE), checked under the
// mailbox's row lock, in the same transaction as the change; modified are
// the UIDs of the others, left as they are.
func (s *Store) SetFlagsUnchangedSince(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string, unchangedSince uint64) (updated []store.Message, modified []uint32, err error) {
	updated, modified, _, _, err = s.setFlags(ctx, user, mailbox, uids, op, flags, true, unchangedSince, nil)
	return updated, modified, err
}

var _ store.FlagWriteReporter = (*Store)(nil)

// SetFlagsReport is SetFlags, or SetFlagsUnchangedSince when cond, that
// also tells the mailbox's HIGHESTMODSEQ when the write took its lock
// (before) and after its commit (after; before when nothing changed)
// (store.FlagWriteReporter).
func (s *Store) SetFlagsReport(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string, cond bool, unchangedSince uint64) (updated []store.Message, modified []uint32, before, after uint64, err error) {
	return s.setFlags(ctx, user, mailbox, uids, op, flags, cond, unchangedSince, nil)
}

var _ store.FlagWriteCounter = (*Store)(nil)

// SetFlagsCount is SetFlags that answers with the number of messages it
// changed and the mailbox's HIGHESTMODSEQ before and after the write
// (store.FlagWriteCounter). For system flags the changed messages are
// not sent back: the UPDATE returns nothing and the messages left as
// they were are not read.
func (s *Store) SetFlagsCount(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string) (changed int, before, after uint64, err error) {
	var n int
	_, _, before, after, err = s.setFlags(ctx, user, mailbox, uids, op, flags, false, 0, &n)
	return n, before, after, err
}

// setFlags makes a flag write; with count, it sets *count to the number
// of messages changed, and for system flags returns no messages.
func (s *Store) setFlags(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string, cond bool, unchangedSince uint64, count *int) ([]store.Message, []uint32, uint64, uint64, error) {
	wrap := func(err error) error { return fmt.Errorf("store flags in %q of %q: %w", mailbox, user, err) }
	flags, err := normalizeFlags(flags)
	if err != nil {
		return nil, nil, 0, 0, wrap(err)
	}
	w := flagWrite{user: user, flags: flags, cond: cond, since: int64(min(unchangedSince, math.MaxInt64)), count: count,
		out: make([]store.Message, 0, min(len(uids), 1<<16))}
	w.lo, w.hi = sortedRanges(uids)
	var before, after uint64
	if update, others, stamp, ok := systemFlagStatements(op, flags); ok {
		before, after, err = s.setSystemFlags(ctx, &w, mailbox, update, others, stamp)
	} else {
		before, after, err = s.setFlagsGeneral(ctx, &w, op, mailbox)
	}
	if err != nil {
		return nil, nil, 0, 0, wrap(err)
	}
	return w.out, w.modified, before, after, nil
}

// flagWrite is a SetFlags call under way: its arguments as the
// statements take them, and what it gathers.
type flagWrite struct {
	user     string
	flags    []string // normalized
	lo, hi   []int64  // the UIDs as ranges (sortedRanges)
	cond     bool     // UNCHANGEDSINCE since
	since    int64
	count    *int // when not nil, set to the number of messages changed
	out      []store.Message
	modified []uint32 // failed UNCHANGEDSINCE
	fields   flagFields
}

// scan reads a row of setFlagsQuery or of systemFlagStatements's others
// (xid nil: no such column) into w.out or w.modified.
func (w *flagWrite) scan(rows pgx.Rows, xid **int64) error {
	var m store.Message
	var uid, mseq, ref int64
	var fl string
	var skip bool
	dest := []any{&uid, &mseq, &fl, &m.InternalDate, &m.Size, &ref, &skip}
	if xid != nil {
		dest = append(dest, xid)
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	if skip {
		w.modified = append(w.modified, uint32(uid))
		return nil
	}
	m.UID, m.ModSeq, m.Ref = uint32(uid), uint64(mseq), uint64(ref)
	// The messages of a STORE mostly end with the same flags: one slice
	// for each set, shared (flag slices are never changed in place).
	m.Flags = w.fields.get(fl)
	w.out = append(w.out, m)
	return nil
}

// setSystemFlags makes w with systemFlagStatements's statements, in one
// batch, one implicit transaction, and returns the mailbox's
// HIGHESTMODSEQ before and after it.
func (s *Store) setSystemFlags(ctx context.Context, w *flagWrite, mailbox, update, others, stamp string) (before, after uint64, err error) {
	name, err := normalizeMailbox(mailbox)
	if err != nil {
		return 0, 0, err
	}
	var found bool
	var id, modseq int64
	var xid *int64
	b := &pgx.Batch{}
	b.Queue(setFlagsSettings)
	b.Queue(lockMailboxSQL, w.user, name).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			found = true
			if err := rows.Scan(&id, &modseq); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if w.count != nil {
		b.Queue(update, w.user, name, w.lo, w.hi, w.flags, w.cond, w.since).Exec(func(ct pgconn.CommandTag) error {
			*w.count = int(ct.RowsAffected())
			return nil
		})
	} else {
		b.Queue(update+updateReturning, w.user, name, w.lo, w.hi, w.flags, w.cond, w.since).Query(func(rows pgx.Rows) error {
			var m store.Message
			var uid, ref int64
			var fl string
			_, err := pgx.ForEachRow(rows, []any{&uid, &fl, &m.InternalDate, &m.Size, &ref}, func() error {
				m.UID, m.ModSeq, m.Ref, m.Flags = uint32(uid), uint64(modseq+1), uint64(ref), w.fields.get(fl)
				w.out = append(w.out, m)
				return nil
			})
			return err
		})
		b.Queue(others, w.user, name, w.lo, w.hi, w.cond, w.since).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				if err := w.scan(rows, nil); err != nil {
					return err
				}
			}
			return rows.Err()
		})
	}
	b.Queue(stamp, w.user, name, w.lo, w.hi).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			if err := rows.Scan(&xid); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	// One transaction, implicit, ended by the batch's Sync.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, noMailbox(ctx, s.pool, w.user, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name))
	}
	// In no particular order.
	slices.SortFunc(w.out, func(a, b store.Message) int { return cmp.Compare(a.UID, b.UID) })
	slices.Sort(w.modified)
	before, after = uint64(modseq), uint64(modseq)
	if xid != nil { // something changed: the mailbox is stamped
		after++
		s.sendNotes(ctx, []changeNote{{User: w.user, Mailbox: uint64(id), Xid: *xid}})
	}
	return before, after, nil
}

// setFlagsGeneral makes w with setFlagsQuery's statement and returns the
// mailbox's HIGHESTMODSEQ before and after it.
func (s *Store) setFlagsGeneral(ctx context.Context, w *flagWrite, op store.FlagOp, mailbox string) (before, after uint64, err error) {
	query, err := setFlagsQuery(op)
	if err != nil {
		return 0, 0, err
	}
	err = s.writeTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		w.out, w.modified = w.out[:0], w.modified[:0]
		// Nested loops and JIT are off for this transaction, set before
		// the lock is taken: with the statistics of a table that grew
		// since its last ANALYZE (a mailbox just filled), the planner
		// took the messages of the mailbox for one row and joined them to
		// the 2000 computed rows in a nested loop, 4 million comparisons,
		// 0.8 s per STORE 1:*; the cost that disables nested loops then
		// made it compile the statement (JIT, 0.38 s).
		id, modseq, err := lockMailboxAfter(ctx, tx, setFlagsSettings, w.user, mailbox)
		if err != nil {
			return err
		}
		before, after = uint64(modseq), uint64(modseq)
		// A statement of its own after the lock: its snapshot holds
		// every change committed before the lock was ours.
		rows, err := tx.Query(ctx, query, id, w.lo, w.hi, w.flags, w.cond, w.since, modseq+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		var xid *int64
		for rows.Next() {
			if err := w.scan(rows, &xid); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if xid != nil { // something changed: the mailbox is stamped
			after = before + 1
			queueNote(ctx, w.user, uint64(id), *xid)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if w.count != nil && after > before {
		*w.count = 0
		for _, m := range w.out {
			if m.ModSeq == after {
				*w.count++
			}
		}
	}
	return before, after, nil
}

// flagFields splits flag lists joined by spaces, the same list once.
type flagFields map[string][]string

func (f *flagFields) get(joined string) []string {
	if fl, ok := (*f)[joined]; ok {
		return fl
	}
	if *f == nil || len(*f) > 64 {
		*f = flagFields{}
	}
	fl := strings.Fields(joined)
	(*f)[joined] = fl
	return fl
}

// Expunge removes the messages of mailbox flagged \Deleted, restricted to
// uids unless uids is nil (RFC 4315 UID EXPUNGE), and returns their UIDs in
// ascending order, in one transaction, which records the UIDs for
// Vanished and releases their bodies: a body no copy uses any more stays
// readable by those who opened it until the sweeper deletes it, a grace
// later (sweep.go).
func (s *Store) Expunge(ctx context.Context, user, mailbox string, uids []uint32) ([]uint32, error) {
	var expunged []uint32
	err := s.writeTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		expunged = expunged[:0]
		userID, err := lockUser(ctx, tx, user)
		if err != nil {
			return err
		}
		id, modseq, err := lockMailbox(ctx, tx, user, mailbox)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM messages
			WHERE mailbox_id = $1 AND $2 = ANY(flags) AND ($3 OR uid = ANY($4))
			RETURNING uid, size, body_id`, id, store.FlagDeleted, uids == nil, toInt64s(uids))
		if err != nil {
			return err
		}
		var uid, size, bodyID, total int64
		var bodies []int64
		_, err = pgx.ForEachRow(rows, []any{&uid, &size, &bodyID}, func() error {
			expunged = append(expunged, uint32(uid))
			bodies = append(bodies, bodyID)
			total += size
			return nil
		})
		if err != nil {
			return err
		}
		if len(expunged) == 0 {
			return nil
		}
		slices.Sort(expunged)
		if err := releaseBodies(ctx, tx, bodies); err != nil {
			return err
		}
		n := int64(len(expunged))
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET messages = messages - $2, size = size - $3, highestmodseq = $4
			WHERE id = $1`, id, n, total, modseq+1); err != nil {
			return err
		}
		if err := recordVanished(ctx, tx, id, modseq+1, expunged); err != nil {
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
	return expunged, nil
}
