package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"strings"
	"sync"
	"time"
)

// authenticator is what IMAP and SMTP need to check a password.
type authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error)
}

// authCache remembers successful logins for a while, so that a client
// opening connection after connection pays the argon2id cost (about
// 64 MiB and a third of a second each) once, not per connection, like
// Dovecot's auth_cache. Only successes are cached, under an HMAC of user
// and password with a key drawn at start (the cache never holds a
// password, and a wrong one never matches); failures always go to the
// authenticator, which keeps throttling them. Reset (config reload, so
// changed or removed users) empties it.
type authCache struct {
	next authenticator
	ttl  time.Duration
	max  int
	now  func() time.Time
	key  [32]byte

	mu      sync.Mutex
	gen     uint64
	entries map[[sha256.Size]byte]authEntry
}

type authEntry struct {
	user    string
	expires time.Time
}

func newAuthCache(next authenticator, ttl time.Duration, max int) *authCache {
	c := &authCache{next: next, ttl: ttl, max: max, now: time.Now, entries: map[[sha256.Size]byte]authEntry{}}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic("daemon: no randomness for the auth cache key: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return c
}

func (c *authCache) mac(username, password string) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(strings.ToLower(username)))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}

func (c *authCache) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	k := c.mac(username, password)
	c.mu.Lock()
	e, ok := c.entries[k]
	gen := c.gen
	now := c.now()
	if ok && now.After(e.expires) {
		delete(c.entries, k)
		ok = false
	}
	c.mu.Unlock()
	if ok {
		return e.user, nil
	}
	user, err := c.next.Authenticate(ctx, username, password, remote)
	if err != nil {
		return user, err
	}
	c.mu.Lock()
	if c.gen == gen { // not across a reset: the users may have changed meanwhile
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
		c.entries[k] = authEntry{user: user, expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	return user, nil
}

// Reset forgets every cached login.
func (c *authCache) Reset() {
	c.mu.Lock()
	c.gen++
	clear(c.entries)
	c.mu.Unlock()
}
