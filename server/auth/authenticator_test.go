package auth_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
)

var cheap = auth.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPassword(pw, cheap)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func addr(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 40000} }

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := auth.NewAuthenticator([]auth.User{
		{Address: "Alice@example.org", PasswordHash: mustHash(t, "alice-pw")},
		{Address: "bob@example.org", PasswordHash: mustHash(t, "bob-pw")},
	}, auth.AuthenticatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, pw string
		want     string
		err      error
	}{
		{"alice@example.org", "alice-pw", "alice@example.org", nil},
		{"ALICE@EXAMPLE.ORG", "alice-pw", "alice@example.org", nil},
		{"bob@example.org", "bob-pw", "bob@example.org", nil},
		{"alice@example.org", "bob-pw", "", auth.ErrInvalidCredentials},
		{"alice@example.org", "", "", auth.ErrInvalidCredentials},
		{"carol@example.org", "alice-pw", "", auth.ErrInvalidCredentials},
		{"alice", "alice-pw", "", auth.ErrInvalidCredentials},
	}
	for i, tt := range tests {
		// a distinct client per case so throttling stays out of the way
		got, err := a.Authenticate(ctx, tt.user, tt.pw, addr(net.IPv4(10, 0, 0, byte(i+1)).String()))
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("Authenticate(%q, %q) = %q, %v; want %q, %v", tt.user, tt.pw, got, err, tt.want, tt.err)
		}
	}
}

func TestAuthenticateThrottle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := auth.NewAuthenticator([]auth.User{{Address: "alice@example.org", PasswordHash: mustHash(t, "pw")}},
		auth.AuthenticatorOptions{MaxFailures: 3, Window: 10 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	attacker, friend := addr("192.0.2.7"), addr("198.51.100.1")
	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(ctx, "alice@example.org", "guess", attacker); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d: err = %v, want ErrInvalidCredentials", i, err)
		}
		clk.Add(time.Minute)
	}
	// Throttled now, even with the right password, until the first
	// failure (3 minutes ago) is 10 minutes old.
	_, err = a.Authenticate(ctx, "alice@example.org", "pw", attacker)
	var le *auth.LockoutError
	if !errors.Is(err, auth.ErrTooManyFailures) || !errors.As(err, &le) {
		t.Errorf("4th attempt from attacker = %v, want a LockoutError (ErrTooManyFailures)", err)
	} else if le.RetryIn != 7*time.Minute || le.RetryMinutes() != 7 {
		t.Errorf("lockout retry in %v (%d minutes), want 7m", le.RetryIn, le.RetryMinutes())
	}
	// Another IP is unaffected.
	if u, err := a.Authenticate(ctx, "alice@example.org", "pw", friend); err != nil || u != "alice@example.org" {
		t.Errorf("login from another IP = %q, %v; want success", u, err)
	}
	// The same IP as an IPv4-mapped IPv6 address is the same client.
	if _, err := a.Authenticate(ctx, "alice@example.org", "pw", addr("::ffff:192.0.2.7")); !errors.Is(err, auth.ErrTooManyFailures) {
		t.Errorf("mapped address = %v, want ErrTooManyFailures", err)
	}
	// The oldest failure was at t0; after t0+10m it leaves the window.
	clk.Add(7*time.Minute + time.Second)
	if u, err := a.Authenticate(ctx, "alice@example.org", "pw", attacker); err != nil || u != "alice@example.org" {
		t.Errorf("after the window = %q, %v; want success", u, err)
	}
}

func TestAuthenticateIPv6Prefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := auth.NewAuthenticator([]auth.User{{Address: "alice@example.org", PasswordHash: mustHash(t, "pw")}},
		auth.AuthenticatorOptions{MaxFailures: 2})
	if err != nil {
		t.Fatal(err)
	}
	a.Authenticate(ctx, "alice@example.org", "x", addr("2001:db8:1:2::1"))
	a.Authenticate(ctx, "alice@example.org", "x", addr("2001:db8:1:2::99"))
	if _, err := a.Authenticate(ctx, "alice@example.org", "pw", addr("2001:db8:1:2:ffff::5")); !errors.Is(err, auth.ErrTooManyFailures) {
		t.Errorf("same /64 = %v, want ErrTooManyFailures", err)
	}
	if _, err := a.Authenticate(ctx, "alice@example.org", "pw", addr("2001:db8:1:3::1")); err != nil {
		t.Errorf("other /64 = %v, want success", err)
	}
}

func TestAuthenticatorUpdateAndConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := auth.NewAuthenticator([]auth.User{{Address: "alice@example.org", PasswordHash: mustHash(t, "old")}},
		auth.AuthenticatorOptions{MaxFailures: 1000, MaxConcurrent: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update([]auth.User{{Address: "alice@example.org", PasswordHash: "nope"}}); err == nil {
		t.Fatal("Update(bad hash) = nil, want error")
	}
	newHash := mustHash(t, "new")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 10 {
				if err := a.Update([]auth.User{{Address: "alice@example.org", PasswordHash: newHash}}); err != nil {
					t.Error(err)
				}
			}
			a.Authenticate(ctx, "alice@example.org", "old", addr("10.1.1.1"))
		}()
	}
	wg.Wait()
	if _, err := a.Authenticate(ctx, "alice@example.org", "old", addr("10.9.9.9")); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("old password after Update = %v, want ErrInvalidCredentials", err)
	}
	if _, err := a.Authenticate(ctx, "alice@example.org", "new", addr("10.9.9.9")); err != nil {
		t.Errorf("new password after Update = %v, want success", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	// A cancelled context may still win the semaphore race; it must never log in a wrong password.
	if _, err := a.Authenticate(cctx, "alice@example.org", "wrong", addr("10.9.9.9")); err == nil {
		t.Errorf("cancelled wrong password = nil error")
	}
}
