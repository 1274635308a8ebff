package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

var (
	// ErrInvalidCredentials is returned for an unknown user or a wrong password
	// (which one is never revealed).
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	// ErrTooManyFailures is returned, without checking the password, while the
	// client's IP address has too many recent failures.
	ErrTooManyFailures = errors.New("auth: too many authentication failures from this address, try later")
)

// AuthenticatorOptions tune an Authenticator; zero values take the defaults.
type AuthenticatorOptions struct {
	// MaxFailures per client IP within Window; once reached, further
	// attempts from that IP are refused until the oldest failure leaves the
	// window. Default 10 (config limits.auth_failures_per_ip).
	MaxFailures int
	// Window is the failure counting window. Default 10 minutes.
	Window time.Duration
	// MaxConcurrent bounds concurrent argon2id verifications (each may use
	// 64 MiB). Default 4.
	MaxConcurrent int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// Authenticator checks user passwords (argon2id) and throttles clients that
// fail too often. It implements the Authenticator interface of server/imap
// and server/smtp, is safe for concurrent use, and its users are replaced by
// Update on config reload.
type Authenticator struct {
	opts AuthenticatorOptions
	sem  chan struct{}

	mu    sync.RWMutex
	users map[string]string // lower-case address -> PHC hash
	dummy string            // hash verified for unknown users, to even out timing

	fmu      sync.Mutex
	failures map[string][]time.Time // client key -> failure times, oldest first
	sweep    time.Time
}

// NewAuthenticator builds an Authenticator for users.
func NewAuthenticator(users []User, opts AuthenticatorOptions) (*Authenticator, error) {
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 10
	}
	if opts.Window <= 0 {
		opts.Window = 10 * time.Minute
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Authenticator{
		opts:     opts,
		sem:      make(chan struct{}, opts.MaxConcurrent),
		failures: map[string][]time.Time{},
	}
	if err := a.Update(users); err != nil {
		return nil, err
	}
	return a, nil
}

// Update replaces the set of users (on config reload). Failure counters are
// kept. On error nothing changes.
func (a *Authenticator) Update(users []User) error {
	m := make(map[string]string, len(users))
	dummy := ""
	var errs []error
	for _, u := range users {
		addr, err := ParseAddress(u.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("user: %w", err))
			continue
		}
		p, _, _, err := ParseHash(u.PasswordHash)
		if err != nil {
			errs = append(errs, fmt.Errorf("user %s: password hash: %w", addr, err))
			continue
		}
		m[addr.String()] = u.PasswordHash
		if dummy == "" {
			// Same cost as a real user's hash, so that unknown users take as long.
			dummy = fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Time, p.Threads,
				b64.EncodeToString(make([]byte, p.SaltLen)), b64.EncodeToString(make([]byte, p.KeyLen)))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("update users: %w", errors.Join(errs...))
	}
	a.mu.Lock()
	a.users, a.dummy = m, dummy
	a.mu.Unlock()
	return nil
}

// Authenticate checks username (a user's address, any case) and password
// for a client at remote. It returns the canonical (lower-case) user
// address, ErrInvalidCredentials, ErrTooManyFailures, or ctx's error.
func (a *Authenticator) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	key := clientKey(remote)
	if a.throttled(key) {
		a.opts.Logger.Warn("auth refused: too many failures", "ip", key)
		return "", ErrTooManyFailures
	}
	user := strings.ToLower(username)
	a.mu.RLock()
	hash, known := a.users[user]
	dummy := a.dummy
	a.mu.RUnlock()
	if !known {
		hash = dummy
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("wait to verify password: %w", ctx.Err())
	}
	ok := false
	if hash != "" {
		var err error
		ok, err = VerifyPassword(hash, password)
		if err != nil {
			ok = false
		}
	}
	<-a.sem
	if !ok || !known {
		a.fail(key)
		a.opts.Logger.Info("auth failed", "ip", key, "user_known", known)
		return "", ErrInvalidCredentials
	}
	return user, nil
}

// clientKey groups clients: one IPv4 address, or one IPv6 /64.
func clientKey(remote net.Addr) string {
	if remote == nil {
		return "unknown"
	}
	host := remote.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func (a *Authenticator) throttled(key string) bool {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	now := a.opts.Now()
	f := prune(a.failures[key], now.Add(-a.opts.Window))
	if len(f) == 0 {
		delete(a.failures, key)
		return false
	}
	a.failures[key] = f
	return len(f) >= a.opts.MaxFailures
}

func (a *Authenticator) fail(key string) {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	now := a.opts.Now()
	cutoff := now.Add(-a.opts.Window)
	f := append(prune(a.failures[key], cutoff), now)
	if len(f) > a.opts.MaxFailures {
		f = f[len(f)-a.opts.MaxFailures:]
	}
	a.failures[key] = f
	// Forget idle clients now and then so the map cannot grow without bound.
	if now.Sub(a.sweep) > a.opts.Window {
		a.sweep = now
		for k, v := range a.failures {
			if len(prune(v, cutoff)) == 0 {
				delete(a.failures, k)
			}
		}
	}
}

// prune drops the failures at or before cutoff (f is oldest first).
func prune(f []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(f) && !f[i].After(cutoff) {
		i++
	}
	return f[i:]
}
