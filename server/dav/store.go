package dav

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/procmem"
)

// Kind is the kind of a collection: calendars or address books.
type Kind string

const (
	Calendars    Kind = "calendars"
	AddressBooks Kind = "contacts"
)

// DefaultCollection is the name of the calendar and of the address book
// created on a user's first access.
const DefaultCollection = "default"

// FileName is the name of the store's file in the data directory.
const FileName = "dav.db"

var (
	// ErrNotFound: no such collection or object.
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: an If-Match or If-None-Match did not hold.
	ErrPrecondition = errors.New("precondition failed")
	// ErrExists: the collection already exists.
	ErrExists = errors.New("already exists")
	// ErrBadToken: a sync token this collection never issued.
	ErrBadToken = errors.New("invalid sync token")
)

var (
	bucketUsers = []byte("users")
	keyInit     = []byte("init")
	keyMeta     = []byte("meta")
	bucketObjs  = []byte("o")
	bucketLog   = []byte("l")
	bucketLast  = []byte("n")
)

// Collection is a calendar or an address book.
type Collection struct {
	Kind        Kind   `json:"-"`
	Name        string `json:"-"`
	DisplayName string `json:"display_name,omitempty"`
	Description string `json:"description,omitempty"`
	// Color is a calendar's colour, "#RRGGBB" or "#RRGGBBAA" (Apple's
	// calendar-color property, set by PROPPATCH).
	Color string `json:"color,omitempty"`
	// Epoch identifies this incarnation of the collection in sync tokens:
	// a collection deleted and made again does not accept old tokens.
	Epoch string `json:"epoch"`
	// Seq counts the changes to the collection's objects.
	Seq uint64 `json:"seq"`
}

// SyncToken is the collection's current RFC 6578 sync token.
func (c Collection) SyncToken() string { return syncToken(c.Epoch, c.Seq) }

func syncToken(epoch string, seq uint64) string {
	return "urn:x-mailctl:sync:" + epoch + ":" + strconv.FormatUint(seq, 10)
}

// Object is one calendar object (an iCalendar file) or vCard.
type Object struct {
	Name    string    `json:"-"`
	ETag    string    `json:"etag"`
	ModTime time.Time `json:"mod"`
	Seq     uint64    `json:"seq"`
	Data    []byte    `json:"data"`
}

// Store keeps calendars and address books in one bbolt file. Every
// change is one transaction, written and fsynced before it returns.
type Store struct {
	db *bolt.DB

	mappedBase atomic.Int64 // file-backed resident bytes after the last trim (mapped.go)
	sinceCheck atomic.Int64 // bytes read or written since the last look at them
	trimming   sync.Mutex   // held while the mapping is trimmed
}

// Open opens (creating if needed) the store at path.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create calendar store directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open calendar store %q: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketUsers)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise calendar store %q: %w", path, err)
	}
	s := &Store{db: db}
	if n, err := procmem.FileResident(); err == nil {
		s.mappedBase.Store(n)
	}
	return s, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// DB returns the bbolt database, for backups (a read transaction's WriteTo).
func (s *Store) DB() *bolt.DB { return s.db }

func colKey(kind Kind, name string) []byte { return []byte("c:" + string(kind) + ":" + name) }

func seqKey(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ETagOf is the entity tag of an object's bytes.
func ETagOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// EnsureUser creates user's default calendar and address book the first
// time the user is seen; later calls change nothing, even if the user
// deleted them.
func (s *Store) EnsureUser(ctx context.Context, user string) error {
	var done bool
	s.db.View(func(tx *bolt.Tx) error {
		ub := tx.Bucket(bucketUsers).Bucket([]byte(user))
		done = ub != nil && ub.Get(keyInit) != nil
		return nil
	})
	if done {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ub, err := tx.Bucket(bucketUsers).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		if ub.Get(keyInit) != nil {
			return nil
		}
		for _, c := range []Collection{
			{Kind: Calendars, Name: DefaultCollection, DisplayName: "Calendar"},
			{Kind: AddressBooks, Name: DefaultCollection, DisplayName: "Contacts"},
		} {
			if err := createCol(ub, c); err != nil && !errors.Is(err, ErrExists) {
				return err
			}
		}
		return ub.Put(keyInit, []byte("1"))
	})
	if err != nil {
		return fmt.Errorf("create default collections of %s: %w", user, err)
	}
	return nil
}

func createCol(ub *bolt.Bucket, c Collection) error {
	if ub.Bucket(colKey(c.Kind, c.Name)) != nil {
		return ErrExists
	}
	cb, err := ub.CreateBucket(colKey(c.Kind, c.Name))
	if err != nil {
		return err
	}
	for _, n := range [][]byte{bucketObjs, bucketLog, bucketLast} {
		if _, err := cb.CreateBucket(n); err != nil {
			return err
		}
	}
	c.Epoch = newEpoch()
	c.Seq = 0
	return putMeta(cb, c)
}

func putMeta(cb *bolt.Bucket, c Collection) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return cb.Put(keyMeta, b)
}

func getMeta(cb *bolt.Bucket, kind Kind, name string) (Collection, error) {
	var c Collection
	if err := json.Unmarshal(cb.Get(keyMeta), &c); err != nil {
		return c, fmt.Errorf("decode collection %s/%s: %w", kind, name, err)
	}
	c.Kind, c.Name = kind, name
	return c, nil
}

func colBucket(tx *bolt.Tx, user string, kind Kind, name string) (*bolt.Bucket, error) {
	ub := tx.Bucket(bucketUsers).Bucket([]byte(user))
	if ub == nil {
		return nil, ErrNotFound
	}
	cb := ub.Bucket(colKey(kind, name))
	if cb == nil {
		return nil, ErrNotFound
	}
	return cb, nil
}

// Users lists the users that have collections, sorted.
func (s *Store) Users(ctx context.Context) ([]string, error) {
	var users []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEachBucket(func(k []byte) error {
			users = append(users, string(k))
			return nil
		})
	})
	return users, err
}

// Collections lists user's collections of kind, sorted by name.
func (s *Store) Collections(ctx context.Context, user string, kind Kind) ([]Collection, error) {
	var cols []Collection
	prefix := string(colKey(kind, ""))
	err := s.db.View(func(tx *bolt.Tx) error {
		ub := tx.Bucket(bucketUsers).Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		return ub.ForEachBucket(func(k []byte) error {
			name, ok := strings.CutPrefix(string(k), prefix)
			if !ok {
				return nil
			}
			c, err := getMeta(ub.Bucket(k), kind, name)
			if err != nil {
				return err
			}
			cols = append(cols, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", kind, user, err)
	}
	sort.Slice(cols, func(i, j int) bool { return cols[i].Name < cols[j].Name })
	return cols, nil
}

// Collection returns one collection.
func (s *Store) Collection(ctx context.Context, user string, kind Kind, name string) (Collection, error) {
	var c Collection
	err := s.db.View(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, name)
		if err != nil {
			return err
		}
		c, err = getMeta(cb, kind, name)
		return err
	})
	return c, err
}

// CreateCollection makes a new, empty collection.
func (s *Store) CreateCollection(ctx context.Context, user string, c Collection) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		ub, err := tx.Bucket(bucketUsers).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		if ub.Get(keyInit) == nil {
			// A client creating its own collection before any other
			// access: no default ones on top.
			if err := ub.Put(keyInit, []byte("1")); err != nil {
				return err
			}
		}
		return createCol(ub, c)
	})
	if err != nil && !errors.Is(err, ErrExists) {
		return fmt.Errorf("create %s %s of %s: %w", c.Kind, c.Name, user, err)
	}
	return err
}

// UpdateCollection changes a collection's properties (display name,
// description, colour) with update, in one transaction.
func (s *Store) UpdateCollection(ctx context.Context, user string, kind Kind, name string, update func(*Collection)) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, name)
		if err != nil {
			return err
		}
		c, err := getMeta(cb, kind, name)
		if err != nil {
			return err
		}
		update(&c)
		return putMeta(cb, c)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("update %s %s of %s: %w", kind, name, user, err)
	}
	return err
}

// DeleteCollection removes a collection and everything in it.
func (s *Store) DeleteCollection(ctx context.Context, user string, kind Kind, name string) error {
	defer s.checkMapped()
	return s.db.Update(func(tx *bolt.Tx) error {
		ub := tx.Bucket(bucketUsers).Bucket([]byte(user))
		if ub == nil || ub.Bucket(colKey(kind, name)) == nil {
			return ErrNotFound
		}
		return ub.DeleteBucket(colKey(kind, name))
	})
}

func getObj(cb *bolt.Bucket, name string) (Object, bool, error) {
	v := cb.Bucket(bucketObjs).Get([]byte(name))
	if v == nil {
		return Object{}, false, nil
	}
	var o Object
	if err := json.Unmarshal(v, &o); err != nil {
		return o, false, fmt.Errorf("decode object %s: %w", name, err)
	}
	o.Name = name
	return o, true, nil
}

// Object returns one object.
func (s *Store) Object(ctx context.Context, user string, kind Kind, col, name string) (Object, error) {
	var o Object
	err := s.db.View(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, col)
		if err != nil {
			return err
		}
		var ok bool
		o, ok, err = getObj(cb, name)
		if err == nil && !ok {
			err = ErrNotFound
		}
		s.readMapped(tx, len(o.Data))
		return err
	})
	return o, err
}

// Objects returns all objects of a collection, sorted by name.
func (s *Store) Objects(ctx context.Context, user string, kind Kind, col string) ([]Object, error) {
	var objs []Object
	err := s.db.View(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, col)
		if err != nil {
			return err
		}
		return cb.Bucket(bucketObjs).ForEach(func(k, v []byte) error {
			var o Object
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("decode object %s: %w", k, err)
			}
			o.Name = string(k)
			objs = append(objs, o)
			if len(objs)%reportBatch == 0 {
				s.checkMappedTx(tx)
			}
			return nil
		})
	})
	return objs, err
}

// ObjectsAfter returns up to n objects of a collection whose names sort
// after after ("": from the first), in name order: a REPORT reads a large
// collection this way, one short read transaction per batch.
func (s *Store) ObjectsAfter(ctx context.Context, user string, kind Kind, col, after string, n int) ([]Object, error) {
	objs := make([]Object, 0, n)
	err := s.db.View(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, col)
		if err != nil {
			return err
		}
		c := cb.Bucket(bucketObjs).Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(objs) < n; k, v = c.Next() {
			var o Object
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("decode object %s: %w", k, err)
			}
			o.Name = string(k)
			objs = append(objs, o)
		}
		// A scan's batch: the pages around those read are mapped
		// too (fault-around), look at once.
		s.checkMappedTx(tx)
		return nil
	})
	return objs, err
}

// Conditions are the If-Match / If-None-Match of a request: an entity tag
// (unquoted), "*" or "" for none.
type Conditions struct {
	IfMatch     string
	IfNoneMatch string
}

func (c Conditions) check(cur Object, exists bool) error {
	switch {
	case c.IfMatch == "*" && !exists,
		c.IfMatch != "" && c.IfMatch != "*" && (!exists || cur.ETag != c.IfMatch),
		c.IfNoneMatch == "*" && exists,
		c.IfNoneMatch != "" && c.IfNoneMatch != "*" && exists && cur.ETag == c.IfNoneMatch:
		return ErrPrecondition
	}
	return nil
}

// logChange records that name changed as the collection's next sequence
// number, replacing the earlier record of the same name: the log holds
// one entry per name ever stored, deleted ones included (tombstones).
func logChange(cb *bolt.Bucket, c *Collection, name string) (uint64, error) {
	c.Seq++
	last := cb.Bucket(bucketLast)
	lg := cb.Bucket(bucketLog)
	if prev := last.Get([]byte(name)); prev != nil {
		if err := lg.Delete(prev); err != nil {
			return 0, err
		}
	}
	if err := lg.Put(seqKey(c.Seq), []byte(name)); err != nil {
		return 0, err
	}
	if err := last.Put([]byte(name), seqKey(c.Seq)); err != nil {
		return 0, err
	}
	return c.Seq, putMeta(cb, *c)
}

// PutObject stores data as name in a collection, if cond holds. created
// says whether the object is new.
func (s *Store) PutObject(ctx context.Context, user string, kind Kind, col, name string, data []byte, cond Conditions) (o Object, created bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, col)
		if err != nil {
			return err
		}
		c, err := getMeta(cb, kind, col)
		if err != nil {
			return err
		}
		cur, exists, err := getObj(cb, name)
		if err != nil {
			return err
		}
		if err := cond.check(cur, exists); err != nil {
			return err
		}
		created = !exists
		o = Object{Name: name, ETag: ETagOf(data), ModTime: time.Now().UTC().Truncate(time.Second), Data: data}
		if o.Seq, err = logChange(cb, &c, name); err != nil {
			return err
		}
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		return cb.Bucket(bucketObjs).Put([]byte(name), b)
	})
	s.wroteMapped(len(data))
	return o, created, err
}

// DeleteObject removes an object, if cond holds.
func (s *Store) DeleteObject(ctx context.Context, user string, kind Kind, col, name string, cond Conditions) error {
	defer s.wroteMapped(0)
	return s.db.Update(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, col)
		if err != nil {
			return err
		}
		c, err := getMeta(cb, kind, col)
		if err != nil {
			return err
		}
		cur, exists, err := getObj(cb, name)
		if err != nil {
			return err
		}
		if !exists {
			return ErrNotFound
		}
		if err := cond.check(cur, exists); err != nil {
			return err
		}
		if _, err := logChange(cb, &c, name); err != nil {
			return err
		}
		return cb.Bucket(bucketObjs).Delete([]byte(name))
	})
}

// Change is one entry of a collection's change log: the object as it is
// now, or Deleted.
type Change struct {
	Name    string
	Seq     uint64
	Deleted bool
	Object  Object
}

// Changes answers a sync-collection: with an empty token every object;
// else the objects changed and the names deleted since token, in the
// order of the changes. It also returns the collection, whose Epoch and
// Seq make the current token.
func (s *Store) Changes(ctx context.Context, user string, kind Kind, col, token string) (changes []Change, c Collection, err error) {
	return s.ChangesAfter(ctx, user, kind, col, token, 0, math.MaxUint64, -1)
}

// ChangesAfter is Changes a batch at a time, for an answer written as it
// is read: up to n changes (n < 0: all) whose sequence numbers are above
// after and at most upTo. A sync-collection reads its first batch with
// upTo = math.MaxUint64, then the next ones after the last sequence number
// read, up to the first batch's c.Seq: the token it answers. An object
// changed meanwhile leaves that range (its entry moves to a newer number)
// and is in the next sync-collection instead.
func (s *Store) ChangesAfter(ctx context.Context, user string, kind Kind, col, token string, after, upTo uint64, n int) (changes []Change, c Collection, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		cb, err := colBucket(tx, user, kind, col)
		if err != nil {
			return err
		}
		c, err = getMeta(cb, kind, col)
		if err != nil {
			return err
		}
		var since uint64
		if token != "" {
			if since, err = ParseSyncToken(token, c.Epoch, c.Seq); err != nil {
				return err
			}
		}
		since = max(since, after)
		lc := cb.Bucket(bucketLog).Cursor()
		for k, v := lc.Seek(seqKey(since + 1)); k != nil && (n < 0 || len(changes) < n); k, v = lc.Next() {
			seq := binary.BigEndian.Uint64(k)
			if seq > upTo {
				break
			}
			o, ok, err := getObj(cb, string(v))
			if err != nil {
				return err
			}
			if !ok && token == "" {
				continue
			}
			changes = append(changes, Change{Name: string(v), Seq: seq, Deleted: !ok, Object: o})
			if len(changes)%reportBatch == 0 {
				s.checkMappedTx(tx)
			}
		}
		s.checkMappedTx(tx)
		return nil
	})
	return changes, c, err
}

// Snapshot passes the whole store, as FileName, to add: a consistent copy
// taken in one read transaction while changes go on.
func (s *Store) Snapshot(ctx context.Context, add func(name string, size int64, r io.Reader) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, err := tx.WriteTo(pw)
			pw.CloseWithError(err)
		}()
		err := add(FileName, tx.Size(), pr)
		pr.CloseWithError(errors.New("snapshot reader closed"))
		<-done
		if err != nil {
			return fmt.Errorf("snapshot of the calendar store: %w", err)
		}
		return nil
	})
}

// Count returns the number of calendar objects and vCards of all users.
func (s *Store) Count(ctx context.Context) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEachBucket(func(u []byte) error {
			ub := tx.Bucket(bucketUsers).Bucket(u)
			return ub.ForEachBucket(func(k []byte) error {
				if ob := ub.Bucket(k).Bucket(bucketObjs); ob != nil {
					n += ob.Stats().KeyN
				}
				return nil
			})
		})
	})
	return n, err
}
