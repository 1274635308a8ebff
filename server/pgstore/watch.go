package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	b, err := json.Marshal(changeNote{User: user, Mailbox: mailboxID})
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", channel, string(b)); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
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
// connects again after losing it.
type listener struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startListener connects and LISTENs before it returns, so that every
// change committed after Open returns reaches the watchers.
func startListener(ctx context.Context, s *Store) (*listener, error) {
	conn, err := listen(ctx, s.url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: change feed: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &listener{cancel: cancel, done: make(chan struct{})}
	go l.run(lctx, s, conn)
	return l, nil
}

func listen(ctx context.Context, url string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

func (l *listener) run(ctx context.Context, s *Store, conn *pgx.Conn) {
	defer close(l.done)
	backoff := 100 * time.Millisecond
	for {
		for conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			if conn, err = listen(ctx, s.url); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.logger.Warn("pgstore: change feed: reconnect", "err", err)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			s.logger.Info("pgstore: change feed reconnected")
		}
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return
			}
			s.logger.Warn("pgstore: change feed lost; changes made until it is back are not announced", "err", err)
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
