// Package davpg keeps calendars and address books (server/dav) in the
// PostgreSQL database that several mailctl serve nodes share (issue 20).
//
// Why: the embedded calendar store is one bbolt file per node, so a user's
// CalDAV/CardDAV client saw different calendars on each node of a domain.
// On a node whose mail is in PostgreSQL (store.postgres_url_file), the
// daemon serves DAV from this package instead, on the same connection
// pool: every node sees the same collections, objects and sync tokens.
//
// How: the tables of the pgstore migration "dav" (dav_users,
// dav_collections, dav_objects, dav_changes) hold what the bbolt store
// holds in buckets, with the same semantics (dav.Backend):
//
//   - a write (PutObject, DeleteObject, UpdateCollection) is one
//     transaction that first locks the collection's row (SELECT ... FOR
//     UPDATE). Under that lock it reads the object, checks the request's
//     If-Match/If-None-Match, takes the collection's next sequence number
//     and writes the object and its change-log row. Two nodes PUTting the
//     same object with the same If-Match therefore take turns: the second
//     sees the first one's ETag and gets 412, no update is lost silently.
//     The lock is per collection, as the bbolt store's single writer is per
//     file: DAV writes are rare and small, and one lock keeps the sequence
//     numbers gapless and in commit order, which sync tokens rely on (a
//     reader that saw number n has seen every change up to n).
//   - reads of the change log (ChangesAfter) run in one REPEATABLE READ
//     transaction, so the collection's current number and the changes
//     read agree.
//   - names sort bytewise (COLLATE "C"), as bbolt's keys do.
//
// The SQL is written here rather than through a query builder or ORM: the
// few statements need row locks and ON CONFLICT clauses that such a
// library would only pass through; pgx (the project's PostgreSQL driver)
// runs them.
package davpg

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/dav"
)

// Store is a dav.Backend on PostgreSQL. The schema is pgstore's (its
// migrations create the tables); Store does not migrate.
type Store struct {
	pool  *pgxpool.Pool
	known sync.Map // users whose EnsureUser has been done: string -> struct{}
}

var _ dav.Backend = (*Store)(nil)

// New returns a store on pool, a pool on a database that pgstore.Migrate
// has brought to a schema with the dav tables.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// EnsureUser creates user's default calendar and address book the first
// time any node sees the user; later calls change nothing, even if the
// user deleted them. A node remembers the users it has done.
func (s *Store) EnsureUser(ctx context.Context, user string) error {
	if _, ok := s.known.Load(user); ok {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO dav_users (name) VALUES ($1) ON CONFLICT DO NOTHING`, user)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		for _, c := range []dav.Collection{
			{Kind: dav.Calendars, Name: dav.DefaultCollection, DisplayName: "Calendar"},
			{Kind: dav.AddressBooks, Name: dav.DefaultCollection, DisplayName: "Contacts"},
		} {
			if _, err := insertCollection(ctx, tx, user, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create default collections of %s: %w", user, err)
	}
	s.known.Store(user, struct{}{})
	return nil
}

// insertCollection adds c, reporting false if it is there already.
func insertCollection(ctx context.Context, tx pgx.Tx, user string, c dav.Collection) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO dav_collections (owner, kind, name, display_name, description, color, epoch)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (owner, kind, name) DO NOTHING`,
		user, string(c.Kind), c.Name, c.DisplayName, c.Description, c.Color, dav.NewEpoch())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

const colColumns = `id, name, display_name, description, color, epoch, seq`

func scanCollection(row pgx.Row, kind dav.Kind) (int64, dav.Collection, error) {
	c := dav.Collection{Kind: kind}
	var id, seq int64
	err := row.Scan(&id, &c.Name, &c.DisplayName, &c.Description, &c.Color, &c.Epoch, &seq)
	c.Seq = uint64(seq)
	return id, c, err
}

// getCollection reads a collection (locking its row with lock: "FOR
// UPDATE" or "").
func getCollection(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, user string, kind dav.Kind, name, lock string) (int64, dav.Collection, error) {
	id, c, err := scanCollection(q.QueryRow(ctx, `SELECT `+colColumns+` FROM dav_collections
		WHERE owner = $1 AND kind = $2 AND name = $3 `+lock, user, string(kind), name), kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, c, dav.ErrNotFound
	}
	return id, c, err
}

// Collections lists user's collections of kind, sorted by name.
func (s *Store) Collections(ctx context.Context, user string, kind dav.Kind) ([]dav.Collection, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+colColumns+` FROM dav_collections
		WHERE owner = $1 AND kind = $2 ORDER BY name`, user, string(kind))
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", kind, user, err)
	}
	defer rows.Close()
	var cols []dav.Collection
	for rows.Next() {
		_, c, err := scanCollection(rows, kind)
		if err != nil {
			return nil, fmt.Errorf("list %s of %s: %w", kind, user, err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", kind, user, err)
	}
	return cols, nil
}

// Collection returns one collection.
func (s *Store) Collection(ctx context.Context, user string, kind dav.Kind, name string) (dav.Collection, error) {
	_, c, err := getCollection(ctx, s.pool, user, kind, name, "")
	if err != nil {
		return c, fmt.Errorf("read %s %s of %s: %w", kind, name, user, err)
	}
	return c, nil
}

// CreateCollection makes a new, empty collection (dav.ErrExists if the
// name is taken). A user whose first act is to create a collection gets no
// default ones on top, as with the bbolt store.
func (s *Store) CreateCollection(ctx context.Context, user string, c dav.Collection) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO dav_users (name) VALUES ($1) ON CONFLICT DO NOTHING`, user); err != nil {
			return err
		}
		ok, err := insertCollection(ctx, tx, user, c)
		if err == nil && !ok {
			err = dav.ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create %s %s of %s: %w", c.Kind, c.Name, user, err)
	}
	return nil
}

// UpdateCollection changes a collection's properties (display name,
// description, colour) with update, under the collection's row lock.
func (s *Store) UpdateCollection(ctx context.Context, user string, kind dav.Kind, name string, update func(*dav.Collection)) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		id, c, err := getCollection(ctx, tx, user, kind, name, "FOR UPDATE")
		if err != nil {
			return err
		}
		update(&c)
		_, err = tx.Exec(ctx, `UPDATE dav_collections SET display_name = $2, description = $3, color = $4 WHERE id = $1`,
			id, c.DisplayName, c.Description, c.Color)
		return err
	})
	if err != nil {
		return fmt.Errorf("update %s %s of %s: %w", kind, name, user, err)
	}
	return nil
}

// DeleteCollection removes a collection and everything in it; one made
// again under the same name has a new epoch, so old sync tokens fail.
func (s *Store) DeleteCollection(ctx context.Context, user string, kind dav.Kind, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM dav_collections WHERE owner = $1 AND kind = $2 AND name = $3`, user, string(kind), name)
	if err == nil && tag.RowsAffected() == 0 {
		err = dav.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete %s %s of %s: %w", kind, name, user, err)
	}
	return nil
}

const objColumns = `o.name, o.etag, o.mod_time, o.seq, o.data`

func scanObject(row pgx.Row) (dav.Object, error) {
	var o dav.Object
	var seq int64
	err := row.Scan(&o.Name, &o.ETag, &o.ModTime, &seq, &o.Data)
	o.Seq = uint64(seq)
	o.ModTime = o.ModTime.UTC()
	return o, err
}

// Object returns one object.
func (s *Store) Object(ctx context.Context, user string, kind dav.Kind, col, name string) (dav.Object, error) {
	o, err := scanObject(s.pool.QueryRow(ctx, `SELECT `+objColumns+` FROM dav_objects o
		JOIN dav_collections c ON c.id = o.collection_id
		WHERE c.owner = $1 AND c.kind = $2 AND c.name = $3 AND o.name = $4`, user, string(kind), col, name))
	if errors.Is(err, pgx.ErrNoRows) {
		err = dav.ErrNotFound
	}
	if err != nil {
		return dav.Object{}, fmt.Errorf("read %s/%s of %s: %w", col, name, user, err)
	}
	return o, nil
}

// Objects returns all objects of a collection, sorted by name.
func (s *Store) Objects(ctx context.Context, user string, kind dav.Kind, col string) ([]dav.Object, error) {
	return s.ObjectsAfter(ctx, user, kind, col, "", -1)
}

// ObjectsAfter returns up to n (n < 0: all) objects of a collection whose
// names sort after after ("": from the first), in name order.
func (s *Store) ObjectsAfter(ctx context.Context, user string, kind dav.Kind, col, after string, n int) ([]dav.Object, error) {
	var objs []dav.Object
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		id, _, err := getCollection(ctx, tx, user, kind, col, "")
		if err != nil {
			return err
		}
		limit := int64(math.MaxInt64)
		if n >= 0 {
			limit = int64(n)
		}
		rows, err := tx.Query(ctx, `SELECT `+objColumns+` FROM dav_objects o
			WHERE o.collection_id = $1 AND o.name > $2 ORDER BY o.name LIMIT $3`, id, after, limit)
		if err != nil {
			return err
		}
		objs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (dav.Object, error) { return scanObject(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s %s of %s: %w", kind, col, user, err)
	}
	return objs, nil
}

// write runs fn on the locked collection in a transaction, then takes the
// collection's next sequence number and records that name changed with it.
// fn returns an error to write nothing.
func (s *Store) write(ctx context.Context, user string, kind dav.Kind, col, name string, cond dav.Conditions, fn func(tx pgx.Tx, id int64, seq uint64, cur dav.Object, exists bool) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		id, c, err := getCollection(ctx, tx, user, kind, col, "FOR UPDATE")
		if err != nil {
			return err
		}
		// Read under the lock: READ COMMITTED gives this statement a
		// snapshot taken after the lock was granted, so it sees the
		// previous writer's commit.
		cur, err := scanObject(tx.QueryRow(ctx, `SELECT `+objColumns+` FROM dav_objects o
			WHERE o.collection_id = $1 AND o.name = $2`, id, name))
		exists := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := dav.CheckConditions(cond, cur, exists); err != nil {
			return err
		}
		seq := c.Seq + 1
		if _, err := tx.Exec(ctx, `UPDATE dav_collections SET seq = $2 WHERE id = $1`, id, int64(seq)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dav_changes (collection_id, name, seq) VALUES ($1, $2, $3)
			ON CONFLICT (collection_id, name) DO UPDATE SET seq = EXCLUDED.seq`, id, name, int64(seq)); err != nil {
			return err
		}
		return fn(tx, id, seq, cur, exists)
	})
}

// PutObject stores data as name in a collection, if cond holds. created
// says whether the object is new.
func (s *Store) PutObject(ctx context.Context, user string, kind dav.Kind, col, name string, data []byte, cond dav.Conditions) (o dav.Object, created bool, err error) {
	err = s.write(ctx, user, kind, col, name, cond, func(tx pgx.Tx, id int64, seq uint64, _ dav.Object, exists bool) error {
		created = !exists
		o = dav.Object{Name: name, ETag: dav.ETagOf(data), ModTime: time.Now().UTC().Truncate(time.Second), Seq: seq, Data: data}
		_, err := tx.Exec(ctx, `INSERT INTO dav_objects (collection_id, name, etag, mod_time, seq, data)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (collection_id, name) DO UPDATE SET etag = EXCLUDED.etag, mod_time = EXCLUDED.mod_time,
				seq = EXCLUDED.seq, data = EXCLUDED.data`,
			id, name, o.ETag, o.ModTime, int64(seq), data)
		return err
	})
	if err != nil {
		return dav.Object{}, false, fmt.Errorf("store %s/%s of %s: %w", col, name, user, err)
	}
	return o, created, nil
}

// DeleteObject removes an object, if cond holds.
func (s *Store) DeleteObject(ctx context.Context, user string, kind dav.Kind, col, name string, cond dav.Conditions) error {
	err := s.write(ctx, user, kind, col, name, cond, func(tx pgx.Tx, id int64, _ uint64, _ dav.Object, exists bool) error {
		if !exists {
			return dav.ErrNotFound
		}
		_, err := tx.Exec(ctx, `DELETE FROM dav_objects WHERE collection_id = $1 AND name = $2`, id, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete %s/%s of %s: %w", col, name, user, err)
	}
	return nil
}

// Changes answers a sync-collection (dav.Store.Changes).
func (s *Store) Changes(ctx context.Context, user string, kind dav.Kind, col, token string) ([]dav.Change, dav.Collection, error) {
	return s.ChangesAfter(ctx, user, kind, col, token, 0, math.MaxUint64, -1)
}

// ChangesAfter is Changes a batch at a time (dav.Store.ChangesAfter): up
// to n changes (n < 0: all) numbered above after and at most upTo, read
// with the collection in one snapshot.
func (s *Store) ChangesAfter(ctx context.Context, user string, kind dav.Kind, col, token string, after, upTo uint64, n int) (changes []dav.Change, c dav.Collection, err error) {
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var id int64
		id, c, err = getCollection(ctx, tx, user, kind, col, "")
		if err != nil {
			return err
		}
		var since uint64
		if token != "" {
			if since, err = dav.ParseSyncToken(token, c.Epoch, c.Seq); err != nil {
				return err
			}
		}
		since = max(since, after)
		// Sequence numbers are below 2^63 (a bigint): clamp what
		// callers pass as "no bound".
		upTo = min(upTo, math.MaxInt64)
		limit := int64(math.MaxInt64)
		if n >= 0 {
			limit = int64(n)
		}
		rows, err := tx.Query(ctx, `SELECT l.name, l.seq, o.name IS NOT NULL, o.etag, o.mod_time, o.seq, o.data
			FROM dav_changes l
			LEFT JOIN dav_objects o ON o.collection_id = l.collection_id AND o.name = l.name
			WHERE l.collection_id = $1 AND l.seq > $2 AND l.seq <= $3 AND ($4 OR o.name IS NOT NULL)
			ORDER BY l.seq LIMIT $5`, id, int64(since), int64(upTo), token != "", limit)
		if err != nil {
			return err
		}
		changes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (dav.Change, error) {
			var ch dav.Change
			var seq int64
			var exists bool
			var etag *string
			var mod *time.Time
			var oseq *int64
			var data []byte
			if err := r.Scan(&ch.Name, &seq, &exists, &etag, &mod, &oseq, &data); err != nil {
				return ch, err
			}
			ch.Seq = uint64(seq)
			ch.Deleted = !exists
			if exists {
				ch.Object = dav.Object{Name: ch.Name, ETag: *etag, ModTime: mod.UTC(), Seq: uint64(*oseq), Data: data}
			}
			return ch, nil
		})
		return err
	})
	if err != nil {
		return nil, c, fmt.Errorf("changes of %s %s of %s: %w", kind, col, user, err)
	}
	return changes, c, nil
}
