package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/pgstore"
)

// TestSharedFailuresTwoNodes runs two authenticators (two nodes) whose
// failure counters share one PostgreSQL database: failures made on
// either count on both, so the address is locked out after MaxFailures
// in all (each node alone saw half), until the window passes. A password
// change reaches both nodes' login caches.
func TestSharedFailuresTwoNodes(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var mu sync.Mutex
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cheap := auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	users := []auth.User{{Address: "alice@example.org", PasswordHash: hashWith(t, "right", cheap)}}
	const maxFailures = 4
	var nodes []*auth.Authenticator
	for range 2 {
		a, err := auth.NewAuthenticator(users, auth.AuthenticatorOptions{MaxFailures: maxFailures, Window: 10 * time.Minute,
			FailureDelay: -1, Logger: quiet, Now: clock, SharedFailures: auth.NewPostgresFailures(pool)})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, a)
	}
	attacker := addr("192.0.2.66")
	for i := range maxFailures {
		node := nodes[i%2]
		if _, err := node.Authenticate(ctx, "alice@example.org", "guess", attacker); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("guess %d at node %d: %v, want invalid credentials", i, i%2, err)
		}
		advance(time.Minute)
	}
	for i, node := range nodes {
		_, err := node.Authenticate(ctx, "alice@example.org", "right", attacker)
		var le *auth.LockoutError
		if !errors.As(err, &le) {
			t.Fatalf("node %d after %d failures spread over two nodes: %v, want a lockout", i, maxFailures, err)
		}
		// The first failure was 4 minutes ago: it leaves the window in 6.
		if le.RetryIn != 6*time.Minute {
			t.Errorf("node %d: retry in %s, want 6m0s", i, le.RetryIn)
		}
	}
	if v := nodes[0].Verifications() + nodes[1].Verifications(); v != maxFailures {
		t.Errorf("%d verifications on the two nodes, want %d (the lockout verifies nothing)", v, maxFailures)
	}
	// Another address is not locked out.
	if u, err := nodes[1].Authenticate(ctx, "alice@example.org", "right", addr("198.51.100.7")); err != nil || u != "alice@example.org" {
		t.Errorf("right password from another address: %q, %v", u, err)
	}
	advance(7 * time.Minute)
	if u, err := nodes[1].Authenticate(ctx, "alice@example.org", "right", attacker); err != nil || u != "alice@example.org" {
		t.Fatalf("after the window, node 1: %q, %v; want a success", u, err)
	}
	if u, err := nodes[0].Authenticate(ctx, "alice@example.org", "right", attacker); err != nil || u != "alice@example.org" {
		t.Fatalf("after the window, node 0: %q, %v; want a success", u, err)
	}
	// Both nodes remember the login; a password change (a reload on each
	// node) makes both refuse the old password and accept the new one.
	changed := []auth.User{{Address: "alice@example.org", PasswordHash: hashWith(t, "new", cheap)}}
	for i, node := range nodes {
		if err := node.Update(changed); err != nil {
			t.Fatal(err)
		}
		if _, err := node.Authenticate(ctx, "alice@example.org", "right", addr("198.51.100.8")); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("node %d, old password after the change: %v, want invalid credentials", i, err)
		}
		if u, err := node.Authenticate(ctx, "alice@example.org", "new", addr("198.51.100.8")); err != nil || u != "alice@example.org" {
			t.Errorf("node %d, new password: %q, %v", i, u, err)
		}
	}
}

// TestSharedFailuresBurst: 40 simultaneous wrong passwords from one
// address, spread over two nodes sharing their counters, get MaxFailures
// verifications in all (each node alone would allow MaxFailures), the
// rest are refused as a lockout; meanwhile the right password from
// another address succeeds.
func TestSharedFailuresBurst(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	users := []auth.User{{Address: "alice@example.org", PasswordHash: hashWith(t, "right", slowish)}}
	const maxFailures = 4
	var nodes []*auth.Authenticator
	for range 2 {
		a, err := auth.NewAuthenticator(users, auth.AuthenticatorOptions{MaxFailures: maxFailures, MaxConcurrent: 4,
			FailureDelay: 20 * time.Millisecond, Logger: quiet, SharedFailures: auth.NewPostgresFailures(pool)})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, a)
	}
	attacker := addr("192.0.2.66")
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := nodes[i%2].Authenticate(ctx, "alice@example.org", fmt.Sprint("guess", i), attacker)
			kind := "other: " + fmt.Sprint(err)
			switch {
			case errors.Is(err, auth.ErrInvalidCredentials):
				kind = "invalid"
			case errors.Is(err, auth.ErrTooManyFailures):
				kind = "lockout"
			}
			mu.Lock()
			answers[kind]++
			mu.Unlock()
		}()
	}
	if u, err := nodes[1].Authenticate(ctx, "alice@example.org", "right", addr("198.51.100.7")); err != nil || u != "alice@example.org" {
		t.Errorf("right password from another address during the burst: %q, %v", u, err)
	}
	wg.Wait()
	if v := nodes[0].Verifications() + nodes[1].Verifications(); v > maxFailures+1 {
		t.Errorf("%d verifications on the two nodes (answers %v), want at most %d wrong ones and the right one", v, answers, maxFailures)
	}
	if answers["invalid"] != maxFailures || answers["lockout"] != 40-maxFailures {
		t.Errorf("answers %v, want %d invalid and %d lockouts", answers, maxFailures, 40-maxFailures)
	}
}
