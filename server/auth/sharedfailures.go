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
// delay grows with the failures made on any node. A failure is written
// before its answer is sent. The attempts in flight stay counted per
// node: a burst spread over N nodes at the same instant may have up to
// N*MaxFailures verifications in flight before the first failures are
// written, then every node refuses. When the store cannot be read or
// written, the node logs it and falls back to its own counters (a
// database outage must not lock every user out).
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

// shareFailure writes a failure of ip (and of user, when it is one).
func (a *Authenticator) shareFailure(ip, user string, isUser bool) {
	s := a.opts.SharedFailures
	if s == nil {
		return
	}
	keys := []string{"ip:" + ip}
	if isUser {
		keys = append(keys, "user:"+user)
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
