// Package auth verifies mail users' passwords and answers the address
// questions of the mail server.
//
// Hashes are argon2id (RFC 9106) in the PHC string format that
// `mailctl passwd` prints:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt b64>$<key b64>
//
// Authenticator checks passwords for SMTP AUTH (RFC 4954) and IMAP LOGIN /
// AUTHENTICATE (RFC 9051): it remembers successful logins, runs one
// verification per credential at a time and queues verifications fairly
// across client addresses, delays failures and locks out addresses that
// fail too often.
// Directory resolves recipient addresses (users, their aliases, alias blocks,
// "+detail" subaddresses, "@domain" catch-alls) and says which addresses a
// user may send as. ParseAddress is the strict RFC 5321 mailbox syntax the
// server accepts (dot-atom local parts, domain names, no relay tricks).
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Params are the argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
	SaltLen int
	KeyLen  uint32
}

// DefaultParams are OWASP's first argon2id recommendation (19 MiB, 2
// passes, 1 lane; the Password Storage Cheat Sheet): about 90 ms of one
// core on a small VPS, so that 20 first logins at once on 2 cores are all
// answered within a second. RFC 9106's 64 MiB, 3 passes took a second each
// there: 20 simultaneous first logins waited up to 10 s. Hashes made with
// other parameters keep working (the PHC string carries them).
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// ErrMalformedHash is returned for a hash that is not an argon2id PHC string.
var ErrMalformedHash = errors.New("auth: malformed argon2id hash")

var b64 = base64.RawStdEncoding

// HashPassword returns the PHC string of password under p.
func HashPassword(password string, p Params) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read random salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ParseHash checks that hash is a well-formed argon2id PHC string and returns
// its parameters, salt and key.
func ParseHash(hash string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformedHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("%w: unsupported version %q", ErrMalformedHash, parts[2])
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil {
		return p, nil, nil, fmt.Errorf("%w: bad parameters %q", ErrMalformedHash, parts[3])
	}
	if p.Memory < 8 || p.Memory > 4<<20 || p.Time < 1 || p.Time > 100 || threads < 1 || threads > 255 {
		return p, nil, nil, fmt.Errorf("%w: parameters out of range %q", ErrMalformedHash, parts[3])
	}
	p.Threads = uint8(threads)
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, fmt.Errorf("%w: bad salt", ErrMalformedHash)
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, fmt.Errorf("%w: bad key", ErrMalformedHash)
	}
	p.SaltLen, p.KeyLen = len(salt), uint32(len(key))
	return p, salt, key, nil
}

// VerifyPassword reports whether password matches hash, in constant time
// with respect to the key.
func VerifyPassword(hash, password string) (bool, error) {
	p, salt, key, err := ParseHash(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	releaseMemory(p.Memory)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// releaseMinMemory (KiB) is the argon2 memory from which a verification is
// followed by returning the freed memory to the kernel.
const releaseMinMemory = 16 * 1024

// memRelease returns argon2id's buffer (19 MiB with DefaultParams, 64 MiB
// with older hashes) to the kernel after a login. The Go heap frees it at
// the next GC but keeps the pages, so one login would leave the server's
// RSS that much higher for minutes. debug.FreeOSMemory (a forced GC and scavenge) runs from a timer
// goroutine, at most once per interval: the first verification after a
// quiet period is followed by a release at once, those within the interval
// share one release at its end.
var memRelease = struct {
	mu       sync.Mutex
	pending  bool      // a release is scheduled
	last     time.Time // when the last release ran
	interval time.Duration
	free     func()
}{interval: 5 * time.Second, free: debug.FreeOSMemory}

// releaseMemory schedules the release after an argon2 pass over kib KiB.
func releaseMemory(kib uint32) {
	if kib < releaseMinMemory {
		return
	}
	r := &memRelease
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending {
		return
	}
	r.pending = true
	wait := max(r.interval-time.Since(r.last), 0)
	time.AfterFunc(wait, func() {
		r.mu.Lock()
		r.pending, r.last = false, time.Now()
		free := r.free
		r.mu.Unlock()
		free()
	})
}
