package auth_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/pgstore"
)

// roundTrips counts the round trips to the database of a pool's
// connections: one per statement sent alone (BEGIN and COMMIT included),
// one per batch.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestSharedFailuresLoginRoundTrips: with the failure counters shared in
// PostgreSQL, a login verified (not remembered) costs three round trips
// (the failures read, the reservation, its deletion; the reservation was
// five: BEGIN, lock, count, insert, COMMIT), a remembered one one (the
// failures read, which keeps the lockout ahead of the cache); the lockout
// still comes after MaxFailures.
func TestSharedFailuresLoginRoundTrips(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cheap := auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	users := []auth.User{{Address: "alice@example.org", PasswordHash: hashWith(t, "right", cheap)}}
	const maxFailures = 3
	a, err := auth.NewAuthenticator(users, auth.AuthenticatorOptions{MaxFailures: maxFailures, Window: 10 * time.Minute,
		FailureDelay: -1, Logger: quiet, SharedFailures: auth.NewPostgresFailures(pool)})
	if err != nil {
		t.Fatal(err)
	}
	login := func(pw, ip string) (int64, error) {
		t.Helper()
		before := rt.n.Load()
		_, err := a.Authenticate(ctx, "alice@example.org", pw, addr(ip))
		return rt.n.Load() - before, err
	}
	if n, err := login("right", "192.0.2.1"); err != nil || n != 3 {
		t.Errorf("first login: %d round trips, %v; want 3, success", n, err)
	}
	if n, err := login("right", "192.0.2.1"); err != nil || n != 1 {
		t.Errorf("remembered login: %d round trips, %v; want 1, success", n, err)
	}
	for i := range maxFailures {
		if _, err := login("wrong", "192.0.2.2"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("guess %d: %v, want invalid credentials", i, err)
		}
	}
	var le *auth.LockoutError
	if _, err := login("right", "192.0.2.2"); !errors.As(err, &le) {
		t.Errorf("right password after %d failures: %v, want a lockout", maxFailures, err)
	}
	var rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM auth_failures WHERE key = 'ip:192.0.2.2'").Scan(&rows); err != nil || rows != maxFailures {
		t.Errorf("failures of the guessing address: %d, %v; want %d", rows, err, maxFailures)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM auth_failures WHERE key = 'ip:192.0.2.1'").Scan(&rows); err != nil || rows != 0 {
		t.Errorf("failures of the address that logged in: %d, %v; want 0 (reservations dropped)", rows, err)
	}
}
