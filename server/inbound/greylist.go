package inbound

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	bolt "go.etcd.io/bbolt"
)

// Clock tells the time; tests move it forward.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// GreylistOptions configure a Greylist; zero values take the defaults.
type GreylistOptions struct {
	// Delay before a retry of a new triplet is accepted (default 5m).
	Delay time.Duration
	// PendingTTL is how long an unconfirmed triplet is remembered (default
	// 2 days); PassedTTL how long a confirmed one stays whitelisted after
	// its last use (default 36 days).
	PendingTTL, PassedTTL time.Duration
	Clock                 Clock
}

// Greylist defers mail from unknown (client network, sender, recipient)
// triplets: the first attempt gets 451 4.7.1, a retry after the delay is
// accepted and the triplet is then whitelisted. The client network is the
// /24 of an IPv4 address (the /64 of an IPv6 one), so that a sender's pool
// of outgoing servers retries as one. State is kept in a bbolt file
// (OpenGreylist) or, shared by several nodes, in PostgreSQL
// (OpenGreylistPostgres, greylist_pg.go).
type Greylist struct {
	db   *bolt.DB
	pg   *pgxpool.Pool
	opts GreylistOptions
}

var bucketGrey = []byte("greylist")

// OpenGreylist opens (creating) the greylist database at path.
func OpenGreylist(path string, opts GreylistOptions) (*Greylist, error) {
	opts = opts.withDefaults()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open greylist %q: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketGrey)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open greylist %q: %w", path, err)
	}
	return &Greylist{db: db, opts: opts}, nil
}

func (opts GreylistOptions) withDefaults() GreylistOptions {
	if opts.Delay <= 0 {
		opts.Delay = 5 * time.Minute
	}
	if opts.PendingTTL <= 0 {
		opts.PendingTTL = 48 * time.Hour
	}
	if opts.PassedTTL <= 0 {
		opts.PassedTTL = 36 * 24 * time.Hour
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	return opts
}

// Close closes the database (the PostgreSQL pool stays open: it is the
// caller's).
func (g *Greylist) Close() error {
	if g.pg != nil {
		return nil
	}
	return g.db.Close()
}

// greyKey is a triplet's key, its parts joined by sep: NUL in bbolt, a
// line feed in PostgreSQL (text cannot hold NUL; neither can appear in an
// address).
func greyKey(ip net.IP, from, rcpt, sep string) string {
	return network(ip) + sep + strings.ToLower(from) + sep + strings.ToLower(rcpt)
}

func network(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String() + "/24"
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// record: first seen (unix seconds), last seen, passed (0/1).
func encodeGrey(first, last time.Time, passed bool) []byte {
	b := make([]byte, 17)
	binary.BigEndian.PutUint64(b, uint64(first.Unix()))
	binary.BigEndian.PutUint64(b[8:], uint64(last.Unix()))
	if passed {
		b[16] = 1
	}
	return b
}

func decodeGrey(b []byte) (first, last time.Time, passed bool, ok bool) {
	if len(b) != 17 {
		return time.Time{}, time.Time{}, false, false
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0), time.Unix(int64(binary.BigEndian.Uint64(b[8:])), 0), b[16] == 1, true
}

// Check records the triplet and reports whether it may pass now; when not,
// wait is the time left.
func (g *Greylist) Check(ctx context.Context, ip net.IP, from, rcpt string) (ok bool, wait time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	now := g.opts.Clock.Now()
	if g.pg != nil {
		return g.checkPG(ctx, now, greyKey(ip, from, rcpt, "\n"))
	}
	key := []byte(greyKey(ip, from, rcpt, "\x00"))
	err = g.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGrey)
		first, last, passed, found := decodeGrey(b.Get(key))
		switch {
		case found && passed && now.Sub(last) < g.opts.PassedTTL:
			ok = true
			return b.Put(key, encodeGrey(first, now, true))
		case found && !passed && now.Sub(first) < g.opts.PendingTTL:
			if elapsed := now.Sub(first); elapsed >= g.opts.Delay {
				ok = true
				return b.Put(key, encodeGrey(first, now, true))
			} else {
				wait = g.opts.Delay - elapsed
				return b.Put(key, encodeGrey(first, now, false))
			}
		default:
			wait = g.opts.Delay
			return b.Put(key, encodeGrey(now, now, false))
		}
	})
	if err != nil {
		return false, 0, fmt.Errorf("greylist check: %w", err)
	}
	return ok, wait, nil
}

// Expire removes stale triplets; call it now and then.
func (g *Greylist) Expire(ctx context.Context) (int, error) {
	now := g.opts.Clock.Now()
	if g.pg != nil {
		return g.expirePG(ctx, now)
	}
	n := 0
	err := g.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketGrey).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			first, last, passed, ok := decodeGrey(v)
			if !ok || passed && now.Sub(last) >= g.opts.PassedTTL || !passed && now.Sub(first) >= g.opts.PendingTTL {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("expire greylist: %w", err)
	}
	return n, nil
}
