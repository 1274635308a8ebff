package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Several nodes, one throttle.
//
// With AuthenticatorOptions.SharedFailures the failures of a client
// address ("ip:<key>") and of an account ("user:<address>") are also
// written to a store every node reads: before an attempt, a node reads
// the recent failures of its address and account (one query) and counts
// the larger of its own and the shared ones, so a password guesser gets
// MaxFailures attempts per Window across all nodes, and the failure
// delay grows with the failures made on any node. Attempts in flight
// count too, across nodes: before verifying a password a node reserves a
// failure of the address (FailureStore.Reserve, atomic across nodes),
// refused once the address has MaxFailures, so that a burst spread over
// the nodes gets MaxFailures verifications in all; the reservation stays
// as the failure, or is deleted when the password was right. An
// account's failure is written before its answer is sent. When the store
// cannot be read or written, the node logs it and falls back to its own
// counters (a database outage must not lock every user out).
//
// The successful-login cache stays per node: it gives the same answers
// on every node because an entry is keyed by an HMAC of (scope, user,
// password) and is valid only while the user's current hash (and app
// password, and its scopes) is the one it was verified against. A
// password change reaches every node as a configuration reload
// (Update), which drops the entries of the changed users there, so no
// node accepts an old password once it has the new configuration, and
// the lockout is checked before the cache on every node.

// FailureStore keeps authentication failures for several nodes.
type FailureStore interface {
	// AddFailure records one failure of each key at at; failures at or
	// before expired may be forgotten.
	AddFailure(ctx context.Context, keys []string, at, expired time.Time) error
	// RecentFailures returns the failures of each key after since, oldest
	// first (at most the latest 64 of each key).
	RecentFailures(ctx context.Context, keys []string, since time.Time) (map[string][]time.Time, error)
	// Reserve records a failure of key at at if key has fewer than limit
	// failures after since, atomically with respect to every node, and
	// returns its id (0 when the limit was reached) and key's failures
	// after since, oldest first, the new one included.
	Reserve(ctx context.Context, key string, at, since time.Time, limit int) (int64, []time.Time, error)
	// Unreserve deletes a reserved failure: the attempt succeeded.
	Unreserve(ctx context.Context, id int64) error
}

type sharedCounts struct {
	ip, acct []time.Time
}

// sharedTimeout bounds each query to the shared store.
const sharedTimeout = 2 * time.Second

// sharedFailures reads the shared failures of ip and user.
func (a *Authenticator) sharedFailures(ctx context.Context, ip, user string) sharedCounts {
	s := a.opts.SharedFailures
	if s == nil {
		return sharedCounts{}
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	got, err := s.RecentFailures(ctx, []string{"ip:" + ip, "user:" + user}, a.opts.Now().Add(-a.opts.Window))
	if err != nil {
		a.opts.Logger.Warn("read shared login failures, counting this node's only", "ip", ip, "err", err)
		return sharedCounts{}
	}
	return sharedCounts{ip: got["ip:"+ip], acct: got["user:"+user]}
}

// reserve reserves a failure of ip before a verification. It returns
// the reservation (0: none, no shared store or it failed) or, when the
// address has no failures left on any node, the lockout.
func (a *Authenticator) reserve(ctx context.Context, ip string) (int64, *LockoutError) {
	s := a.opts.SharedFailures
	if s == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	now := a.opts.Now()
	id, recent, err := s.Reserve(ctx, "ip:"+ip, now, now.Add(-a.opts.Window), a.opts.MaxFailures)
	if err != nil {
		a.opts.Logger.Warn("reserve a shared login attempt, counting this node's only", "ip", ip, "err", err)
		return 0, nil
	}
	if id == 0 {
		f := lastN(recent, a.opts.MaxFailures)
		retry := f[0].Add(a.opts.Window).Sub(now).Round(time.Second)
		a.opts.Logger.Warn("auth refused: too many failures on the nodes", "ip", ip, "retry_in", retry)
		return 0, &LockoutError{RetryIn: retry}
	}
	return id, nil
}

// unreserve drops a reservation that was no failure.
func (a *Authenticator) unreserve(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	if err := a.opts.SharedFailures.Unreserve(ctx, id); err != nil {
		a.opts.Logger.Warn("drop a shared login attempt", "err", err)
	}
}

// shareFailure writes a failure of ip (unless ipDone: its reservation is
// the failure) and of user, when it is one.
func (a *Authenticator) shareFailure(ip, user string, isUser, ipDone bool) {
	s := a.opts.SharedFailures
	if s == nil {
		return
	}
	var keys []string
	if !ipDone {
		keys = append(keys, "ip:"+ip)
	}
	if isUser {
		keys = append(keys, "user:"+user)
	}
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	now := a.opts.Now()
	if err := s.AddFailure(ctx, keys, now, now.Add(-a.opts.Window)); err != nil {
		a.opts.Logger.Warn("record shared login failure", "ip", ip, "err", err)
	}
}

// lastN returns the last n elements of f.
func lastN(f []time.Time, n int) []time.Time {
	if len(f) > n {
		return f[len(f)-n:]
	}
	return f
}

// PostgresFailures is a FailureStore in the table auth_failures of a
// PostgreSQL database (schema of server/pgstore, migrated beforehand).
type PostgresFailures struct {
	pool *pgxpool.Pool

	mu    sync.Mutex
	swept time.Time
}

// NewPostgresFailures returns the failure store of pool (which stays the
// caller's to close).
func NewPostgresFailures(pool *pgxpool.Pool) *PostgresFailures {
	return &PostgresFailures{pool: pool}
}

// AddFailure inserts the failures and deletes the expired ones of keys,
// and about once a minute the expired ones of every key.
func (p *PostgresFailures) AddFailure(ctx context.Context, keys []string, at, expired time.Time) error {
	batch := &pgx.Batch{}
	batch.Queue("INSERT INTO auth_failures (key, at) SELECT k, $2 FROM unnest($1::text[]) AS k", keys, at)
	batch.Queue("DELETE FROM auth_failures WHERE key = ANY($1) AND at <= $2", keys, expired)
	p.mu.Lock()
	if time.Since(p.swept) > time.Minute {
		p.swept = time.Now()
		batch.Queue("DELETE FROM auth_failures WHERE at <= $1", expired)
	}
	p.mu.Unlock()
	if err := p.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record login failure: %w", err)
	}
	return nil
}

// RecentFailures reads the latest 64 failures of each key after since.
func (p *PostgresFailures) RecentFailures(ctx context.Context, keys []string, since time.Time) (map[string][]time.Time, error) {
	rows, err := p.pool.Query(ctx, `SELECT key, at FROM (
			SELECT key, at, row_number() OVER (PARTITION BY key ORDER BY at DESC) AS n
			FROM auth_failures WHERE key = ANY($1) AND at > $2) AS recent
		WHERE n <= 64 ORDER BY at`, keys, since)
	if err != nil {
		return nil, fmt.Errorf("read login failures: %w", err)
	}
	defer rows.Close()
	out := map[string][]time.Time{}
	for rows.Next() {
		var k string
		var t time.Time
		if err := rows.Scan(&k, &t); err != nil {
			return nil, fmt.Errorf("read login failures: %w", err)
		}
		out[k] = append(out[k], t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read login failures: %w", err)
	}
	return out, nil
}

// authLockClass is the first key of the advisory locks that serialise
// reservations of one key (the second is the key's hash).
const authLockClass = 0x61757468 // "auth"

// Reserve takes a transaction-level advisory lock on key, so that nodes
// reserving for one key take turns, counts key's failures and inserts one
// if below limit. The transaction's statements go in one batch, one round
// trip to the database (a login that is not remembered makes three: the
// failures read, Reserve and Unreserve). Under READ COMMITTED each
// statement sees what was committed before it started, so the count made
// once the lock is held sees every reservation made before it.
func (p *PostgresFailures) Reserve(ctx context.Context, key string, at, since time.Time, limit int) (int64, []time.Time, error) {
	var id int64
	var recent []time.Time
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT pg_advisory_xact_lock($1, hashtext($2))", authLockClass, key)
	b.Queue(`INSERT INTO auth_failures (key, at) SELECT $1, $2
		WHERE (SELECT count(*) FROM auth_failures WHERE key = $1 AND at > $3) < $4 RETURNING id`, key, at, since, limit).
		Query(func(rows pgx.Rows) error {
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if len(ids) == 1 {
				id = ids[0]
			}
			return err
		})
	b.Queue("SELECT at FROM auth_failures WHERE key = $1 AND at > $2 ORDER BY at", key, since).
		Query(func(rows pgx.Rows) error {
			var err error
			recent, err = pgx.CollectRows(rows, pgx.RowTo[time.Time])
			return err
		})
	b.Queue("COMMIT")
	// On an error the connection is left in a failed transaction: the
	// pool closes it rather than reuse it.
	if err := p.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, nil, fmt.Errorf("reserve a login attempt: %w", err)
	}
	return id, recent, nil
}

// Unreserve deletes a reservation.
func (p *PostgresFailures) Unreserve(ctx context.Context, id int64) error {
	if _, err := p.pool.Exec(ctx, "DELETE FROM auth_failures WHERE id = $1", id); err != nil {
		return fmt.Errorf("drop a login attempt: %w", err)
	}
	return nil
}
