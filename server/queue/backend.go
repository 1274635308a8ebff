package queue

import (
	"context"
	"errors"
	"io"
	"time"
)

// backend is where a Queue keeps its records and bodies: the embedded
// bbolt index with bodies in files (boltBackend, the default) or
// PostgreSQL, shared by several nodes (pgBackend). The scheduler, the
// delivery and the outcome logic (retries, DSNs) are the Queue's, the
// same for both.
type backend interface {
	// writeBody stores body where insert can refer to it and returns its
	// name, its size and, when signer is set, its DKIM-Signature fields.
	// It is not visible before insert commits; dropBody forgets it when
	// that fails.
	writeBody(ctx context.Context, body io.Reader, signer Signer) (blob string, size int64, sig string, err error)
	dropBody(blob string)
	// insert commits new records sharing blob: once it returns nil the
	// message is durable (Enqueue's acknowledgement).
	insert(ctx context.Context, msgs []*Message, blob string) error
	// get reads a record (ErrNotFound when it is gone).
	get(ctx context.Context, id string) (*Message, error)
	// openBody opens the body of a record.
	openBody(ctx context.Context, m *Message) (bodyReader, error)
	// settle commits the outcome of an attempt on m made under lease l
	// (nil for the embedded backend): nm replaces m, or m is removed when
	// done, and the records dsn (sharing dsnBlob) are added, all at once.
	// It fails with ErrNotFound when m was removed meanwhile and with
	// errLeaseLost when another node took m over.
	settle(ctx context.Context, l *lease, m, nm *Message, done bool, dsn []*Message, dsnBlob string) error
	list(ctx context.Context) ([]Message, error)
	// retry makes the record id (every record for "") due at now and
	// returns the ids changed.
	retry(ctx context.Context, id string, now time.Time) ([]string, error)
	remove(ctx context.Context, id string) error
	// warmupAllow counts one direct delivery against the cap of now's UTC
	// day, if below it; warmupStatus reads the count and cap.
	warmupAllow(ctx context.Context, now time.Time, w Warmup) (bool, error)
	warmupStatus(ctx context.Context, now time.Time, w Warmup) (sent, limit int, err error)
	close() error
}

// bodyReader is an open queued body.
type bodyReader interface {
	io.ReaderAt
	io.Closer
}

// lease is a node's claim on a record of the shared queue: token is drawn
// at each claim, and only its holder may record an outcome.
type lease struct {
	id, token string
}

// errLeaseLost is returned by settle when the record's lease is no
// longer ours: its expiry let another node claim it.
var errLeaseLost = errors.New("queue: lease lost to another node")
