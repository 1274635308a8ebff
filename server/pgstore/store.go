package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/store"
)

// Store is a mail store on a PostgreSQL database. Its methods are safe for
// concurrent use, and several Stores (one per node) may share a database.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	chunkSize int                                 // of new bodies (bodyChunk; tests make it smaller)
	summary   atomic.Pointer[func([]byte) []byte] // see SetHeaderSummary

	searchText atomic.Pointer[func([]byte) (string, string)] // see SetSearchText
	textOK     bool                                          // texts can be kept (keepsText)

	watchMu  sync.RWMutex
	watchers map[int]func(store.Change)
	watchSeq int
	listen   *listener // the change feed, started by Open
	notes    *notifier // sends the feed's notifications, started by Open

	bodyGrace   atomic.Int64  // a time.Duration, see SetBodyGrace
	sweepWake   chan struct{} // a new grace (SetBodyGrace)
	stopSweeper func()        // stops the sweeper started by Open (sweep.go)

	hdrCache *headerCache // of Headers and Summaries; nil: none (headercache.go)
}

// DefaultMaxConns is the size of a Store's connection pool unless the URL
// says otherwise (pool_max_conns=N). With pgxpool's own default, 4 or the
// number of CPUs, the commands of every other session of a node waited
// for a connection while four sessions ran long statements (a SEARCH BODY
// holds one for tens of milliseconds; TestOpenPoolSize).
const DefaultMaxConns = 16

// Open connects to the database at url (a PostgreSQL URL or key=value
// string, a secret: it is never logged) and checks that its schema is the
// one this binary knows (see Migrate).
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
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
	s := &Store{pool: pool, logger: logger, watchers: map[int]func(store.Change){}, chunkSize: bodyChunk,
		hdrCache: newHeaderCache(headerCacheBytes, headerCacheIdle)}
	if err := keepsText(ctx, s); err != nil {
		pool.Close()
		return nil, err
	}
	if s.listen, err = startListener(ctx, s); err != nil {
		pool.Close()
		return nil, err
	}
	s.notes = startNotifier(s)
	s.startSweeper()
	return s, nil
}

// Close stops the change feed and the sweeper of released bodies, and
// closes the connections.
func (s *Store) Close() error {
	if s.stopSweeper != nil {
		s.stopSweeper()
	}
	s.watchMu.Lock()
	l := s.listen
	s.listen = nil
	s.watchMu.Unlock()
	if l != nil {
		l.stop()
	}
	if s.hdrCache != nil {
		s.hdrCache.close()
	}
	if s.notes != nil {
		s.notes.close()
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
	if isUniqueViolation(err) {
		return 0, fmt.Errorf("%w: %q", store.ErrMailboxExists, name)
	}
	if err != nil {
		return 0, err
	}
	// A subscription kept for a mailbox of that name that went is now
	// the new mailbox's (subscribed).
	if _, err := tx.Exec(ctx, "DELETE FROM gone_subscriptions WHERE user_id = $1 AND name = $2", userID, name); err != nil {
		return 0, err
	}
	return uint64(id), nil
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
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

const mailboxColumns = "m.id, m.name, m.uidvalidity, m.uidnext, m.highestmodseq, m.special_use, m.subscribed, m.messages, m.size, m.recent_uid"

func scanMailbox(row pgx.Row) (store.Mailbox, error) {
	var mb store.Mailbox
	var id, uidValidity, uidNext, modseq, messages, recent int64
	err := row.Scan(&id, &mb.Name, &uidValidity, &uidNext, &modseq, &mb.SpecialUse, &mb.Subscribed, &messages, &mb.Size, &recent)
	mb.ID, mb.UIDValidity, mb.UIDNext, mb.ModSeq, mb.Messages = uint64(id), uint32(uidValidity), uint32(uidNext), uint64(modseq), int(messages)
	mb.RecentUID = uint32(max(recent, 1))
	return mb, err
}

// Mailboxes returns the mailboxes of user, sorted by name (INBOX first).
func (s *Store) Mailboxes(ctx context.Context, user string) ([]store.Mailbox, error) {
	var out []store.Mailbox
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
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Mailbox, error) { return scanMailbox(r) })
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
func (s *Store) Mailbox(ctx context.Context, user, name string) (store.Mailbox, error) {
	mb, err := s.mailbox(ctx, s.pool, user, name)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("mailbox %q of %q: %w", name, user, err)
	}
	return mb, nil
}

type querier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

func (s *Store) mailbox(ctx context.Context, q querier, user, name string) (store.Mailbox, error) {
	name, err := normalizeMailbox(name)
	if err != nil {
		return store.Mailbox{}, err
	}
	mb, err := scanMailbox(q.QueryRow(ctx, "SELECT "+mailboxColumns+" FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE u.name = $1 AND m.name = $2", user, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Mailbox{}, noMailbox(ctx, q, user, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name))
	}
	return mb, err
}

// noMailbox returns store.ErrNoSuchUser when user does not exist, else
// notFound: the embedded store looks the user up first.
func noMailbox(ctx context.Context, q querier, user string, notFound error) error {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM users WHERE name = $1)", user).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %q", store.ErrNoSuchUser, user)
	}
	return notFound
}

// MailboxByID returns the mailbox of user whose ID is id (stable across
// renames).
func (s *Store) MailboxByID(ctx context.Context, user string, id uint64) (store.Mailbox, error) {
	mb, err := s.mailboxByID(ctx, s.pool, user, id)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("read mailbox %d of %q: %w", id, user, err)
	}
	return mb, nil
}

func (s *Store) mailboxByID(ctx context.Context, q querier, user string, id uint64) (store.Mailbox, error) {
	mb, err := scanMailbox(q.QueryRow(ctx, "SELECT "+mailboxColumns+" FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE u.name = $1 AND m.id = $2", user, int64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Mailbox{}, noMailbox(ctx, q, user, store.ErrNoSuchMailbox)
	}
	return mb, err
}
