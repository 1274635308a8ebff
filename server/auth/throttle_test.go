package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
)

var quiet = slog.New(slog.DiscardHandler)

// slowish costs a few milliseconds per verification, so that concurrent
// callers overlap.
var slowish = auth.Params{Memory: 4 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func hashWith(t testing.TB, pw string, p auth.Params) string {
	t.Helper()
	h, err := auth.HashPassword(pw, p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestParallelWrongLogins: 100 simultaneous wrong passwords for one
// account from one address are not all checked (attempts in flight count
// as failures): at most MaxFailures are verified, the rest are refused as
// a lockout at once; meanwhile the right password from another address
// succeeds within a second.
func TestParallelWrongLogins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const maxFailures = 10
	a, err := auth.NewAuthenticator([]auth.User{{Address: "alice@example.org", PasswordHash: hashWith(t, "right", auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})}},
		auth.AuthenticatorOptions{MaxFailures: maxFailures, MaxConcurrent: 2, FailureDelay: 50 * time.Millisecond,
			MaxFailureDelay: 500 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	attacker, friend := addr("192.0.2.66"), addr("198.51.100.7")
	start := time.Now()
	var wg sync.WaitGroup
	var invalid, locked, other atomic.Int64
	var refusedBy atomic.Int64 // latest answer to a refused attempt, ns after start
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Authenticate(ctx, "alice@example.org", fmt.Sprint("guess", i), attacker)
			switch {
			case errors.Is(err, auth.ErrInvalidCredentials):
				invalid.Add(1)
			case errors.Is(err, auth.ErrTooManyFailures):
				locked.Add(1)
				for d := int64(time.Since(start)); ; {
					old := refusedBy.Load()
					if d <= old || refusedBy.CompareAndSwap(old, d) {
						break
					}
				}
			default:
				other.Add(1)
				t.Errorf("attempt %d: %v", i, err)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	fstart := time.Now()
	user, err := a.Authenticate(ctx, "alice@example.org", "right", friend)
	took := time.Since(fstart)
	if err != nil || user != "alice@example.org" {
		t.Errorf("right password from another address during the attack = %q, %v", user, err)
	}
	if took > time.Second {
		t.Errorf("right password from another address took %v, want at most 1s", took)
	}
	wg.Wait()
	all := time.Since(start)
	t.Logf("100 wrong logins: %d checked and refused, %d locked out (the last after %v), all answered in %v; friend logged in in %v; %d verifications",
		invalid.Load(), locked.Load(), time.Duration(refusedBy.Load()), all, took, a.Verifications())
	if n := invalid.Load(); n > maxFailures {
		t.Errorf("%d wrong passwords checked, want at most %d", n, maxFailures)
	}
	if v := a.Verifications(); v > maxFailures+1 {
		t.Errorf("%d argon2id verifications, want at most %d (the attacker's %d and the friend's)", v, maxFailures+1, maxFailures)
	}
	if locked.Load()+invalid.Load() != 100 {
		t.Errorf("%d locked + %d invalid answers, want 100", locked.Load(), invalid.Load())
	}
	if d := time.Duration(refusedBy.Load()); d > 3*time.Second {
		t.Errorf("the refused attempts were answered after %v, want fast", d)
	}
}

// TestFailureDelay: each failure's answer is held back longer than the
// last, per address and per account; a right password is not delayed.
func TestFailureDelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const base = 100 * time.Millisecond
	a, err := auth.NewAuthenticator([]auth.User{
		{Address: "alice@example.org", PasswordHash: mustHash(t, "pw")},
		{Address: "bob@example.org", PasswordHash: mustHash(t, "pw")},
	}, auth.AuthenticatorOptions{MaxFailures: 100, FailureDelay: base, MaxFailureDelay: 8 * base, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	timed := func(user, pw, from string) (time.Duration, error) {
		start := time.Now()
		_, err := a.Authenticate(ctx, user, pw, addr(from))
		return time.Since(start), err
	}
	// Per address: 1, 2, 4, 8 (the cap), 8 times base.
	for i, want := range []time.Duration{base, 2 * base, 4 * base, 8 * base, 8 * base} {
		d, err := timed("bob@example.org", fmt.Sprint("x", i), "192.0.2.1")
		if !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
		if d < want || d > want+time.Second {
			t.Errorf("failure %d from one address answered after %v, want %v", i+1, d, want)
		}
	}
	// The right password from that address is not held back (a failure
	// would be, by 8 times base now).
	if d, err := timed("bob@example.org", "pw", "192.0.2.1"); err != nil || d >= 8*base {
		t.Errorf("right password after failures: %v after %v, want success before %v", err, d, 8*base)
	}
	// Per account: failures from ever new addresses still grow.
	for i, want := range []time.Duration{base, 2 * base, 4 * base} {
		d, err := timed("alice@example.org", "x", fmt.Sprintf("203.0.113.%d", i+1))
		if !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("account failure %d: %v", i, err)
		}
		if d < want || d > want+time.Second {
			t.Errorf("failure %d on one account answered after %v, want %v", i+1, d, want)
		}
	}
	// The account's owner from yet another address is not held back.
	if d, err := timed("alice@example.org", "pw", "198.51.100.9"); err != nil || d >= 8*base {
		t.Errorf("owner during the attack: %v after %v, want success before %v", err, d, 8*base)
	}
}

// TestSharedVerification: 50 simultaneous first logins with one user and
// password run one argon2id verification; a wrong password alongside runs
// its own.
func TestSharedVerification(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := auth.NewAuthenticator([]auth.User{{Address: "alice@example.org", PasswordHash: hashWith(t, "pw", slowish)}},
		auth.AuthenticatorOptions{FailureDelay: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := "alice@example.org"
			if i%2 == 1 {
				user = "Alice@Example.org"
			}
			if u, err := a.Authenticate(ctx, user, "pw", addr(fmt.Sprintf("10.0.0.%d", i%5+1))); err != nil || u != "alice@example.org" {
				t.Errorf("login %d = %q, %v", i, u, err)
			}
		}()
	}
	wg.Wait()
	if v := a.Verifications(); v != 1 {
		t.Errorf("%d verifications for 50 simultaneous logins, want 1", v)
	}
	if _, err := a.Authenticate(ctx, "alice@example.org", "pW", addr("10.0.0.1")); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("other password = %v, want ErrInvalidCredentials", err)
	}
	if v := a.Verifications(); v != 2 {
		t.Errorf("%d verifications after a wrong password, want 2", v)
	}
}

// TestCacheSlidingExpiryUnderLoad: clients keep logging in while the clock
// runs several cache lifetimes: each user is verified once, since every
// use renews its entry. After an idle lifetime, a burst of logins for a
// user verifies it once more.
func TestCacheSlidingExpiryUnderLoad(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)}
	const ttl = 10 * time.Minute
	const nUsers = 10
	var users []auth.User
	for i := range nUsers {
		users = append(users, auth.User{Address: fmt.Sprintf("u%d@example.org", i), PasswordHash: mustHash(t, fmt.Sprint("pw", i))})
	}
	a, err := auth.NewAuthenticator(users, auth.AuthenticatorOptions{CacheTTL: ttl, Now: clk.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	login := func(i int) {
		if u, err := a.Authenticate(ctx, users[i].Address, fmt.Sprint("pw", i), addr(fmt.Sprintf("10.1.0.%d", i+1))); err != nil || u != users[i].Address {
			t.Errorf("seed %d: login of %s = %q, %v", seed, users[i].Address, u, err)
		}
	}
	// 40 rounds, the clock moving up to 0.9 TTL between them: 10-36 TTLs.
	for round := range 40 {
		var wg sync.WaitGroup
		for i := range nUsers {
			for range 1 + rng.IntN(5) {
				wg.Add(1)
				go func() { defer wg.Done(); login(i) }()
			}
		}
		wg.Wait()
		if v := a.Verifications(); v != nUsers {
			t.Fatalf("seed %d: round %d: %d verifications, want %d (one per user)", seed, round, v, nUsers)
		}
		clk.Add(time.Duration(rng.Int64N(int64(ttl * 9 / 10))))
	}
	clk.Add(ttl + time.Second)
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() { defer wg.Done(); login(3) }()
	}
	wg.Wait()
	if v := a.Verifications(); v != nUsers+1 {
		t.Errorf("seed %d: %d verifications after an expired entry's burst, want %d", seed, v, nUsers+1)
	}
}

// TestCacheUpdate: a reload keeps the remembered logins of unchanged users
// and forgets those whose hash changed; a wrong password is never
// remembered; the cache stays within its size.
func TestCacheUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := auth.User{Address: "alice@example.org", PasswordHash: mustHash(t, "a")}
	bob := auth.User{Address: "bob@example.org", PasswordHash: mustHash(t, "b")}
	a, err := auth.NewAuthenticator([]auth.User{alice, bob}, auth.AuthenticatorOptions{FailureDelay: -1, Logger: quiet, MaxFailures: 100})
	if err != nil {
		t.Fatal(err)
	}
	from := addr("10.2.0.1")
	steps := []struct {
		name     string
		user, pw string
		before   func()
		ok       bool
		verified int64
	}{
		{"first login is verified", "alice@example.org", "a", nil, true, 1},
		{"second is remembered", "alice@example.org", "a", nil, true, 1},
		{"any case of the user", "ALICE@example.org", "a", nil, true, 1},
		{"wrong password is verified", "alice@example.org", "nope", nil, false, 2},
		{"and again", "alice@example.org", "nope", nil, false, 3},
		{"a prefix of the password", "alice@example.org", "", nil, false, 4},
		{"bob", "bob@example.org", "b", nil, true, 5},
		{"reload with bob's password changed", "alice@example.org", "a", func() {
			bob.PasswordHash = mustHash(t, "b2")
			if err := a.Update([]auth.User{alice, bob}); err != nil {
				t.Fatal(err)
			}
		}, true, 5},
		{"bob's old password", "bob@example.org", "b", nil, false, 6},
		{"bob's new password", "bob@example.org", "b2", nil, true, 7},
		{"bob's new password remembered", "bob@example.org", "b2", nil, true, 7},
		{"user removed", "alice@example.org", "a", func() {
			if err := a.Update([]auth.User{bob}); err != nil {
				t.Fatal(err)
			}
		}, false, 8},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		_, err := a.Authenticate(ctx, s.user, s.pw, from)
		if (err == nil) != s.ok {
			t.Errorf("%s: err = %v, want success %v", s.name, err, s.ok)
		}
		if v := a.Verifications(); v != s.verified {
			t.Errorf("%s: %d verifications, want %d", s.name, v, s.verified)
		}
	}

	small, err := auth.NewAuthenticator([]auth.User{alice, bob}, auth.AuthenticatorOptions{CacheSize: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ user, pw string }{{"alice@example.org", "a"}, {"bob@example.org", "b2"}, {"bob@example.org", "b2"}, {"alice@example.org", "a"}} {
		if _, err := small.Authenticate(ctx, u.user, u.pw, from); err != nil {
			t.Fatal(err)
		}
	}
	if v := small.Verifications(); v != 3 {
		t.Errorf("cache of 1: %d verifications for alice, bob, bob, alice; want 3", v)
	}
}

// TestGiveUp: a caller that gives up while its verification waits for a
// slot gets its context's error, and a verification nobody waits for any
// more does not run.
func TestGiveUp(t *testing.T) {
	t.Parallel()
	a, err := auth.NewAuthenticator([]auth.User{{Address: "alice@example.org", PasswordHash: hashWith(t, "pw", auth.Params{Memory: 16 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32})}},
		auth.AuthenticatorOptions{MaxConcurrent: 1, FailureDelay: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // holds the only slot for a while
		defer close(done)
		a.Authenticate(context.Background(), "alice@example.org", "pw", addr("10.3.0.1"))
	}()
	for a.Verifications() == 0 { // until it runs
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := a.Authenticate(ctx, "alice@example.org", "other", addr("10.3.0.2")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("gave up = %v, want DeadlineExceeded", err)
	}
	<-done
	time.Sleep(50 * time.Millisecond)
	if v := a.Verifications(); v != 1 {
		t.Errorf("%d verifications, want 1 (the abandoned one must not run)", v)
	}
}
