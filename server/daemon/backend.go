package daemon

import (
	"context"
	"errors"
	"io"

	"github.com/mailctl/mailctl/server/store"
)

// The daemon holds its mail store as a store.Backend: the embedded
// *store.Store (the default) or a PostgreSQL store that several nodes
// share (server/pgstore). What only the embedded store can do is asked
// through the small interfaces below, so that a store without it is
// answered clearly instead of by a type switch scattered over the daemon.

// storeSizer reports the bytes the store uses (the store_bytes metric and
// status field).
type storeSizer interface {
	Size() int64
}

// storeQuarantine lists the index entries and bodies the store set aside
// at open (status).
type storeQuarantine interface {
	Quarantined() []store.QuarantineEntry
}

// storeSnapshotter writes a consistent copy of the store while mail keeps
// flowing (backups).
type storeSnapshotter interface {
	Snapshot(ctx context.Context, add func(name string, size int64, r io.Reader) error) error
}

// errBackupPostgres is the answer to a backup of a node whose mail is in
// PostgreSQL: the database is backed up with its own tools.
var errBackupPostgres = errors.New("the store is PostgreSQL: back it up with pg_dump (docs/operations.md)")

// storeSize is the store's size on disk, 0 when the store cannot tell.
func storeSize(st store.Backend) int64 {
	if s, ok := st.(storeSizer); ok {
		return s.Size()
	}
	return 0
}

// storeQuarantined is the store's quarantine, empty for a store without one.
func storeQuarantined(st store.Backend) []store.QuarantineEntry {
	if q, ok := st.(storeQuarantine); ok {
		return q.Quarantined()
	}
	return nil
}
