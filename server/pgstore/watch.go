package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// channel is the NOTIFY channel of the change feed.
const channel = "mailctl_change"

// changeNote is the payload of a notification: the user, the mailbox,
// and the id of the transaction that changed it (what it stamped in
// mailboxes.change_xid), which lets the poll (pollMissed) tell a change
// already announced from one whose notification never came.
type changeNote struct {
	User    string `json:"u"`
	Mailbox uint64 `json:"m"`
	Xid     int64  `json:"x,omitempty"`
}

// pendingNotes collects the notifications of a write transaction run by
// writeTx, sent once it has committed.
type pendingNotes struct{ notes []changeNote }

type pendingKey struct{}

// writeTx runs fn in a transaction and, after its COMMIT, sends the
// notifications that notify (or queueNote) queued in it, in one autocommit
// statement on the pool (sendNotes: from the notifier's goroutine).
//
// Why not pg_notify inside the transaction, which PostgreSQL delivers at
// COMMIT: a transaction that notifies holds a cluster-wide lock from just
// before its commit record until that record is flushed, so the commits
// of all sessions that notify are flushed one after the other, at most
// one per WAL flush (bench/RESULTS.md, BenchmarkCommit). A statement that
// only notifies writes no WAL before its commit record, so it does not
// wait for a flush and holds that lock for microseconds, and the write
// transactions' commits are grouped again.
//
// The cost: a node that dies between the COMMIT and the notification
// leaves the change unannounced; every node's poll (pollMissed) finds it
// by its change_xid stamp within pollInterval.
func (s *Store) writeTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	p := &pendingNotes{}
	tctx := context.WithValue(ctx, pendingKey{}, p)
	if err := pgx.BeginFunc(tctx, s.pool, func(tx pgx.Tx) error {
		p.notes = p.notes[:0]
		return fn(tctx, tx)
	}); err != nil {
		return err
	}
	s.sendNotes(ctx, p.notes)
	return nil
}

// queueNote queues the notification of a change made by the transaction
// xid for after the COMMIT of writeTx's transaction; it reports false when
// ctx is not writeTx's (the caller then notifies in its transaction).
func queueNote(ctx context.Context, user string, mailboxID uint64, xid int64) bool {
	p, ok := ctx.Value(pendingKey{}).(*pendingNotes)
	if ok {
		p.notes = append(p.notes, changeNote{User: user, Mailbox: mailboxID, Xid: xid})
	}
	return ok
}

// sendNotes notifies the feed of committed changes: it hands them to
// the Store's notifier, which sends them from its goroutine, or sends them
// itself on a Store made without one (tests).
func (s *Store) sendNotes(ctx context.Context, notes []changeNote) {
	if len(notes) == 0 {
		return
	}
	if s.notes != nil {
		s.notes.queue(notes)
		return
	}
	s.notifyNow(ctx, notes)
}

// notifyNow sends notes in one autocommit statement. A failure is logged
// and not returned: the changes are committed (and may have been
// acknowledged); the other nodes' polls announce them.
func (s *Store) notifyNow(ctx context.Context, notes []changeNote) {
	payloads := make([]string, 0, len(notes))
	for i, n := range notes {
		if slices.Contains(notes[:i], n) {
			continue
		}
		b, err := json.Marshal(n)
		if err != nil {
			s.logger.Warn("pgstore: change feed: encode notification", "err", err)
			return
		}
		payloads = append(payloads, string(b))
	}
	// Not cancelled with the caller's context: the change is committed.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(nctx, "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n", channel, payloads); err != nil {
		s.logger.Warn("pgstore: change feed: notify after commit (the other nodes' polls will announce it)", "err", err)
	}
}

// notifier sends the notifications of committed writes from a goroutine
// of its own: a write returns once committed, without waiting for its
// notification's round trip (a STORE of 2000 messages is then one round
// trip, systemFlagStatements), and the notifications queued meanwhile go
// in one statement. A node that dies with notifications queued leaves
// changes that every node's poll announces within pollInterval, as for a
// node that dies between a COMMIT and its notification.
type notifier struct {
	s       *Store
	mu      sync.Mutex
	pending []changeNote
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// maxPendingNotes bounds the notifications queued while the database does
// not answer; those dropped are left to the poll.
const maxPendingNotes = 10_000

func startNotifier(s *Store) *notifier {
	n := &notifier{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go n.run()
	return n
}

func (n *notifier) queue(notes []changeNote) {
	n.mu.Lock()
	if len(n.pending)+len(notes) <= maxPendingNotes {
		n.pending = append(n.pending, notes...)
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	defer close(n.done)
	for {
		select {
		case <-n.wake:
			n.flush()
		case <-n.stop:
			n.flush()
			return
		}
	}
}

func (n *notifier) flush() {
	n.mu.Lock()
	notes := n.pending
	n.pending = nil
	n.mu.Unlock()
	if len(notes) > 0 {
		n.s.notifyNow(context.Background(), notes)
	}
}

// close sends what is queued and stops the goroutine.
func (n *notifier) close() {
	n.once.Do(func() { close(n.stop) })
	<-n.done
}

// notify stamps a mailbox changed in tx with tx's id (change_xid, for the
// feed's catch-up and poll) and queues its notification for after the
// commit (writeTx); outside writeTx, it notifies in tx, delivered at
// COMMIT.
func notify(ctx context.Context, tx pgx.Tx, user string, mailboxID uint64) error {
	var xid int64
	if err := tx.QueryRow(ctx, `WITH c AS (UPDATE mailboxes SET change_xid = pg_current_xact_id()::text::bigint WHERE id = $1)
		SELECT pg_current_xact_id()::text::bigint`, int64(mailboxID)).Scan(&xid); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	if queueNote(ctx, user, mailboxID, xid) {
		return nil
	}
	b, err := json.Marshal(changeNote{User: user, Mailbox: mailboxID, Xid: xid})
	if err == nil {
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", channel, string(b))
	}
	if err != nil {
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
// connects again after losing it, and then announces every change that
// it may have missed (catchUp). Its poll announces, every pollInterval,
// the changes committed without a notification (pollMissed).
type listener struct {
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup // the LISTEN loop and the poll
	feedMu sync.Mutex     // one dispatch at a time from the feed
	// heard holds the (mailbox, transaction) of the notifications
	// received since the poll's mark: the poll skips those changes.
	heardMu sync.Mutex
	heard   map[heardKey]struct{}
	pid     atomic.Uint32 // of the listening backend (tests terminate it)
	// lost, when set by tests, is called after the connection is lost,
	// before the listener connects again.
	lost atomic.Pointer[func()]
}

// startListener connects and LISTENs before it returns, so that every
// change committed after Open returns reaches the watchers.
func startListener(ctx context.Context, s *Store) (*listener, error) {
	conn, mark, err := listen(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("pgstore: change feed: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &listener{cancel: cancel, done: make(chan struct{}), heard: map[heardKey]struct{}{}}
	l.pid.Store(conn.PgConn().PID())
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.run(lctx, s, conn, mark) }()
	go func() { defer l.wg.Done(); l.poll(lctx, s, mark) }()
	go func() { l.wg.Wait(); close(l.done) }()
	return l, nil
}

type heardKey struct {
	mailbox uint64
	xid     int64
}

// pollInterval is how often every node looks for changes committed
// without a notification: the longest a change whose writer died between
// its COMMIT and its notification stays unannounced.
var pollInterval = time.Second

// hear remembers a notification received, for the poll.
func (l *listener) hear(note changeNote) {
	if note.Xid == 0 {
		return
	}
	l.heardMu.Lock()
	defer l.heardMu.Unlock()
	if len(l.heard) >= maxHeard {
		// A long transaction holds the poll's mark back: forget, and
		// let the poll announce some changes twice.
		clear(l.heard)
	}
	l.heard[heardKey{note.Mailbox, note.Xid}] = struct{}{}
}

// maxHeard bounds the notifications remembered for the poll (~50 bytes
// each): a transaction running for minutes keeps the poll's mark, and so
// the entries above it, from moving on.
var maxHeard = 100_000

// poll runs pollMissed every pollInterval until ctx is done.
func (l *listener) poll(ctx context.Context, s *Store, mark int64) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next, err := l.pollMissed(ctx, s, mark)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.logger.Warn("pgstore: change feed: poll for unannounced changes", "err", err)
			continue
		}
		mark = next
	}
}

// pollMissed announces every mailbox stamped (or deleted) by a
// transaction whose id is at least mark and whose notification this node
// has not received: its writer committed and did not notify (it died in
// between, or its notification failed), or the notification is still on
// its way (then announced twice, which watchers take as a change without
// news). It returns the next mark: the oldest transaction still running
// in its snapshot, below which every transaction's change was seen.
// A sequential scan of mailboxes (no index on change_xid, which would
// make every delivery's UPDATE of its mailbox row a non-HOT update).
func (l *listener) pollMissed(ctx context.Context, s *Store, mark int64) (int64, error) {
	type row struct {
		c   store.Change
		xid int64
	}
	var next int64
	var rows []row
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").Scan(&next); err != nil {
			return err
		}
		rs, err := tx.Query(ctx, `SELECT u.name, m.id, m.change_xid FROM mailboxes m JOIN users u ON u.id = m.user_id WHERE m.change_xid >= $1
			UNION ALL SELECT user_name, mailbox_id, change_xid FROM deleted_mailboxes WHERE change_xid >= $1`, mark)
		if err != nil {
			return err
		}
		rows = rows[:0]
		var r row
		var id int64
		_, err = pgx.ForEachRow(rs, []any{&r.c.User, &id, &r.xid}, func() error {
			r.c.MailboxID = uint64(id)
			rows = append(rows, r)
			return nil
		})
		return err
	})
	if err != nil {
		return mark, err
	}
	var missed []store.Change
	l.heardMu.Lock()
	for _, r := range rows {
		if _, ok := l.heard[heardKey{r.c.MailboxID, r.xid}]; !ok {
			missed = append(missed, r.c)
		}
	}
	for k := range l.heard {
		if k.xid < next {
			delete(l.heard, k)
		}
	}
	l.heardMu.Unlock()
	for _, c := range missed {
		l.dispatch(s, c)
	}
	if len(missed) > 0 {
		s.logger.Debug("pgstore: change feed: poll announced changes without a notification", "mailboxes", len(missed))
	}
	return next, nil
}

// dispatch calls the watchers, from one feed goroutine at a time.
func (l *listener) dispatch(s *Store, c store.Change) {
	l.feedMu.Lock()
	defer l.feedMu.Unlock()
	s.dispatch(c)
}

// listen connects and LISTENs, and returns with the connection its mark:
// the oldest transaction id still running once the LISTEN is in effect.
// Every transaction that commits later has an id at least that high, and
// its notification reaches this connection while it lives.
//
// cfg is the pool's (a copy): the URL as pgxpool parsed it, without the
// pool's own settings (pool_max_conns), which a connection would send to
// the server as parameters.
func listen(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, int64, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
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
func (l *listener) catchUp(ctx context.Context, s *Store, conn *pgx.Conn, mark int64) (int, error) {
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
		l.dispatch(s, c)
	}
	return len(changes), nil
}

func (l *listener) run(ctx context.Context, s *Store, conn *pgx.Conn, mark int64) {
	backoff := 100 * time.Millisecond
	for {
		for conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			c, newMark, err := listen(ctx, s.pool.Config().ConnConfig)
			if err == nil {
				var n int
				if n, err = l.catchUp(ctx, s, c, mark); err != nil {
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
		l.hear(note)
		l.dispatch(s, store.Change{User: note.User, MailboxID: note.Mailbox})
	}
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
