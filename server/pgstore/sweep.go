package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Bodies outlive their last message (schema 4): Expunge, DeleteMailbox
// and the like only drop references (releaseBodies), so that a session
// that opened a body before another session or node expunged its message
// reads it to the end, as with the embedded store (whose bbolt read
// transaction keeps the body) and Dovecot. The sweeper deletes the bodies
// released longer than the grace ago. Every node runs one; they never
// wait for each other (FOR UPDATE SKIP LOCKED: a body is deleted by one
// of them), and each deletes in transactions of at most sweepBatch
// bodies. Quota and usage count a message as gone as soon as it is
// expunged: they do not depend on the sweeper.

// DefaultBodyGrace is how long a body stays readable after its last
// message went, by default: longer than any FETCH of one message.
const DefaultBodyGrace = 10 * time.Minute

// sweepBatch bounds the bodies deleted by one transaction of the sweeper.
const sweepBatch = 64

// SetBodyGrace sets how long a body stays readable, by the readers that
// opened it, after its last message was expunged (DefaultBodyGrace unless
// set; at least a millisecond). The sweeper of this Store deletes bodies
// released longer ago than that, checking every quarter of it (at most
// every minute); with several nodes, the shortest grace of any node
// applies.
func (s *Store) SetBodyGrace(grace time.Duration) {
	s.bodyGrace.Store(int64(max(grace, time.Millisecond)))
	select {
	case s.sweepWake <- struct{}{}:
	default:
	}
}

func (s *Store) grace() time.Duration {
	return time.Duration(s.bodyGrace.Load())
}

// startSweeper starts the sweeper of released bodies; stopSweeper stops
// it and waits for it.
func (s *Store) startSweeper() {
	s.bodyGrace.Store(int64(DefaultBodyGrace))
	s.sweepWake = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopSweeper = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		for {
			every := min(max(s.grace()/4, time.Millisecond), time.Minute)
			timer := time.NewTimer(every)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-s.sweepWake:
				timer.Stop()
				continue // a new grace: a new period
			case <-timer.C:
			}
			n, err := s.sweepBodies(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.logger.Warn("pgstore: sweep released bodies", "err", err)
			case n > 0:
				s.logger.Debug("pgstore: swept released bodies", "bodies", n)
			}
		}
	}()
}

// sweepBodies deletes the bodies released longer than the grace ago, in
// batches of at most sweepBatch, and returns how many it deleted. A body
// that a message uses is never deleted, whatever its refs say (a copy
// re-references a body only while a message holds it, so none should be
// released; the foreign key would refuse the deletion anyway, failing the
// batch).
func (s *Store) sweepBodies(ctx context.Context) (int, error) {
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM bodies WHERE id IN (
			SELECT b.id FROM bodies b
			WHERE b.released_at < now() - make_interval(secs => $1) AND b.refs <= 0
				AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = b.id)
			ORDER BY b.released_at LIMIT $2
			FOR UPDATE SKIP LOCKED)`, s.grace().Seconds(), sweepBatch)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return total, err
			}
			return total, fmt.Errorf("delete released bodies: %w", err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < sweepBatch {
			return total, nil
		}
	}
}
