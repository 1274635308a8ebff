package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrInvalidCredentials is returned for an unknown user or a wrong password
	// (which one is never revealed).
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	// ErrTooManyFailures is returned, without checking the password, while the
	// client's IP address has too many recent failures (a lockout: the
	// protocols answer it as a temporary refusal, not as a wrong password).
	ErrTooManyFailures = errors.New("auth: too many authentication failures from this address, try later")
)

// LockoutError is the error of an attempt refused because its address
// has too many recent failures; it wraps ErrTooManyFailures.
type LockoutError struct {
	// RetryIn is when the oldest counted failure leaves the window.
	RetryIn time.Duration
}

func (e *LockoutError) Error() string {
	return fmt.Sprintf("%v (retry in %s)", ErrTooManyFailures, e.RetryIn)
}

func (e *LockoutError) Unwrap() error { return ErrTooManyFailures }

// RetryMinutes is RetryIn in whole minutes, rounded up (at least 1).
func (e *LockoutError) RetryMinutes() int {
	return max(1, int((e.RetryIn+time.Minute-1)/time.Minute))
}

// AuthenticatorOptions tune an Authenticator; zero values take the defaults.
type AuthenticatorOptions struct {
	// MaxFailures per client IP within Window; once reached, further
	// attempts from that IP are refused until the oldest failure leaves the
	// window. Attempts in flight count as failures until they succeed, so
	// that a burst of simultaneous attempts cannot all be checked. Default
	// 10 (config limits.auth_failures_per_ip).
	MaxFailures int
	// Window is the failure counting window. Default 10 minutes.
	Window time.Duration
	// MaxConcurrent bounds concurrent argon2id verifications, handed out
	// round robin across client IPs. Default the number of CPUs, at least
	// 2 and at most 16, and no more than fit in 256 MiB with the largest
	// argon2id memory of the users' hashes (at least 2).
	MaxConcurrent int
	// FailureDelay is how long the answer to a first failure is held back;
	// it doubles with each recent failure of the client IP or of the
	// account, up to MaxFailureDelay. The attempt keeps counting against
	// its IP meanwhile, even if the client disconnects. A correct password
	// is never delayed. Default 250ms; negative: no delay.
	FailureDelay time.Duration
	// MaxFailureDelay caps FailureDelay's growth. Default 5s.
	MaxFailureDelay time.Duration
	// CacheTTL is how long a successful login is remembered after its last
	// use (sliding: every use renews it). Default 15 minutes.
	CacheTTL time.Duration
	// CacheSize bounds the remembered logins. Default 10000.
	CacheSize int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// SharedFailures, when set, also keeps the failure counters in a
	// store shared by several nodes (PostgresFailures), so that a client
	// gets MaxFailures attempts in all, not MaxFailures per node. Nil:
	// the counters are this process's only.
	SharedFailures FailureStore
}

// Authenticator checks user passwords (argon2id) and throttles clients that
// fail too often. It implements the Authenticator interface of server/imap
// and server/smtp, is safe for concurrent use, and its users are replaced by
// Update on config reload.
//
// Successful logins are remembered (like Dovecot's auth_cache) under an
// HMAC of user and password with a key drawn at start, never the password:
// a client opening connection after connection pays the argon2id cost
// once. An entry lives CacheTTL after its last use and is valid only while
// the user's hash is the one it was verified against, so that Update drops
// exactly the changed users and a busy server's entries never expire all
// at once. Logins that miss the cache with the same user and password
// share one verification (one flight per credential digest); different
// credentials queue for MaxConcurrent verification slots, round robin
// across client IPs.
//
// A user may have app passwords (per-device, per-protocol) beside the
// main password, which may itself be restricted to some protocols. An
// attempt is checked against the credentials allowed for its scope in one
// flight and one slot: the app passwords first, only when the password has
// the app password form (NormalizeAppPassword; their hashes are cheap,
// AppParams), then the main password. The main password's hash is always
// verified, even when its scope is not allowed, so that every failure
// costs the same. A success remembers which credential matched: removing
// an app password (Update) forgets its logins.
//
// The flight group and the fair queue are written here rather than taken
// from golang.org/x/sync: singleflight cannot cancel a queued verification
// that every caller gave up on nor attach per-flight failure accounting,
// and semaphore.Weighted is one FIFO, which lets one source starve others.
type Authenticator struct {
	opts  AuthenticatorOptions
	key   [32]byte
	queue *fairQueue

	// verifications counts argon2id runs (tests and benchmarks).
	verifications atomic.Int64

	mu      sync.Mutex
	users   map[string]*account // lower-case address -> credentials
	dummy   string              // hash verified for unknown users, to even out timing
	cache   map[digest]*cacheEntry
	flights map[digest]*flight

	ipFails   map[string][]time.Time // client key -> failure times, oldest first
	acctFails map[string][]time.Time // known user -> failure times, oldest first
	inflight  map[string]int         // client key -> flights it leads, until their failure delay ends
	changed   chan struct{}          // closed and replaced when the throttle state changes
	sweep     time.Time
}

type digest [sha256.Size]byte

type cacheEntry struct {
	user, hash string
	name       string // app password name, "" for the main password
	scope      scopeSet
	expires    time.Time
}

// flight is one verification of one (user, password), shared by every
// caller asking for it while it runs.
type flight struct {
	key     digest
	done    chan struct{}
	ok      bool
	name    string // the app password that matched, "" for the main password
	err     error
	delay   time.Duration // the failure delay charged by the leader
	waiters int           // callers waiting; at 0 the flight is cancelled
	cancel  context.CancelFunc
	charged map[string]bool // client keys charged with this failure
	shared  int             // recent failures of its address or account on any node
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
		opts.MaxConcurrent = defaultConcurrency(users, runtime.NumCPU())
	}
	if opts.FailureDelay == 0 {
		opts.FailureDelay = 250 * time.Millisecond
	}
	if opts.MaxFailureDelay <= 0 {
		opts.MaxFailureDelay = 5 * time.Second
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 15 * time.Minute
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 10000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Authenticator{
		opts:      opts,
		queue:     newFairQueue(opts.MaxConcurrent),
		cache:     map[digest]*cacheEntry{},
		flights:   map[digest]*flight{},
		ipFails:   map[string][]time.Time{},
		acctFails: map[string][]time.Time{},
		inflight:  map[string]int{},
		changed:   make(chan struct{}),
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		return nil, fmt.Errorf("draw the login cache key: %w", err)
	}
	if err := a.Update(users); err != nil {
		return nil, err
	}
	return a, nil
}

// verifyMemoryBudget bounds the memory of the verifications running at
// once (default MaxConcurrent).
const verifyMemoryBudget = 256 << 20

// defaultConcurrency is one verification per CPU (2 to 16), fewer when
// the users' largest argon2id memory would exceed verifyMemoryBudget.
func defaultConcurrency(users []User, cpus int) int {
	n := min(max(cpus, 2), 16)
	var most uint32
	for _, u := range users {
		hashes := []string{u.PasswordHash}
		for _, ap := range u.AppPasswords {
			hashes = append(hashes, ap.Hash)
		}
		for _, h := range hashes {
			if p, _, _, err := ParseHash(h); err == nil {
				most = max(most, p.Memory)
			}
		}
	}
	if most > 0 {
		n = min(n, max(2, int(verifyMemoryBudget/(int64(most)<<10))))
	}
	return n
}

// Update replaces the set of users (on config reload). Failure counters are
// kept, and remembered logins of the users whose hash did not change. On
// error nothing changes.
func (a *Authenticator) Update(users []User) error {
	m := make(map[string]*account, len(users))
	dummy := ""
	var errs []error
	for _, u := range users {
		addr, err := ParseAddress(u.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("user: %w", err))
			continue
		}
		acc, err := newAccount(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("user %s: %w", addr, err))
			continue
		}
		m[addr.String()] = acc
		if dummy == "" {
			p, _, _, _ := ParseHash(u.PasswordHash)
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
	for k, e := range a.cache {
		if !a.validLocked(e) {
			delete(a.cache, k)
		}
	}
	a.mu.Unlock()
	return nil
}

// validLocked reports whether a remembered login's credential still
// exists, unchanged, and still allows the entry's scope.
func (a *Authenticator) validLocked(e *cacheEntry) bool {
	c := a.users[e.user].find(e.name, e.hash)
	return c != nil && c.scopes&e.scope == e.scope
}

func (a *Authenticator) digest(scope scopeSet, user, password string) digest {
	h := hmac.New(sha256.New, a.key[:])
	h.Write([]byte{byte(scope)})
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var d digest
	h.Sum(d[:0])
	return d
}

// Authenticate checks username (a user's address, any case) and password
// for a client at remote, with any credential of the user whatever its
// scopes (the servers use For). It returns the canonical (lower-case) user
// address, ErrInvalidCredentials, a *LockoutError (which wraps
// ErrTooManyFailures), or an error wrapping ctx's error.
func (a *Authenticator) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	return a.authenticate(ctx, allScopes, username, password, remote)
}

// Scoped authenticates with the credentials allowed for one scope.
type Scoped struct {
	a     *Authenticator
	scope scopeSet
	name  string
}

// For returns the authenticator of one scope (ScopeIMAP, ScopeSMTP): a
// main password or app password not allowed for it fails as a wrong
// password would. It panics on an unknown scope (a programming error).
func (a *Authenticator) For(scope string) Scoped {
	b, ok := scopeBit(scope)
	if !ok {
		panic("auth: unknown scope " + scope)
	}
	return Scoped{a: a, scope: b, name: scope}
}

// Authenticate is Authenticator.Authenticate restricted to s's scope.
func (s Scoped) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	return s.a.authenticate(ctx, s.scope, username, password, remote)
}

func (a *Authenticator) authenticate(ctx context.Context, scope scopeSet, username, password string, remote net.Addr) (string, error) {
	user := loginName(strings.ToLower(username))
	ip := clientKey(remote)
	k := a.digest(scope, user, password)
	shared := a.sharedFailures(ctx, ip, user)
	a.mu.Lock()
	for {
		now := a.opts.Now()
		a.sweepLocked(now)
		// The lockout comes first, even before a remembered login: an
		// address that may not guess must not learn that a guess is right.
		f := a.ipFailsLocked(ip, now)
		if sf := lastN(prune(shared.ip, now.Add(-a.opts.Window)), a.opts.MaxFailures); len(sf) > len(f) {
			f = sf // other nodes' failures too (this node's are among them)
		}
		if len(f) >= a.opts.MaxFailures {
			retry := f[0].Add(a.opts.Window).Sub(now).Round(time.Second)
			a.mu.Unlock()
			a.opts.Logger.Warn("auth refused: too many failures", "ip", ip, "retry_in", retry)
			return "", &LockoutError{RetryIn: retry}
		}
		// A remembered login needs neither a slot nor a verification.
		if e := a.cache[k]; e != nil && e.user == user && e.scope == scope && now.Before(e.expires) && a.validLocked(e) {
			e.expires = now.Add(a.opts.CacheTTL)
			name := e.name
			a.mu.Unlock()
			a.logSuccess(user, name, scope, ip)
			return user, nil
		}
		if f := a.flights[k]; f != nil {
			f.waiters++
			a.mu.Unlock()
			return a.wait(ctx, f, ip, user, scope)
		}
		// Every attempt in flight may turn out a failure: no more may run
		// than the failures the address has left.
		if len(f)+a.inflight[ip] < a.opts.MaxFailures {
			break
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("wait for earlier login attempts from %s: %w", ip, ctx.Err())
		}
		a.mu.Lock()
	}
	a.inflight[ip]++
	acc, known := a.users[user]
	if !known {
		acc = &account{creds: []credential{{hash: a.dummy}}}
	}
	cands := candidates(acc, password)
	fctx, cancel := context.WithCancel(context.Background())
	f := &flight{key: k, done: make(chan struct{}), waiters: 1, cancel: cancel, charged: map[string]bool{},
		shared: max(len(shared.ip), len(shared.acct))}
	a.flights[k] = f
	a.mu.Unlock()
	go a.run(fctx, f, ip, user, scope, cands, known, password)
	return a.wait(ctx, f, ip, user, scope)
}

// candidates are the credentials a password is verified against, in
// order: the app passwords when it has their form, padded to
// MaxAppPasswords with a hash nothing matches, then the main password
// (whatever its scopes). A failure thus costs the same for every user,
// known or not, with or without app passwords: timing does not tell
// which users exist or have app passwords.
func candidates(acc *account, password string) []credential {
	var out []credential
	if _, ok := NormalizeAppPassword(password); ok {
		out = append(out, acc.creds[1:]...)
		for len(out) < MaxAppPasswords {
			out = append(out, credential{hash: appDummy})
		}
	}
	return append(out, acc.creds[0])
}

// appDummy is an app password hash (AppParams) with an all-zero key,
// which no password matches.
var appDummy = fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", AppParams.Memory, AppParams.Time, AppParams.Threads,
	b64.EncodeToString(make([]byte, AppParams.SaltLen)), b64.EncodeToString(make([]byte, AppParams.KeyLen)))

// logSuccess logs a login with an app password, with its name.
func (a *Authenticator) logSuccess(user, name string, scope scopeSet, ip string) {
	if name != "" {
		a.opts.Logger.Info("login with an app password", "user", user, "app_password", name, "scope", scopeName(scope), "ip", ip)
	}
}

func scopeName(s scopeSet) string {
	if s == allScopes {
		return "any"
	}
	var names []string
	for i, n := range Scopes {
		if s&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// run verifies a flight's password, remembers a success, charges a failure
// to the leader's address and account, and keeps the attempt counted
// against that address until the failure delay is over.
func (a *Authenticator) run(ctx context.Context, f *flight, ip, user string, scope scopeSet, cands []credential, known bool, password string) {
	defer f.cancel()
	reserved, lockout := a.reserve(ctx, ip)
	if lockout != nil {
		// Other nodes' attempts took the address's last failures.
		a.mu.Lock()
		if a.flights[f.key] == f {
			delete(a.flights, f.key)
		}
		f.err = lockout
		a.mu.Unlock()
		close(f.done)
		a.mu.Lock()
		if a.inflight[ip]--; a.inflight[ip] <= 0 {
			delete(a.inflight, ip)
		}
		a.notifyLocked()
		a.mu.Unlock()
		return
	}
	matched, err := a.verify(ctx, ip, cands, password)
	var hold time.Duration
	var refused *credential // matched, but not for this scope
	a.mu.Lock()
	if a.flights[f.key] == f {
		delete(a.flights, f.key)
	}
	if matched != nil && known {
		if matched.scopes&scope == scope {
			f.ok, f.name = true, matched.name
		} else {
			refused = matched
		}
	}
	f.err = err
	switch {
	case err != nil:
	case f.ok:
		e := &cacheEntry{user: user, hash: matched.hash, name: matched.name, scope: scope}
		if a.validLocked(e) { // not across an Update that changed the user
			a.rememberLocked(f.key, e)
		}
	default:
		hold = a.failLocked(ip, user, f.shared)
		f.charged[ip], f.delay = true, hold
	}
	_, isUser := a.users[user]
	a.mu.Unlock()
	switch {
	case f.err == nil && !f.ok:
		// Recorded before the answer, so that other nodes count it (the
		// address's failure is the reservation, kept).
		a.shareFailure(ip, user, isUser, reserved != 0)
	case reserved != 0:
		a.unreserve(reserved) // a success, or no answer: no failure
	}
	if refused != nil {
		what := "the main password"
		if refused.name != "" {
			what = "app password " + refused.name
		}
		a.opts.Logger.Info("auth failed: "+what+" is not allowed for "+scopeName(scope), "user", user, "ip", ip)
	}
	close(f.done)
	if hold > 0 {
		time.Sleep(hold)
	}
	a.mu.Lock()
	if a.inflight[ip]--; a.inflight[ip] <= 0 {
		delete(a.inflight, ip)
	}
	a.notifyLocked()
	a.mu.Unlock()
}

// verify runs argon2id against each candidate in turn, in one of the
// fair queue's slots (one at a time: the slot's memory budget holds), and
// returns the first that matches, or nil.
func (a *Authenticator) verify(ctx context.Context, ip string, cands []credential, password string) (*credential, error) {
	if err := a.queue.acquire(ctx, ip); err != nil {
		return nil, fmt.Errorf("wait for a verification slot: %w", err)
	}
	defer a.queue.release()
	norm, _ := NormalizeAppPassword(password)
	for i := range cands {
		c := &cands[i]
		if c.hash == "" {
			continue
		}
		if i > 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("verify password: %w", ctx.Err())
		}
		pw := password
		if c.name != "" {
			pw = norm
		}
		a.verifications.Add(1)
		if ok, err := VerifyPassword(c.hash, pw); ok && err == nil {
			return c, nil
		}
	}
	return nil, nil
}

// wait waits for f's result on behalf of a caller from ip.
func (a *Authenticator) wait(ctx context.Context, f *flight, ip, user string, scope scopeSet) (string, error) {
	select {
	case <-f.done:
	case <-ctx.Done():
		a.mu.Lock()
		if f.waiters--; f.waiters == 0 {
			// Nobody wants the answer: drop the verification if still queued.
			if a.flights[f.key] == f {
				delete(a.flights, f.key)
			}
			f.cancel()
		}
		a.mu.Unlock()
		return "", fmt.Errorf("verify password: %w", ctx.Err())
	}
	if f.err != nil {
		return "", fmt.Errorf("verify password: %w", f.err)
	}
	if f.ok {
		a.logSuccess(user, f.name, scope, ip)
		return user, nil
	}
	delay := f.delay
	a.mu.Lock()
	charge := !f.charged[ip]
	_, isUser := a.users[user]
	if charge { // a caller from another address shared the flight
		f.charged[ip] = true
		delay = max(delay, a.failLocked(ip, user, f.shared))
	}
	a.mu.Unlock()
	if charge {
		a.shareFailure(ip, user, isUser, false)
	}
	a.opts.Logger.Info("auth failed", "ip", ip, "delay", delay)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return "", ErrInvalidCredentials
}

// rememberLocked caches a verified login, making room by dropping expired
// entries, then the one closest to expiry.
func (a *Authenticator) rememberLocked(k digest, e *cacheEntry) {
	now := a.opts.Now()
	if len(a.cache) >= a.opts.CacheSize {
		var oldest *digest
		var oldestAt time.Time
		for ck, e := range a.cache {
			if !now.Before(e.expires) {
				delete(a.cache, ck)
				continue
			}
			if oldest == nil || e.expires.Before(oldestAt) {
				ck := ck
				oldest, oldestAt = &ck, e.expires
			}
		}
		if len(a.cache) >= a.opts.CacheSize && oldest != nil {
			delete(a.cache, *oldest)
		}
	}
	e.expires = now.Add(a.opts.CacheTTL)
	a.cache[k] = e
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

// ClientKey is the key under which remote's logins and connections are
// counted: its IPv4 address, or its IPv6 /64 (one customer's network).
func ClientKey(remote net.Addr) string { return clientKey(remote) }

// ipFailsLocked returns ip's failures within the window, pruned.
func (a *Authenticator) ipFailsLocked(ip string, now time.Time) []time.Time {
	f := prune(a.ipFails[ip], now.Add(-a.opts.Window))
	if len(f) == 0 {
		delete(a.ipFails, ip)
		return nil
	}
	a.ipFails[ip] = f
	return f
}

// failLocked records a failure of ip (and of user, if it is one) and
// returns how long its answer is held back; shared is the count of recent
// failures of either that the other nodes know of.
func (a *Authenticator) failLocked(ip, user string, shared int) time.Duration {
	now := a.opts.Now()
	cutoff := now.Add(-a.opts.Window)
	f := append(prune(a.ipFails[ip], cutoff), now)
	if len(f) > a.opts.MaxFailures {
		f = f[len(f)-a.opts.MaxFailures:]
	}
	a.ipFails[ip] = f
	n := len(f)
	if _, known := a.users[user]; known {
		const keep = 64
		af := append(prune(a.acctFails[user], cutoff), now)
		if len(af) > keep {
			af = af[len(af)-keep:]
		}
		a.acctFails[user] = af
		n = max(n, len(af))
	}
	n = max(n, shared+1)
	a.notifyLocked()
	if a.opts.FailureDelay < 0 {
		return 0
	}
	return min(a.opts.FailureDelay<<min(n-1, 20), a.opts.MaxFailureDelay)
}

// sweepLocked forgets idle clients and accounts now and then, so that the
// maps cannot grow without bound.
func (a *Authenticator) sweepLocked(now time.Time) {
	if now.Sub(a.sweep) <= a.opts.Window {
		return
	}
	a.sweep = now
	cutoff := now.Add(-a.opts.Window)
	for _, m := range []map[string][]time.Time{a.ipFails, a.acctFails} {
		for k, v := range m {
			if len(prune(v, cutoff)) == 0 {
				delete(m, k)
			}
		}
	}
	for k, e := range a.cache {
		if !now.Before(e.expires) {
			delete(a.cache, k)
		}
	}
}

// notifyLocked wakes the attempts waiting for the throttle state to change.
func (a *Authenticator) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// prune drops the failures at or before cutoff (f is oldest first).
func prune(f []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(f) && !f[i].After(cutoff) {
		i++
	}
	return f[i:]
}
