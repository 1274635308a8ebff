package queue

import (
	"context"
	"fmt"
	"time"
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

// warmupAllow counts one direct delivery against today's cap (UTC days).
// When the cap is reached it returns false and the start of the next day.
func (q *Queue) warmupAllow(now time.Time) (bool, time.Time, error) {
	w := q.opts.Warmup
	if w.Weeks <= 0 {
		return true, time.Time{}, nil
	}
	allowed, err := q.be.warmupAllow(context.Background(), now, w)
	if err != nil {
		return true, time.Time{}, fmt.Errorf("warm-up counter: %w", err)
	}
	y, m, d := now.UTC().Date()
	return allowed, time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC), nil
}

// WarmupStatus returns today's count of direct deliveries and cap (-1: none).
func (q *Queue) WarmupStatus(now time.Time) (sent, limit int, err error) {
	return q.be.warmupStatus(context.Background(), now, q.opts.Warmup)
}
