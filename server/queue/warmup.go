package queue

import (
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// WarmupFirstCap is the daily cap of direct deliveries in the first week
// of the warm-up ramp; it doubles every week.
const WarmupFirstCap = 50

// WarmupCap returns the daily cap of direct deliveries at now for a ramp
// started at start and lifted after weeks weeks; -1 means no cap.
func WarmupCap(start, now time.Time, weeks int) int {
	if weeks <= 0 {
		return -1
	}
	if now.Before(start) {
		return WarmupFirstCap
	}
	w := int(now.Sub(start) / (7 * 24 * time.Hour))
	if w >= weeks {
		return -1
	}
	return WarmupFirstCap << w
}

var keyWarmupStart = []byte("start")

// warmupAllow counts one direct delivery against today's cap (UTC days).
// When the cap is reached it returns false and the start of the next day.
func (q *Queue) warmupAllow(now time.Time) (bool, time.Time, error) {
	w := q.opts.Warmup
	if w.Weeks <= 0 {
		return true, time.Time{}, nil
	}
	allowed := true
	err := q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWarmup)
		start := w.Start
		if start.IsZero() {
			if v := b.Get(keyWarmupStart); v != nil {
				if err := start.UnmarshalText(v); err != nil {
					return fmt.Errorf("decode warm-up start: %w", err)
				}
			} else {
				start = now
				v, _ := now.UTC().MarshalText()
				if err := b.Put(keyWarmupStart, v); err != nil {
					return err
				}
			}
		}
		limit := WarmupCap(start, now, w.Weeks)
		if limit < 0 {
			return nil
		}
		key := []byte("day:" + now.UTC().Format(time.DateOnly))
		n := 0
		if v := b.Get(key); v != nil {
			n, _ = strconv.Atoi(string(v))
		}
		if n >= limit {
			allowed = false
			return nil
		}
		return b.Put(key, []byte(strconv.Itoa(n+1)))
	})
	if err != nil {
		return true, time.Time{}, fmt.Errorf("warm-up counter: %w", err)
	}
	y, m, d := now.UTC().Date()
	return allowed, time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC), nil
}

// WarmupStatus returns today's count of direct deliveries and cap (-1: none).
func (q *Queue) WarmupStatus(now time.Time) (sent, limit int, err error) {
	w := q.opts.Warmup
	limit = -1
	err = q.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWarmup)
		if v := b.Get([]byte("day:" + now.UTC().Format(time.DateOnly))); v != nil {
			sent, _ = strconv.Atoi(string(v))
		}
		start := w.Start
		if start.IsZero() {
			if v := b.Get(keyWarmupStart); v != nil {
				start.UnmarshalText(v)
			} else {
				start = now
			}
		}
		limit = WarmupCap(start, now, w.Weeks)
		return nil
	})
	return sent, limit, err
}
