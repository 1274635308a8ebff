package queue

// The shared backend: the queue in PostgreSQL (tables of
// server/pgstore/migrations/0003_queue.sql), for several `mailctl serve`
// nodes on one database.
//
// Enqueue writes the body (bytea in queue_bodies), the records
// (queue_messages, one per destination domain) and their recipients
// (queue_recipients) in one transaction: a record is never visible
// without its body, and Enqueue returns nil only after the COMMIT (the
// database must keep synchronous_commit on, its default).
//
// Nodes share the work with leases. A node's scheduler claims due
// records with SELECT ... FOR UPDATE SKIP LOCKED (claimers never wait for
// each other nor take the same row) and stamps them with its name
// (lease_owner), a token drawn for this claim (lease_token) and an expiry
// (lease_until = now() + Options.LeaseTime, the database's clock, so that
// the nodes' clocks need not agree). While it sends, the node renews the
// lease every third of LeaseTime; a renewal refused (the token changed),
// or no successful renewal for a whole LeaseTime (database unreachable),
// aborts the attempt. A record whose lease expired (its node died or was
// cut off) is claimable by any node, so a dead node's messages are taken
// over when its lease expires (the scheduler wakes then). New records,
// Retry and released leases also wake every node at once: they run
// pg_notify on the channel mailctl_queue, delivered at COMMIT to each
// node's listening connection (a missed notification costs one poll).
//
// An outcome is recorded, in one transaction, only when the record still
// holds the token of the claim (SELECT ... FOR UPDATE, then the update,
// the removal of a finished record and of its body once no record refers
// to it, and the DSNs with their body); otherwise it is dropped
// (errLeaseLost) and the new holder's outcome counts. A node shutting
// down releases the leases of the attempts it interrupted.
//
// Delivery is at least once, never at most once: a recipient accepted by
// the remote server is sent again only when its node died (or lost its
// lease) between the remote server's 250 reply and the COMMIT that
// records it, a window of one round trip to the database in normal
// operation. A failed COMMIT (database restarting) is retried for half
// of LeaseTime, while the lease is surely still ours; a database
// unreachable for longer leaves the record leased, and it is sent again
// once the lease expired. What a node recorded is never sent again: the
// record is gone, or its recipients are marked delivered, before any
// other node can claim it.
//
// Limits are per node: Options.Workers and MaxPerDestination bound each
// node's deliveries (N nodes may open N times MaxPerDestination
// connections to one destination), and the warm-up ramp counts each
// node's direct deliveries apart (queue_warmup, keyed by Node: each node
// sends from its own addresses).
//
// Bodies are held in memory while they are enqueued and sent (bytea is
// read whole): the SMTP message size limit bounds them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type pgBackend struct {
	pool      *pgxpool.Pool
	node      string
	leaseTime time.Duration
	log       *slog.Logger

	mu     sync.Mutex
	staged map[string][]byte // bodies written by writeBody, inserted with their records
}

func openPG(ctx context.Context, pool *pgxpool.Pool, node string, leaseTime time.Duration, log *slog.Logger) (*pgBackend, error) {
	var ok bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('queue_messages') IS NOT NULL").Scan(&ok); err != nil {
		return nil, fmt.Errorf("queue: open in PostgreSQL: %w", err)
	}
	if !ok {
		return nil, errors.New("queue: open in PostgreSQL: no table queue_messages (migrate the database first)")
	}
	return &pgBackend{pool: pool, node: node, leaseTime: leaseTime, log: log, staged: map[string][]byte{}}, nil
}

// close leaves the pool open: it is the caller's.
func (p *pgBackend) close() error { return nil }

func (p *pgBackend) writeBody(ctx context.Context, body io.Reader, signer Signer) (string, int64, string, error) {
	b, err := io.ReadAll(ctxReader{ctx, body})
	if err != nil {
		return "", 0, "", fmt.Errorf("queue: read message: %w", err)
	}
	sig := ""
	if signer != nil {
		if sig, err = signer.Sign(bytes.NewReader(b)); err != nil {
			return "", 0, "", fmt.Errorf("queue: %w", err)
		}
	}
	blob := newID()
	p.mu.Lock()
	p.staged[blob] = b
	p.mu.Unlock()
	return blob, int64(len(b)), sig, nil
}

func (p *pgBackend) dropBody(blob string) {
	p.mu.Lock()
	delete(p.staged, blob)
	p.mu.Unlock()
}

// takeStaged returns and forgets a staged body.
func (p *pgBackend) takeStaged(blob string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.staged[blob]
	if !ok {
		return nil, fmt.Errorf("queue: body %s was not staged", blob)
	}
	delete(p.staged, blob)
	return b, nil
}

// queueInsert adds the statements inserting a body and its records to batch.
func queueInsert(batch *pgx.Batch, blob string, body []byte, msgs []*Message) {
	batch.Queue("INSERT INTO queue_bodies (id, body) VALUES ($1, $2)", blob, body)
	for _, m := range msgs {
		batch.Queue(`INSERT INTO queue_messages (id, body_id, sender, domain, dkim, size, created, next,
			attempts, last_error, delay_notified, is_dsn, smtputf8)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			m.ID, m.Blob, m.From, m.Domain, m.DKIM, m.Size, m.Created, m.Next,
			m.Attempts, m.LastError, m.DelayNotified, m.IsDSN, m.SMTPUTF8)
		for i, r := range m.Rcpts {
			batch.Queue(`INSERT INTO queue_recipients (message_id, ord, addr, state, status, diagnostic, remote_mta)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, m.ID, i, r.Addr, r.State, r.Status, r.Diagnostic, r.RemoteMTA)
		}
	}
}

func (p *pgBackend) insert(ctx context.Context, msgs []*Message, blob string) error {
	body, err := p.takeStaged(blob)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		queueInsert(batch, blob, body, msgs)
		batch.Queue(notifySQL)
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("queue: commit in PostgreSQL: %w", err)
	}
	return nil
}

const messageColumns = `id, body_id, sender, domain, dkim, size, created, next, attempts, last_error,
	delay_notified, is_dsn, smtputf8`

func scanMessage(row pgx.Row) (*Message, error) {
	var m Message
	err := row.Scan(&m.ID, &m.Blob, &m.From, &m.Domain, &m.DKIM, &m.Size, &m.Created, &m.Next,
		&m.Attempts, &m.LastError, &m.DelayNotified, &m.IsDSN, &m.SMTPUTF8)
	return &m, err
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// loadRecipients fills the recipients of msgs (by id).
func loadRecipients(ctx context.Context, q querier, msgs map[string]*Message) error {
	ids := make([]string, 0, len(msgs))
	for id := range msgs {
		ids = append(ids, id)
	}
	rows, err := q.Query(ctx, `SELECT message_id, addr, state, status, diagnostic, remote_mta
		FROM queue_recipients WHERE message_id = ANY($1) ORDER BY message_id, ord`, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var r Recipient
		if err := rows.Scan(&id, &r.Addr, &r.State, &r.Status, &r.Diagnostic, &r.RemoteMTA); err != nil {
			return err
		}
		if m := msgs[id]; m != nil {
			m.Rcpts = append(m.Rcpts, r)
		}
	}
	return rows.Err()
}

func (p *pgBackend) get(ctx context.Context, id string) (*Message, error) {
	m, err := scanMessage(p.pool.QueryRow(ctx, "SELECT "+messageColumns+" FROM queue_messages WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read queue record %s: %w", id, err)
	}
	if err := loadRecipients(ctx, p.pool, map[string]*Message{id: m}); err != nil {
		return nil, fmt.Errorf("read queue record %s: %w", id, err)
	}
	return m, nil
}

type memBody struct{ *bytes.Reader }

func (memBody) Close() error { return nil }

func (p *pgBackend) openBody(ctx context.Context, m *Message) (bodyReader, error) {
	var b []byte
	if err := p.pool.QueryRow(ctx, "SELECT body FROM queue_bodies WHERE id = $1", m.Blob).Scan(&b); err != nil {
		return nil, fmt.Errorf("read body %s: %w", m.Blob, err)
	}
	return memBody{bytes.NewReader(b)}, nil
}

// dropUnreferenced deletes body blob when no record refers to it. The
// body's row is locked first, so that two transactions removing the last
// two records of one body cannot both see the other's record still there.
func dropUnreferenced(ctx context.Context, tx pgx.Tx, blob string) error {
	if _, err := tx.Exec(ctx, "SELECT 1 FROM queue_bodies WHERE id = $1 FOR UPDATE", blob); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM queue_bodies WHERE id = $1
		AND NOT EXISTS (SELECT 1 FROM queue_messages WHERE body_id = $1)`, blob)
	return err
}

func (p *pgBackend) settle(ctx context.Context, l *lease, m, nm *Message, done bool, dsn []*Message, dsnBlob string) error {
	if l == nil {
		return errors.New("queue: outcome without a lease")
	}
	var dsnBody []byte
	if dsnBlob != "" {
		var err error
		if dsnBody, err = p.takeStaged(dsnBlob); err != nil {
			return err
		}
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var token *string
		err := tx.QueryRow(ctx, "SELECT lease_token FROM queue_messages WHERE id = $1 FOR UPDATE", m.ID).Scan(&token)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if token == nil || *token != l.token {
			return errLeaseLost
		}
		if done {
			if _, err := tx.Exec(ctx, "DELETE FROM queue_messages WHERE id = $1", m.ID); err != nil {
				return err
			}
			if err := dropUnreferenced(ctx, tx, m.Blob); err != nil {
				return err
			}
		} else {
			batch := &pgx.Batch{}
			batch.Queue(`UPDATE queue_messages SET next = $2, attempts = $3, last_error = $4, delay_notified = $5,
				lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE id = $1`,
				m.ID, nm.Next, nm.Attempts, nm.LastError, nm.DelayNotified)
			for i, r := range nm.Rcpts {
				if i < len(m.Rcpts) && r == m.Rcpts[i] {
					continue
				}
				batch.Queue(`UPDATE queue_recipients SET state = $3, status = $4, diagnostic = $5, remote_mta = $6
					WHERE message_id = $1 AND ord = $2`, m.ID, i, r.State, r.Status, r.Diagnostic, r.RemoteMTA)
			}
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return err
			}
		}
		if dsnBlob != "" {
			batch := &pgx.Batch{}
			queueInsert(batch, dsnBlob, dsnBody, dsn)
			batch.Queue(notifySQL)
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (p *pgBackend) list(ctx context.Context) ([]Message, error) {
	rows, err := p.pool.Query(ctx, "SELECT "+messageColumns+" FROM queue_messages")
	if err != nil {
		return nil, err
	}
	byID := map[string]*Message{}
	var order []*Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		byID[m.ID] = m
		order = append(order, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := loadRecipients(ctx, p.pool, byID); err != nil {
		return nil, err
	}
	out := make([]Message, len(order))
	for i, m := range order {
		out[i] = *m
	}
	sortMessages(out)
	return out, nil
}

func (p *pgBackend) count(ctx context.Context) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, "SELECT count(*) FROM queue_messages").Scan(&n)
	return n, err
}

func (p *pgBackend) retry(ctx context.Context, id string, now time.Time) ([]string, error) {
	var ids []string
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "UPDATE queue_messages SET next = $2 WHERE $1 = '' OR id = $1 RETURNING id", id, now)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, notifySQL)
		return err
	})
	if err != nil {
		return nil, err
	}
	if id != "" && len(ids) == 0 {
		return nil, ErrNotFound
	}
	return ids, nil
}

func (p *pgBackend) remove(ctx context.Context, id string) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var blob string
		err := tx.QueryRow(ctx, "DELETE FROM queue_messages WHERE id = $1 RETURNING body_id", id).Scan(&blob)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return dropUnreferenced(ctx, tx, blob)
	})
}

// warmupAllow keeps the ramp's counters per node: each node sends from its
// own addresses.
func (p *pgBackend) warmupAllow(ctx context.Context, now time.Time, w Warmup) (bool, error) {
	start, err := p.warmupStart(ctx, now, w, true)
	if err != nil {
		return true, err
	}
	limit := WarmupCap(start, now, w.Weeks)
	if limit < 0 {
		return true, nil
	}
	// One statement: count the delivery only while below the cap.
	rows, err := p.pool.Query(ctx, `INSERT INTO queue_warmup (node, key, value) VALUES ($1, $2, '1')
		ON CONFLICT (node, key) DO UPDATE SET value = (queue_warmup.value::int + 1)::text
		WHERE queue_warmup.value::int < $3 RETURNING value`, p.node, "day:"+now.UTC().Format(time.DateOnly), limit)
	if err != nil {
		return true, err
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return true, err
	}
	return len(vals) > 0, nil
}

// warmupStart returns the ramp's start: w.Start, or the first direct
// delivery's time remembered (stored when store is set).
func (p *pgBackend) warmupStart(ctx context.Context, now time.Time, w Warmup, store bool) (time.Time, error) {
	if !w.Start.IsZero() {
		return w.Start, nil
	}
	v, _ := now.UTC().MarshalText()
	if store {
		if _, err := p.pool.Exec(ctx, `INSERT INTO queue_warmup (node, key, value) VALUES ($1, 'start', $2)
			ON CONFLICT DO NOTHING`, p.node, string(v)); err != nil {
			return time.Time{}, err
		}
	}
	var s string
	err := p.pool.QueryRow(ctx, "SELECT value FROM queue_warmup WHERE node = $1 AND key = 'start'", p.node).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return now, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	var start time.Time
	if err := start.UnmarshalText([]byte(s)); err != nil {
		return time.Time{}, fmt.Errorf("decode warm-up start: %w", err)
	}
	return start, nil
}

func (p *pgBackend) warmupStatus(ctx context.Context, now time.Time, w Warmup) (sent, limit int, err error) {
	start, err := p.warmupStart(ctx, now, w, false)
	if err != nil {
		return 0, -1, err
	}
	var s string
	err = p.pool.QueryRow(ctx, "SELECT value FROM queue_warmup WHERE node = $1 AND key = $2",
		p.node, "day:"+now.UTC().Format(time.DateOnly)).Scan(&s)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, -1, err
	}
	sent, _ = strconv.Atoi(s)
	return sent, WarmupCap(start, now, w.Weeks), nil
}

// claimed is a record a node claimed.
type claimed struct {
	lease
	domain string
}

// claim leases up to n records due at now whose lease is free or
// expired, skipping the rows other nodes are claiming (SKIP LOCKED) and
// those pick refuses (per-destination limit).
func (p *pgBackend) claim(ctx context.Context, now time.Time, n int, pick func(domain string) bool) ([]claimed, error) {
	var out []claimed
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT id, domain FROM queue_messages
			WHERE next <= $1 AND (lease_until IS NULL OR lease_until < now())
			ORDER BY next, id LIMIT $2 FOR UPDATE SKIP LOCKED`, now, 4*n)
		if err != nil {
			return err
		}
		token := newID()
		var ids []string
		for rows.Next() {
			var c claimed
			if err := rows.Scan(&c.id, &c.domain); err != nil {
				rows.Close()
				return err
			}
			if len(out) < n && pick(c.domain) {
				c.token = token
				out = append(out, c)
				ids = append(ids, c.id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE queue_messages SET lease_owner = $2, lease_token = $3,
			lease_until = now() + $4 * interval '1 millisecond' WHERE id = ANY($1)`,
			ids, p.node, token, p.leaseTime.Milliseconds())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim queued messages: %w", err)
	}
	return out, nil
}

// nextDue returns when the scheduler should look again: the earliest
// next attempt of the records not leased, or the expiry of a lease
// (its node may have died: the record is then taken over then, not a
// poll later). A lease's expiry, on the database's clock, is turned into
// the node's clock (now) by its distance from the database's now(), plus
// a margin so that the claim that follows finds it expired.
func (p *pgBackend) nextDue(ctx context.Context, now time.Time) (time.Time, bool, error) {
	var t *time.Time
	err := p.pool.QueryRow(ctx, `SELECT min(CASE WHEN lease_until IS NULL OR lease_until < now() THEN next
			ELSE greatest(next, $1::timestamptz + (lease_until - now()) + interval '100 milliseconds') END)
		FROM queue_messages`, now).Scan(&t)
	if err != nil || t == nil {
		return time.Time{}, false, err
	}
	return *t, true, nil
}

// renew extends a lease; false when it is no longer ours.
func (p *pgBackend) renew(ctx context.Context, l *lease) (bool, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE queue_messages SET lease_until = now() + $3 * interval '1 millisecond'
		WHERE id = $1 AND lease_token = $2`, l.id, l.token, p.leaseTime.Milliseconds())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// release gives a lease up, so that any node may claim the record now.
func (p *pgBackend) release(ctx context.Context, l *lease) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE queue_messages SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
			WHERE id = $1 AND lease_token = $2`, l.id, l.token); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, notifySQL)
		return err
	})
	if err != nil {
		p.log.Warn("release lease", "id", l.id, "err", err)
	}
}

// notifyChannel carries "records became due" to every node.
const (
	notifyChannel = "mailctl_queue"
	notifySQL     = "SELECT pg_notify('" + notifyChannel + "', '')"
)

// listen calls kick for every notification on notifyChannel until ctx is
// done, on a connection of its own (taken out of the pool), reconnecting
// after a pause when it breaks; it kicks after each (re)connection too,
// for what it may have missed.
func (p *pgBackend) listen(ctx context.Context, kick func()) {
	for ctx.Err() == nil {
		err := p.listenOnce(ctx, kick)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("queue notifications interrupted, reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (p *pgBackend) listenOnce(ctx context.Context, kick func()) error {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := c.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	kick()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		kick()
	}
}

// keepLease renews l every third of the lease time until stop is called.
// The returned context is cancelled when the lease is lost, or could not
// be renewed for a whole lease time.
func (p *pgBackend) keepLease(ctx context.Context, log logger, l *lease) (context.Context, func()) {
	dctx, cancel := context.WithCancel(ctx)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.leaseTime / 3)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-quit:
				return
			case <-dctx.Done():
				return
			case <-t.C:
			}
			rctx, rcancel := context.WithTimeout(dctx, p.leaseTime/3)
			ok, err := p.renew(rctx, l)
			rcancel()
			switch {
			case err == nil && ok:
				last = time.Now()
			case err == nil:
				log.Warn("lease lost to another node, attempt aborted")
				cancel()
				return
			case time.Since(last) >= p.leaseTime:
				log.Error("lease not renewed for a whole lease time, attempt aborted", "err", err)
				cancel()
				return
			default:
				log.Warn("renew lease", "err", err)
			}
		}
	}()
	var once sync.Once
	return dctx, func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}

// dispatchClaims is dispatch for the shared queue: it claims what this
// node has free workers for and starts those deliveries.
func (q *Queue) dispatchClaims(ctx context.Context) time.Duration {
	now := q.opts.Clock.Now()
	wait := q.opts.PollInterval
	q.mu.Lock()
	free := q.opts.Workers - q.active
	counts := maps.Clone(q.perDest)
	q.mu.Unlock()
	if free > 0 {
		// Only Run's goroutine starts deliveries: the counts can only
		// have dropped since they were copied.
		cs, err := q.pg.claim(ctx, now, free, func(domain string) bool {
			if counts[domain] >= q.opts.MaxPerDestination {
				return false
			}
			counts[domain]++
			return true
		})
		if err != nil {
			if ctx.Err() == nil {
				q.log.Error("claim queued messages", "err", err)
			}
			return wait
		}
		q.mu.Lock()
		for _, c := range cs {
			q.active++
			q.perDest[c.domain]++
			q.wg.Add(1)
			go func(c claimed) {
				defer q.wg.Done()
				q.attempt(ctx, c.id, &c.lease)
				q.mu.Lock()
				q.active--
				if q.perDest[c.domain]--; q.perDest[c.domain] <= 0 {
					delete(q.perDest, c.domain)
				}
				q.mu.Unlock()
				q.Kick()
			}(c)
		}
		q.mu.Unlock()
	}
	if next, ok, err := q.pg.nextDue(ctx, now); err == nil && ok && next.After(now) {
		wait = min(wait, next.Sub(now))
	}
	return max(wait, time.Millisecond)
}
