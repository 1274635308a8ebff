package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// channel is the NOTIFY channel of the change feed.
const channel = "mailctl_change"

// changeNote is the payload of a notification.
type changeNote struct {
	User    string `json:"u"`
	Mailbox uint64 `json:"m"`
}

// notify queues a notification in tx: PostgreSQL delivers it to every
// listening session, on every node, when tx commits, and never if it rolls
// back, so watchers hear of committed changes only.
func notify(ctx context.Context, tx pgx.Tx, user string, mailboxID uint64) error {
	b, err := notePayload(user, mailboxID)
	if err != nil {
		return err
	}
	// change_xid is for the catch-up of a listener that lost its
	// connection (catchUp).
	if _, err := tx.Exec(ctx, `WITH c AS (UPDATE mailboxes SET change_xid = pg_current_xact_id()::text::bigint WHERE id = $3)
		SELECT pg_notify($1, $2)`, channel, b, int64(mailboxID)); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// notePayload returns the notification of a change of a mailbox.
func notePayload(user string, mailboxID uint64) (string, error) {
	b, err := json.Marshal(changeNote{User: user, Mailbox: mailboxID})
	return string(b), err
}

// Watch registers fn to be called after every committed change of a
// mailbox made through any Store on the database, this one included
// (typically within milliseconds: NOTIFY is sent at COMMIT). fn runs on
// the feed's goroutine and must not block. The returned function
// unregisters fn.
func (s *Store) Watch(fn func(store.Change)) (cancel func()) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	s.watchSeq++
	id := s.watchSeq
	s.watchers[id] = fn
	return func() {
		s.watchMu.Lock()
		delete(s.watchers, id)
		s.watchMu.Unlock()
	}
}

func (s *Store) dispatch(c store.Change) {
	s.watchMu.RLock()
	defer s.watchMu.RUnlock()
	for _, fn := range s.watchers {
		fn(c)
	}
}

// listener holds the connection that LISTENs on the change feed; it
// connects again after losing it, and then announces every change that
// it may have missed (catchUp).
type listener struct {
	cancel context.CancelFunc
	done   chan struct{}
	pid    atomic.Uint32 // of the listening backend (tests terminate it)
	// lost, when set by tests, is called after the connection is lost,
	// before the listener connects again.
	lost atomic.Pointer[func()]
}

// startListener connects and LISTENs before it returns, so that every
// change committed after Open returns reaches the watchers.
func startListener(ctx context.Context, s *Store) (*listener, error) {
	conn, mark, err := listen(ctx, s.url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: change feed: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &listener{cancel: cancel, done: make(chan struct{})}
	l.pid.Store(conn.PgConn().PID())
	go l.run(lctx, s, conn, mark)
	return l, nil
}

// listen connects and LISTENs, and returns with the connection its mark:
// the oldest transaction id still running once the LISTEN is in effect.
// Every transaction that commits later has an id at least that high, and
// its notification reaches this connection while it lives.
func listen(ctx context.Context, url string) (*pgx.Conn, int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, 0, err
	}
	var mark int64
	if _, err = conn.Exec(ctx, "LISTEN "+channel); err == nil {
		err = conn.QueryRow(ctx, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").Scan(&mark)
	}
	if err != nil {
		conn.Close(ctx)
		return nil, 0, err
	}
	return conn, mark, nil
}

// catchUp announces, after a reconnection, a change of every mailbox
// changed by a transaction whose id is at least mark, the previous
// connection's: those that committed while no connection listened are
// among them (and some announced already, which watchers take as a
// change without news). Deleted mailboxes are told from their
// tombstones, which are dropped after a day.
func catchUp(ctx context.Context, s *Store, conn *pgx.Conn, mark int64) (int, error) {
	var changes []store.Change
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM deleted_mailboxes WHERE deleted_at < now() - interval '1 day'"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT u.name, m.id FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE m.change_xid >= $1
			UNION ALL SELECT user_name, mailbox_id FROM deleted_mailboxes WHERE change_xid >= $1`, mark)
		if err != nil {
			return err
		}
		var c store.Change
		var id int64
		_, err = pgx.ForEachRow(rows, []any{&c.User, &id}, func() error {
			c.MailboxID = uint64(id)
			changes = append(changes, c)
			return nil
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, c := range changes {
		s.dispatch(c)
	}
	return len(changes), nil
}

func (l *listener) run(ctx context.Context, s *Store, conn *pgx.Conn, mark int64) {
	defer close(l.done)
	backoff := 100 * time.Millisecond
	for {
		for conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			c, newMark, err := listen(ctx, s.url)
			if err == nil {
				var n int
				if n, err = catchUp(ctx, s, c, mark); err != nil {
					c.Close(context.Background())
				} else {
					s.logger.Info("pgstore: change feed reconnected", "mailboxes_announced", n)
					conn, mark = c, newMark
					l.pid.Store(conn.PgConn().PID())
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.logger.Warn("pgstore: change feed: reconnect", "err", err)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
		}
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return
			}
			s.logger.Warn("pgstore: change feed lost; reconnecting, then announcing what changed meanwhile", "err", err)
			if fn := l.lost.Load(); fn != nil {
				(*fn)()
			}
			continue
		}
		var note changeNote
		if err := json.Unmarshal([]byte(n.Payload), &note); err != nil {
			s.logger.Warn("pgstore: change feed: bad notification", "err", err)
			continue
		}
		s.dispatch(store.Change{User: note.User, MailboxID: note.Mailbox})
	}
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
