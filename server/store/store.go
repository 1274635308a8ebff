// Package store is mailctl's embedded, crash-safe mail store.
//
// It holds, per user, the mailboxes and messages that IMAP (RFC 9051,
// RFC 3501) serves and that SMTP delivers into: UIDs and UIDVALIDITY
// (RFC 9051 section 2.3.1.1), flags and keywords, INTERNALDATE, sizes, a
// per-mailbox modification sequence ready for CONDSTORE (RFC 7162), the
// special-use attributes of RFC 6154 and per-user quotas (RFC 9208).
//
// Layout under the store directory:
//
//	index.db         bbolt index: users, mailboxes, message records, the
//	                 header of each message (header.go) and the bodies of
//	                 up to MaxInlineBody bytes (body.go)
//	msg/xx/<blob>    larger message bodies (and all those of stores written
//	                 before body.go), one file per message, named by a
//	                 random id
//
// A message is acknowledged only once it is durable. A body kept in the
// index is written in the transaction that commits its record, so both are
// durable, or neither, once the commit (shared by concurrent deliveries:
// group.go) returns. A body file is written under its final name, fsynced,
// the directory is fsynced, and only then is the index record committed. A
// crash at any point leaves either a committed message or an unreferenced
// file, and Open removes unreferenced files (and the temporary files of
// stores written by older versions). Removal goes the other way: the index
// commit first, the file afterwards.
//
// bbolt locks its file: only one process may open a store at a time.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors.
var (
	ErrNoSuchUser      = errors.New("store: no such user")
	ErrNoSuchMailbox   = errors.New("store: no such mailbox")
	ErrMailboxExists   = errors.New("store: mailbox already exists")
	ErrQuotaExceeded   = errors.New("store: quota exceeded")
	ErrInvalidMailbox  = errors.New("store: invalid mailbox name")
	ErrInboxNotAllowed = errors.New("store: operation not allowed on INBOX")
	ErrHasChildren     = errors.New("store: mailbox has children")
	ErrClosed          = errors.New("store: closed")
)

// Special-use attributes (RFC 6154) of the default mailboxes.
const (
	SpecialSent    = `\Sent`
	SpecialDrafts  = `\Drafts`
	SpecialTrash   = `\Trash`
	SpecialJunk    = `\Junk`
	SpecialArchive = `\Archive`
)

// Inbox is the name of the mailbox that always exists.
const Inbox = "INBOX"

// Delim is the hierarchy delimiter of mailbox names.
const Delim = '/'

// DefaultMailboxes are created by EnsureUser, with their special use.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{Inbox, ""},
	{"Sent", SpecialSent},
	{"Drafts", SpecialDrafts},
	{"Trash", SpecialTrash},
	{"Junk", SpecialJunk},
	{"Archive", SpecialArchive},
}

var (
	bucketUsers     = []byte("users")
	bucketMailboxes = []byte("mailboxes")
	bucketMsgs      = []byte("msgs")
	keyInfo         = []byte("info")
)

// Store is an open mail store. Its methods are safe for concurrent use.
type Store struct {
	dir    string
	db     *bolt.DB
	group  *groupCommit // index updates of deliveries
	logger *slog.Logger

	bodyBytes     atomic.Int64                        // of body files
	inlineMax     int                                 // largest body kept in the index (MaxInlineBody)
	inlineWritten atomic.Int64                        // bytes of bodies put in the index since the last trim
	file          *indexFile                          // the index read with pread (pread.go)
	mappedBase    atomic.Int64                        // file-backed resident bytes after the last trim (mapped.go)
	trimming      sync.Mutex                          // held by checkMapped while it trims
	summary       atomic.Pointer[func([]byte) []byte] // see SetHeaderSummary
	dirSync       [256]*dirSyncer                     // one per body directory
	quarantined   []QuarantineEntry                   // as Open found them (quarantine.go)
	snap          snapshotState                       // snapshots running (snapshot.go)

	watchMu  sync.RWMutex
	watchers map[int]func(Change)
	watchSeq int

	// hook, when set by tests, is called at each step of a delivery with
	// the step name and the file concerned; an error aborts the delivery.
	hook func(step, path string) error
}

// Change tells watchers that a mailbox changed (messages added, removed or
// flags changed). It carries no detail: watchers read the new state.
type Change struct {
	User      string
	MailboxID uint64
}

type userRecord struct {
	Quota           int64  `json:"quota"` // bytes, 0 = unlimited
	Used            int64  `json:"used"`
	Messages        int    `json:"messages"`
	NextMailboxID   uint64 `json:"next_mailbox_id"`
	LastUIDValidity uint32 `json:"last_uidvalidity"`
}

type mailboxRecord struct {
	ID          uint64 `json:"id"`
	UIDValidity uint32 `json:"uidvalidity"`
	UIDNext     uint32 `json:"uidnext"`
	ModSeq      uint64 `json:"modseq"`
	SpecialUse  string `json:"special_use,omitempty"`
	Subscribed  bool   `json:"subscribed,omitempty"`
	Messages    int    `json:"messages"`
	Size        int64  `json:"size"`
	// RecentUID is the first UID that no IMAP session has yet taken as
	// \Recent (ClaimRecent); 0 is 1.
	RecentUID uint32 `json:"recent_uid,omitempty"`
}

// Mailbox describes a mailbox.
type Mailbox struct {
	Name        string
	ID          uint64 // stable across renames
	UIDValidity uint32
	UIDNext     uint32
	ModSeq      uint64 // highest modification sequence (RFC 7162 HIGHESTMODSEQ)
	SpecialUse  string // RFC 6154 attribute, or ""
	Subscribed  bool
	Messages    int
	Size        int64
	RecentUID   uint32 // messages from this UID on are \Recent for the next session to claim them
}

// Message describes a stored message.
type Message struct {
	UID          uint32
	Size         int64
	InternalDate time.Time
	ModSeq       uint64
	Flags        []string
	// Ref is another Backend's reference to the message's body (pgstore:
	// the message row); callers pass it back to OpenBody unchanged. The
	// embedded store leaves it 0.
	Ref  uint64
	blob blobID
	body uint64 // kept in the index (body.go), when not 0
}

// HasFlag reports whether m carries flag (case-insensitively).
func (m *Message) HasFlag(flag string) bool { return hasFlag(m.Flags, flag) }

// Open opens (creating if needed) the store in dir and removes message files
// that no committed index record refers to.
func Open(ctx context.Context, dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(dir, "msg"), 0o700); err != nil {
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(dir, "msg", fmt.Sprintf("%02x", i)), 0o700); err != nil {
			return nil, fmt.Errorf("open store %q: %w", dir, err)
		}
	}
	if err := syncDir(filepath.Join(dir, "msg")); err != nil {
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, &bolt.Options{
		Timeout:        2 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %q: index: %w", dir, err)
	}
	// Deliveries arrive one per SMTP session: concurrent ones share
	// commits (group.go).
	s := &Store{dir: dir, db: db, group: newGroupCommit(db), logger: logger, watchers: map[int]func(Change){}, inlineMax: MaxInlineBody}
	if f, err := os.Open(filepath.Join(dir, "index.db")); err == nil {
		s.file = newIndexFile(f, db.Info().PageSize)
	} else {
		logger.Warn("index read through its mapping only", "err", err)
	}
	for i := range s.dirSync {
		s.dirSync[i] = newDirSyncer()
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketUsers); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketBodies)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %q: init index: %w", dir, err)
	}
	if err := s.removeOrphans(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	// bbolt rebuilt its freelist by visiting every page of the index
	// (NoFreelistSync) and removeOrphans read every record: the whole
	// index is mapped in resident memory. What sessions need comes back
	// from the page cache as they read it.
	s.trimMapping()
	return s, nil
}

// Close closes the index. Pending deliveries fail.
func (s *Store) Close() error {
	if s.file != nil {
		s.file.f.Close()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %q: %w", s.dir, err)
	}
	return nil
}

// Size returns the bytes used on disk by bodies and index.
func (s *Store) Size() int64 {
	n := s.bodyBytes.Load()
	if fi, err := os.Stat(s.db.Path()); err == nil {
		n += fi.Size()
	}
	return n
}

// Watch registers fn to be called after every committed change of a
// mailbox. fn runs on the goroutine that made the change and must not block.
// The returned function unregisters fn.
func (s *Store) Watch(fn func(Change)) (cancel func()) {
	s.watchMu.Lock()
	s.watchSeq++
	id := s.watchSeq
	s.watchers[id] = fn
	s.watchMu.Unlock()
	return func() {
		s.watchMu.Lock()
		delete(s.watchers, id)
		s.watchMu.Unlock()
	}
}

func (s *Store) notify(changes ...Change) {
	s.watchMu.RLock()
	defer s.watchMu.RUnlock()
	for _, c := range changes {
		for _, fn := range s.watchers {
			fn(c)
		}
	}
}

func (s *Store) blobPath(b blobID) string {
	name := b.String()
	return filepath.Join(s.dir, "msg", name[:2], name)
}

// removeOrphans deletes body files that no index record references, and
// temporary files left by an interrupted delivery. Records that cannot be
// read are quarantined first (quarantine.go).
func (s *Store) removeOrphans(ctx context.Context) error {
	refs := map[blobID]int64{}
	var bad []badRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEachBucket(func(user []byte) error {
			bad = append(bad, scanUser(tx, user, func(b blobID, size int64) { refs[b] = size })...)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	// Body files of records whose body could not be told are kept (in
	// the quarantine), not removed.
	keep := false
	if len(bad) > 0 {
		if err := s.quarantine(ctx, bad); err != nil {
			return fmt.Errorf("quarantine corrupt records: %w", err)
		}
		for _, b := range bad {
			switch {
			case b.e.Kind == "message" && !b.bodyKnown:
				keep = true
			case b.e.BodyFile != "" && b.body == 0:
				delete(refs, b.blob) // the quarantine holds a link
			}
		}
	}
	if err := s.loadQuarantine(); err != nil {
		return fmt.Errorf("read quarantine: %w", err)
	}
	var removed int
	var total int64
	for i := 0; i < 256; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		shard := filepath.Join(s.dir, "msg", fmt.Sprintf("%02x", i))
		entries, err := os.ReadDir(shard)
		if err != nil {
			return fmt.Errorf("scan bodies: %w", err)
		}
		for _, e := range entries {
			b, ok := parseBlobID(e.Name())
			if size, ref := refs[b]; ok && ref {
				total += size
				continue
			}
			if err := s.disposeOrphan(filepath.Join(shard, e.Name()), keep); err != nil {
				return fmt.Errorf("remove orphaned body: %w", err)
			}
			removed++
		}
	}
	s.bodyBytes.Store(total)
	if removed > 0 {
		s.logger.InfoContext(ctx, "removed orphaned message files", "count", removed)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// normalizeMailbox validates a mailbox name and spells INBOX canonically.
func normalizeMailbox(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidMailbox)
	}
	if len(name) > MaxMailboxName {
		return "", fmt.Errorf("%w: %w", ErrInvalidMailbox, limitErr("mailbox name longer than %d bytes", MaxMailboxName))
	}
	if strings.EqualFold(name, Inbox) {
		return Inbox, nil
	}
	if len(name) > len(Inbox) && strings.EqualFold(name[:len(Inbox)+1], Inbox+string(Delim)) {
		name = Inbox + name[len(Inbox):]
	}
	if name[0] == Delim || name[len(name)-1] == Delim || strings.Contains(name, string([]rune{Delim, Delim})) {
		return "", fmt.Errorf("%w: %q", ErrInvalidMailbox, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '*' || r == '%' || r == 0xfffd {
			return "", fmt.Errorf("%w: %q", ErrInvalidMailbox, name)
		}
	}
	return name, nil
}

// userTx gives access to one user's buckets within a transaction.
type userTx struct {
	tx   *bolt.Tx
	b    *bolt.Bucket
	info userRecord
	file *indexFile // set in read-only transactions (pread.go)
}

func getUser(tx *bolt.Tx, user string) (*userTx, error) {
	b := tx.Bucket(bucketUsers).Bucket([]byte(user))
	if b == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchUser, user)
	}
	u := &userTx{tx: tx, b: b}
	if err := json.Unmarshal(b.Get(keyInfo), &u.info); err != nil {
		return nil, fmt.Errorf("user %q: %w: %v", user, errCorrupt, err)
	}
	return u, nil
}

func (u *userTx) putInfo() error {
	v, err := json.Marshal(&u.info)
	if err != nil {
		return err
	}
	return u.b.Put(keyInfo, v)
}

func (u *userTx) mailbox(name string) (*mailboxRecord, string, error) {
	name, err := normalizeMailbox(name)
	if err != nil {
		return nil, "", err
	}
	v := u.b.Bucket(bucketMailboxes).Get([]byte(name))
	if v == nil {
		return nil, name, fmt.Errorf("%w: %q", ErrNoSuchMailbox, name)
	}
	var r mailboxRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, name, fmt.Errorf("mailbox %q: %w: %v", name, errCorrupt, err)
	}
	return &r, name, nil
}

func (u *userTx) putMailbox(name string, r *mailboxRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return u.b.Bucket(bucketMailboxes).Put([]byte(name), v)
}

func (u *userTx) msgs(r *mailboxRecord) *bolt.Bucket {
	return u.b.Bucket(bucketMsgs).Bucket(mailboxKey(r.ID))
}

// createMailbox adds a mailbox record and its message bucket.
func (u *userTx) createMailbox(name, specialUse string, subscribed bool) (*mailboxRecord, error) {
	if u.b.Bucket(bucketMailboxes).Get([]byte(name)) != nil {
		return nil, fmt.Errorf("%w: %q", ErrMailboxExists, name)
	}
	u.info.NextMailboxID++
	uidValidity := uint32(time.Now().Unix())
	if uidValidity <= u.info.LastUIDValidity {
		uidValidity = u.info.LastUIDValidity + 1
	}
	u.info.LastUIDValidity = uidValidity
	r := &mailboxRecord{
		ID:          u.info.NextMailboxID,
		UIDValidity: uidValidity,
		UIDNext:     1,
		ModSeq:      1,
		SpecialUse:  specialUse,
		Subscribed:  subscribed,
	}
	if _, err := u.b.Bucket(bucketMsgs).CreateBucket(mailboxKey(r.ID)); err != nil {
		return nil, err
	}
	if err := u.startGone(r.ID); err != nil {
		return nil, err
	}
	if err := u.putMailbox(name, r); err != nil {
		return nil, err
	}
	if err := u.forgetSubscription(name); err != nil {
		return nil, err
	}
	return r, u.putInfo()
}

func (r *mailboxRecord) export(name string) Mailbox {
	return Mailbox{
		Name: name, ID: r.ID, UIDValidity: r.UIDValidity, UIDNext: r.UIDNext, ModSeq: r.ModSeq,
		SpecialUse: r.SpecialUse, Subscribed: r.Subscribed, Messages: r.Messages, Size: r.Size,
		RecentUID: max(r.RecentUID, 1),
	}
}

// createUser returns user's records in tx, creating the user without any
// mailbox when absent.
func createUser(tx *bolt.Tx, user string) (*userTx, error) {
	users := tx.Bucket(bucketUsers)
	if users.Bucket([]byte(user)) == nil {
		b, err := users.CreateBucket([]byte(user))
		if err != nil {
			return nil, err
		}
		for _, name := range [][]byte{bucketMailboxes, bucketMsgs} {
			if _, err := b.CreateBucket(name); err != nil {
				return nil, err
			}
		}
		if err := b.Put(keyInfo, []byte("{}")); err != nil {
			return nil, err
		}
	}
	return getUser(tx, user)
}

// EnsureUser creates user if needed, with the default mailboxes (INBOX and
// the special-use ones that do not exist under any name), and sets the
// quota in bytes (0 = unlimited). It is idempotent.
func (s *Store) EnsureUser(ctx context.Context, user string, quotaBytes int64) error {
	if user == "" {
		return fmt.Errorf("ensure user %q: invalid name", user)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		u, err := createUser(tx, user)
		if err != nil {
			return err
		}
		used := map[string]bool{}
		if err := u.b.Bucket(bucketMailboxes).ForEach(func(k, v []byte) error {
			var r mailboxRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("mailbox %q: %w: %v", k, errCorrupt, err)
			}
			used[string(k)] = true
			if r.SpecialUse != "" {
				used[r.SpecialUse] = true
			}
			return nil
		}); err != nil {
			return err
		}
		for _, d := range DefaultMailboxes {
			if used[d.Name] || (d.SpecialUse != "" && used[d.SpecialUse]) {
				continue
			}
			if _, err := u.createMailbox(d.Name, d.SpecialUse, true); err != nil {
				return err
			}
		}
		u.info.Quota = quotaBytes
		return u.putInfo()
	})
	if err != nil {
		return fmt.Errorf("ensure user %q: %w", user, err)
	}
	return nil
}

// Users returns the users of the store, sorted.
func (s *Store) Users(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var users []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEachBucket(func(k []byte) error {
			users = append(users, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// Quota returns the quota of user in bytes (0 = unlimited).
func (s *Store) Quota(ctx context.Context, user string) (int64, error) {
	var q int64
	err := s.view(ctx, user, func(u *userTx) error {
		q = u.info.Quota
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read quota of %q: %w", user, err)
	}
	return q, nil
}

// Usage returns the bytes and number of messages stored for user.
func (s *Store) Usage(ctx context.Context, user string) (bytes int64, messages int, err error) {
	err = s.view(ctx, user, func(u *userTx) error {
		bytes, messages = u.info.Used, u.info.Messages
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("read usage of %q: %w", user, err)
	}
	return bytes, messages, nil
}

func (s *Store) view(ctx context.Context, user string, fn func(*userTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		u, err := getUser(tx, user)
		if err != nil {
			return err
		}
		u.file = s.file
		return fn(u)
	})
}

func (s *Store) update(ctx context.Context, user string, fn func(*userTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.checkMapped() // a commit reads the pages it changes
	return s.db.Update(func(tx *bolt.Tx) error {
		u, err := getUser(tx, user)
		if err != nil {
			return err
		}
		return fn(u)
	})
}

// Mailboxes returns the mailboxes of user, sorted by name (INBOX first).
func (s *Store) Mailboxes(ctx context.Context, user string) ([]Mailbox, error) {
	var out []Mailbox
	err := s.view(ctx, user, func(u *userTx) error {
		return u.b.Bucket(bucketMailboxes).ForEach(func(k, v []byte) error {
			var r mailboxRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("mailbox %q: %w: %v", k, errCorrupt, err)
			}
			out = append(out, r.export(string(k)))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list mailboxes of %q: %w", user, err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Name == Inbox) != (out[j].Name == Inbox) {
			return out[i].Name == Inbox
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Mailbox returns one mailbox of user.
func (s *Store) Mailbox(ctx context.Context, user, name string) (Mailbox, error) {
	var mb Mailbox
	err := s.view(ctx, user, func(u *userTx) error {
		r, n, err := u.mailbox(name)
		if err != nil {
			return err
		}
		mb = r.export(n)
		return nil
	})
	if err != nil {
		return Mailbox{}, fmt.Errorf("read mailbox %q of %q: %w", name, user, err)
	}
	return mb, nil
}

// MailboxByID returns the mailbox of user whose ID is id.
func (s *Store) MailboxByID(ctx context.Context, user string, id uint64) (Mailbox, error) {
	var mb Mailbox
	found := false
	err := s.view(ctx, user, func(u *userTx) error {
		return u.b.Bucket(bucketMailboxes).ForEach(func(k, v []byte) error {
			var r mailboxRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("mailbox %q: %w: %v", k, errCorrupt, err)
			}
			if r.ID == id {
				mb, found = r.export(string(k)), true
			}
			return nil
		})
	})
	if err == nil && !found {
		err = ErrNoSuchMailbox
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("read mailbox %d of %q: %w", id, user, err)
	}
	return mb, nil
}

// CreateMailbox creates a mailbox, subscribed, with an optional special-use
// attribute (RFC 6154 CREATE-SPECIAL-USE).
func (s *Store) CreateMailbox(ctx context.Context, user, name, specialUse string) error {
	n, err := normalizeMailbox(name)
	if err == nil {
		err = s.update(ctx, user, func(u *userTx) error {
			_, err := u.createMailbox(n, specialUse, true)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("create mailbox %q of %q: %w", name, user, err)
	}
	return nil
}

// DeleteMailbox deletes a mailbox and its messages. INBOX and mailboxes
// that have children cannot be deleted.
func (s *Store) DeleteMailbox(ctx context.Context, user, name string) error {
	var blobs []blobID
	var inline []uint64
	var id uint64
	err := s.update(ctx, user, func(u *userTx) error {
		blobs, inline = blobs[:0], inline[:0]
		r, n, err := u.mailbox(name)
		if err != nil {
			return err
		}
		if n == Inbox {
			return ErrInboxNotAllowed
		}
		// Like Dovecot: children first, so that no name is left without
		// its parent.
		if k, _ := u.b.Bucket(bucketMailboxes).Cursor().Seek([]byte(n + string(Delim))); k != nil && strings.HasPrefix(string(k), n+string(Delim)) {
			return ErrHasChildren
		}
		id = r.ID
		if err := u.msgs(r).ForEach(func(k, v []byte) error {
			m, err := decodeMsg(v)
			if err != nil {
				return err
			}
			if m.Body != 0 {
				inline = append(inline, m.Body)
			} else {
				blobs = append(blobs, m.Blob)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, id := range inline {
			if err := deleteBody(u.tx, id); err != nil {
				return err
			}
		}
		u.info.Used -= r.Size
		u.info.Messages -= r.Messages
		if err := u.b.Bucket(bucketMsgs).DeleteBucket(mailboxKey(r.ID)); err != nil {
			return err
		}
		if err := u.deleteHeaderBucket(r.ID); err != nil {
			return err
		}
		if err := u.deleteGoneBucket(r.ID); err != nil {
			return err
		}
		if err := u.b.Bucket(bucketMailboxes).Delete([]byte(n)); err != nil {
			return err
		}
		if r.Subscribed {
			if err := u.keepSubscription(n); err != nil {
				return err
			}
		}
		return u.putInfo()
	})
	if err != nil {
		return fmt.Errorf("delete mailbox %q of %q: %w", name, user, err)
	}
	s.removeBlobs(ctx, blobs)
	s.deletedInline(len(inline))
	s.notify(Change{User: user, MailboxID: id})
	return nil
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves
// its messages to the new mailbox and leaves a new, empty INBOX
// (RFC 9051 section 6.3.6). Renamed mailboxes get a new modification
// sequence and watchers are told, so that sessions follow the new name.
func (s *Store) RenameMailbox(ctx context.Context, user, oldName, newName string) error {
	var changed []uint64
	err := s.update(ctx, user, func(u *userTx) error {
		changed = changed[:0]
		r, from, err := u.mailbox(oldName)
		if err != nil {
			return err
		}
		to, err := normalizeMailbox(newName)
		if err != nil {
			return err
		}
		if to == Inbox {
			return ErrInboxNotAllowed
		}
		mboxes := u.b.Bucket(bucketMailboxes)
		if mboxes.Get([]byte(to)) != nil {
			return fmt.Errorf("%w: %q", ErrMailboxExists, to)
		}
		if from == Inbox {
			if err := mboxes.Delete([]byte(Inbox)); err != nil {
				return err
			}
			r.ModSeq++ // sessions that selected it learn the new name
			changed = append(changed, r.ID)
			if err := u.putMailbox(to, r); err != nil {
				return err
			}
			_, err := u.createMailbox(Inbox, "", true)
			return err
		}
		// Collect first: a bucket must not be modified while iterated.
		type kv struct{ k, v []byte }
		var moves []kv
		prefix := from + string(Delim)
		if err := mboxes.ForEach(func(k, v []byte) error {
			if string(k) == from || strings.HasPrefix(string(k), prefix) {
				moves = append(moves, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, m := range moves {
			target := to + string(m.k)[len(from):]
			if _, err := normalizeMailbox(target); err != nil {
				return err
			}
			if mboxes.Get([]byte(target)) != nil {
				return fmt.Errorf("%w: %q", ErrMailboxExists, target)
			}
			var rec mailboxRecord
			if err := json.Unmarshal(m.v, &rec); err != nil {
				return fmt.Errorf("mailbox %q: %w: %v", m.k, errCorrupt, err)
			}
			rec.ModSeq++
			changed = append(changed, rec.ID)
			if err := mboxes.Delete(m.k); err != nil {
				return err
			}
			if err := u.putMailbox(target, &rec); err != nil {
				return err
			}
			if err := u.forgetSubscription(target); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rename mailbox %q of %q to %q: %w", oldName, user, newName, err)
	}
	for _, id := range changed {
		s.notify(Change{User: user, MailboxID: id})
	}
	return nil
}

// SetSubscribed sets the subscription state of a mailbox. A name that
// names no mailbox can be unsubscribed (see GoneSubscriptions), not
// subscribed.
func (s *Store) SetSubscribed(ctx context.Context, user, name string, subscribed bool) error {
	err := s.update(ctx, user, func(u *userTx) error {
		r, n, err := u.mailbox(name)
		if errors.Is(err, ErrNoSuchMailbox) && !subscribed && n != "" {
			return u.forgetSubscription(n)
		}
		if err != nil {
			return err
		}
		r.Subscribed = subscribed
		return u.putMailbox(n, r)
	})
	if err != nil {
		return fmt.Errorf("subscribe mailbox %q of %q: %w", name, user, err)
	}
	return nil
}

// removeBlobs deletes body files after their records were removed. A failure
// only leaves an orphan that the next Open removes.
func (s *Store) removeBlobs(ctx context.Context, blobs []blobID) {
	for _, b := range blobs {
		p := s.blobPath(b)
		if s.snapshotHold(p) {
			continue // removed when the snapshot ends (snapshot.go)
		}
		fi, err := os.Stat(p)
		if err == nil {
			err = os.Remove(p)
		}
		if err != nil {
			s.logger.WarnContext(ctx, "remove message file", "err", err)
			continue
		}
		s.bodyBytes.Add(-fi.Size())
	}
}
