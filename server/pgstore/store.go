package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/store"
)

// Store is a mail store on a PostgreSQL database. Its methods are safe for
// concurrent use, and several Stores (one per node) may share a database.
type Store struct {
	pool   *pgxpool.Pool
	url    string
	logger *slog.Logger

	watchMu  sync.RWMutex
	watchers map[int]func(store.Change)
	watchSeq int
	listen   *listener // the change feed, started by Open
}

// Mailbox describes a mailbox, as store.Mailbox does (without RecentUID:
// \Recent is not kept here yet).
type Mailbox struct {
	Name        string
	ID          uint64 // stable across renames, unique in the database
	UIDValidity uint32
	UIDNext     uint32
	ModSeq      uint64 // HIGHESTMODSEQ (RFC 7162)
	SpecialUse  string
	Subscribed  bool
	Messages    int
	Size        int64
}

// Message describes a stored message, as store.Message does.
type Message struct {
	UID          uint32
	Size         int64
	InternalDate time.Time
	ModSeq       uint64
	Flags        []string
	mailboxID    uint64
}

// HasFlag reports whether m carries flag (case-insensitively).
func (m *Message) HasFlag(flag string) bool { return hasFlag(m.Flags, flag) }

// Open connects to the database at url (a PostgreSQL URL or key=value
// string, a secret: it is never logged) and checks that its schema is the
// one this binary knows (see Migrate).
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	if err := checkVersion(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, url: url, logger: logger, watchers: map[int]func(store.Change){}}
	if s.listen, err = startListener(ctx, s); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the change feed and closes the connections.
func (s *Store) Close() error {
	s.watchMu.Lock()
	l := s.listen
	s.listen = nil
	s.watchMu.Unlock()
	if l != nil {
		l.stop()
	}
	s.pool.Close()
	return nil
}

// EnsureUser creates user if needed, with the default mailboxes (INBOX and
// the special-use ones that do not exist under any name), and sets the
// quota in bytes (0 = unlimited). It is idempotent, also when several
// nodes run it at once.
func (s *Store) EnsureUser(ctx context.Context, user string, quotaBytes int64) error {
	if user == "" {
		return fmt.Errorf("ensure user %q: invalid name", user)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var uid int64
		err := tx.QueryRow(ctx, `INSERT INTO users (name, quota) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET quota = excluded.quota
			RETURNING id`, user, quotaBytes).Scan(&uid)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT name, special_use FROM mailboxes WHERE user_id = $1", uid)
		if err != nil {
			return err
		}
		used := map[string]bool{}
		var name, special string
		_, err = pgx.ForEachRow(rows, []any{&name, &special}, func() error {
			used[name] = true
			if special != "" {
				used[special] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, d := range store.DefaultMailboxes {
			if used[d.Name] || (d.SpecialUse != "" && used[d.SpecialUse]) {
				continue
			}
			if _, err := createMailbox(ctx, tx, uid, d.Name, d.SpecialUse); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ensure user %q: %w", user, err)
	}
	return nil
}

// lockUser returns the id of user and locks its row against concurrent
// changes of its counters (quota, UIDVALIDITY). Every transaction that
// locks a user row does so before locking mailbox rows, so that two
// transactions never wait for each other.
func lockUser(ctx context.Context, tx pgx.Tx, user string) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, "SELECT id FROM users WHERE name = $1 FOR NO KEY UPDATE", user).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNoSuchUser
	}
	return id, err
}

// createMailbox creates a mailbox with a UIDVALIDITY above every one the
// user had, so that a mailbox deleted and created again never reuses one.
// The caller holds the user's row lock.
func createMailbox(ctx context.Context, tx pgx.Tx, userID int64, name, specialUse string) (uint64, error) {
	var id int64
	err := tx.QueryRow(ctx, `WITH v AS (
			UPDATE users SET last_uidvalidity = greatest(last_uidvalidity + 1, extract(epoch FROM now())::bigint)
			WHERE id = $1 RETURNING last_uidvalidity)
		INSERT INTO mailboxes (user_id, name, uidvalidity, special_use)
		SELECT $1, $2, v.last_uidvalidity, $3 FROM v
		RETURNING id`, userID, name, specialUse).Scan(&id)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return 0, fmt.Errorf("%w: %q", store.ErrMailboxExists, name)
	}
	return uint64(id), err
}

// CreateMailbox creates a mailbox, subscribed, with an optional special-use
// attribute.
func (s *Store) CreateMailbox(ctx context.Context, user, name, specialUse string) error {
	name, err := normalizeMailbox(name)
	if err == nil {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			uid, err := lockUser(ctx, tx, user)
			if err != nil {
				return err
			}
			_, err = createMailbox(ctx, tx, uid, name, specialUse)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("create mailbox %q of %q: %w", name, user, err)
	}
	return nil
}

const mailboxColumns = "m.id, m.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.special_use, m.subscribed, m.messages, m.size"

func scanMailbox(row pgx.Row) (Mailbox, error) {
	var mb Mailbox
	var id, uidValidity, uidNext, modseq, messages int64
	err := row.Scan(&id, &mb.Name, &uidValidity, &uidNext, &modseq, &mb.SpecialUse, &mb.Subscribed, &messages, &mb.Size)
	mb.ID, mb.UIDValidity, mb.UIDNext, mb.ModSeq, mb.Messages = uint64(id), uint32(uidValidity), uint32(uidNext), uint64(modseq), int(messages)
	return mb, err
}

// Mailboxes returns the mailboxes of user, sorted by name (INBOX first).
func (s *Store) Mailboxes(ctx context.Context, user string) ([]Mailbox, error) {
	var out []Mailbox
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM users WHERE name = $1", user).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNoSuchUser
		}
		rows, err := tx.Query(ctx, "SELECT "+mailboxColumns+" FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE u.name = $1", user)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Mailbox, error) { return scanMailbox(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list mailboxes of %q: %w", user, err)
	}
	// Sorted here, byte-wise as server/store does, whatever the
	// database's collation.
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Name == store.Inbox) != (out[j].Name == store.Inbox) {
			return out[i].Name == store.Inbox
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Mailbox returns one mailbox of user.
func (s *Store) Mailbox(ctx context.Context, user, name string) (Mailbox, error) {
	mb, err := s.mailbox(ctx, s.pool, user, name)
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailbox %q of %q: %w", name, user, err)
	}
	return mb, nil
}

type querier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

func (s *Store) mailbox(ctx context.Context, q querier, user, name string) (Mailbox, error) {
	name, err := normalizeMailbox(name)
	if err != nil {
		return Mailbox{}, err
	}
	mb, err := scanMailbox(q.QueryRow(ctx, "SELECT "+mailboxColumns+" FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE u.name = $1 AND m.name = $2", user, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name)
	}
	return mb, err
}
