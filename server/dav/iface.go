package dav

import (
	"context"
	"strconv"
	"strings"
)

// Backend is what the handler needs of a calendar and contacts store. Two
// implement it: *Store, one bbolt file per server (the default), and
// server/davpg's store, tables in the PostgreSQL database that several
// servers share. Both keep the same semantics, which the handler relies on:
//
//   - errors ErrNotFound, ErrPrecondition, ErrExists and ErrBadToken
//     (wrapped or not) for what they name;
//   - an object's ETag is ETagOf its bytes;
//   - PutObject and DeleteObject check their Conditions and write in one
//     atomic step: two writers holding the same If-Match cannot both
//     succeed;
//   - every change to an object takes the collection's next sequence
//     number, Collection.SyncToken names the current one, and
//     ChangesAfter reports the changes after a token, deletions included;
//     a collection deleted and made again has a new Epoch and refuses the
//     old tokens (ErrBadToken).
type Backend interface {
	// EnsureUser creates user's default calendar and address book the
	// first time the user is seen; later calls change nothing.
	EnsureUser(ctx context.Context, user string) error
	// Collections lists user's collections of kind, sorted by name.
	Collections(ctx context.Context, user string, kind Kind) ([]Collection, error)
	// Collection returns one collection.
	Collection(ctx context.Context, user string, kind Kind, name string) (Collection, error)
	// CreateCollection makes a new, empty collection (ErrExists if it is
	// there).
	CreateCollection(ctx context.Context, user string, c Collection) error
	// UpdateCollection changes a collection's properties (display name,
	// description, colour) with update, atomically.
	UpdateCollection(ctx context.Context, user string, kind Kind, name string, update func(*Collection)) error
	// DeleteCollection removes a collection and everything in it.
	DeleteCollection(ctx context.Context, user string, kind Kind, name string) error
	// Object returns one object.
	Object(ctx context.Context, user string, kind Kind, col, name string) (Object, error)
	// Objects returns all objects of a collection, sorted by name.
	Objects(ctx context.Context, user string, kind Kind, col string) ([]Object, error)
	// ObjectsAfter returns up to n objects whose names sort after after
	// ("": from the first), in name order.
	ObjectsAfter(ctx context.Context, user string, kind Kind, col, after string, n int) ([]Object, error)
	// PutObject stores data as name, if cond holds; created says whether
	// the object is new.
	PutObject(ctx context.Context, user string, kind Kind, col, name string, data []byte, cond Conditions) (o Object, created bool, err error)
	// DeleteObject removes an object, if cond holds.
	DeleteObject(ctx context.Context, user string, kind Kind, col, name string, cond Conditions) error
	// Changes answers a sync-collection in one piece (see Store.Changes).
	Changes(ctx context.Context, user string, kind Kind, col, token string) ([]Change, Collection, error)
	// ChangesAfter is Changes a batch at a time (see Store.ChangesAfter).
	ChangesAfter(ctx context.Context, user string, kind Kind, col, token string, after, upTo uint64, n int) ([]Change, Collection, error)
}

var _ Backend = (*Store)(nil)

// CheckConditions reports ErrPrecondition if cond does not hold for the
// object cur (exists: whether there is one), as every Backend must.
func CheckConditions(cond Conditions, cur Object, exists bool) error {
	return cond.check(cur, exists)
}

// ParseSyncToken returns the sequence number of token, a token of a
// collection of epoch whose current sequence number is seq; ErrBadToken
// if the collection never issued it.
func ParseSyncToken(token, epoch string, seq uint64) (uint64, error) {
	rest, ok := strings.CutPrefix(token, "urn:x-mailctl:sync:"+epoch+":")
	if !ok {
		return 0, ErrBadToken
	}
	since, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || since > seq {
		return 0, ErrBadToken
	}
	return since, nil
}

// NewEpoch returns a fresh collection epoch (Collection.Epoch).
func NewEpoch() string { return newEpoch() }
