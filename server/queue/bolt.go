package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketMsgs   = []byte("msgs")
	bucketBlobs  = []byte("blobs")
	bucketWarmup = []byte("warmup")
)

// boltBackend is the embedded backend: a bbolt index in <dir>/index.db and
// the bodies in files <dir>/msg/<blob> (see the package documentation for
// the order of writes).
type boltBackend struct {
	db     *bolt.DB
	msgDir string
	log    *slog.Logger
	step   func(string) error // tests: crash points
}

// openBolt opens (creating) the queue in dir, removes unreferenced body
// files and returns the records' schedule.
func openBolt(ctx context.Context, dir string, log *slog.Logger, step func(string) error) (*boltBackend, map[string]*entry, error) {
	b := &boltBackend{msgDir: filepath.Join(dir, "msg"), log: log, step: step}
	if err := os.MkdirAll(b.msgDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create queue dir %q: %w", b.msgDir, err)
	}
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("open queue index in %q: %w", dir, err)
	}
	b.db = db
	entries := map[string]*entry{}
	blobs := map[string]bool{}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMsgs, bucketBlobs, bucketWarmup} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
			var m Message
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode queue record %q: %w", k, err)
			}
			entries[m.ID] = &entry{domain: m.Domain, next: m.Next}
			blobs[m.Blob] = true
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open queue index in %q: %w", dir, err)
	}
	if err := b.removeOrphans(ctx, blobs); err != nil {
		db.Close()
		return nil, nil, err
	}
	return b, entries, nil
}

func (b *boltBackend) close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close queue index: %w", err)
	}
	return nil
}

func (b *boltBackend) removeOrphans(ctx context.Context, blobs map[string]bool) error {
	ents, err := os.ReadDir(b.msgDir)
	if err != nil {
		return fmt.Errorf("read queue dir %q: %w", b.msgDir, err)
	}
	for _, e := range ents {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !blobs[e.Name()] {
			b.log.Info("removing unreferenced queue file", "file", e.Name())
			os.Remove(filepath.Join(b.msgDir, e.Name()))
		}
	}
	return nil
}

// writeBody writes body durably to msg/<blob>.
func (b *boltBackend) writeBody(ctx context.Context, body io.Reader, signer Signer) (blob string, size int64, sig string, err error) {
	blob = newID()
	tmp := filepath.Join(b.msgDir, ".tmp-"+blob)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, "", fmt.Errorf("queue: create %q: %w", tmp, err)
	}
	fail := func(e error) (string, int64, string, error) {
		f.Close()
		os.Remove(tmp)
		return "", 0, "", e
	}
	size, err = io.Copy(f, ctxReader{ctx, body})
	if err != nil {
		return fail(fmt.Errorf("queue: write %q: %w", tmp, err))
	}
	if signer != nil {
		sig, err = signer.Sign(io.NewSectionReader(f, 0, size))
		if err != nil {
			return fail(fmt.Errorf("queue: %w", err))
		}
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("queue: sync %q: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", 0, "", fmt.Errorf("queue: close %q: %w", tmp, err)
	}
	if err := b.step("blob-synced"); err != nil {
		os.Remove(tmp)
		return "", 0, "", err
	}
	final := filepath.Join(b.msgDir, blob)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", 0, "", fmt.Errorf("queue: rename %q: %w", tmp, err)
	}
	if err := syncDir(b.msgDir); err != nil {
		os.Remove(final)
		return "", 0, "", fmt.Errorf("queue: sync dir %q: %w", b.msgDir, err)
	}
	return blob, size, sig, nil
}

func (b *boltBackend) dropBody(blob string) {
	os.Remove(filepath.Join(b.msgDir, blob))
}

func (b *boltBackend) openBody(_ context.Context, m *Message) (bodyReader, error) {
	f, err := os.Open(filepath.Join(b.msgDir, m.Blob))
	if err != nil {
		return nil, err
	}
	return f, nil
}

func putMsg(tx *bolt.Tx, m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMsgs).Put([]byte(m.ID), b)
}

func getMsg(tx *bolt.Tx, id string) (*Message, error) {
	v := tx.Bucket(bucketMsgs).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	var m Message
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("decode queue record %q: %w", id, err)
	}
	return &m, nil
}

// addRef changes the reference count of blob by n and reports whether it
// dropped to zero.
func addRef(tx *bolt.Tx, blob string, n int) (bool, error) {
	b := tx.Bucket(bucketBlobs)
	var c int
	if v := b.Get([]byte(blob)); v != nil {
		fmt.Sscan(string(v), &c)
	}
	c += n
	if c <= 0 {
		return true, b.Delete([]byte(blob))
	}
	return false, b.Put([]byte(blob), []byte(fmt.Sprint(c)))
}

// insert commits new records (sharing blob) in one batched transaction.
func (b *boltBackend) insert(_ context.Context, msgs []*Message, blob string) error {
	err := b.db.Batch(func(tx *bolt.Tx) error {
		for _, m := range msgs {
			if err := putMsg(tx, m); err != nil {
				return err
			}
		}
		_, err := addRef(tx, blob, len(msgs))
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: commit index: %w", err)
	}
	return nil
}

func (b *boltBackend) get(_ context.Context, id string) (*Message, error) {
	var m *Message
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = getMsg(tx, id)
		return err
	})
	return m, err
}

// settle commits the outcome (index first), then removes the body file
// when no record refers to it any more.
func (b *boltBackend) settle(_ context.Context, _ *lease, m, nm *Message, done bool, dsnMsgs []*Message, dsnBlob string) error {
	removeBlob := false
	err := b.db.Update(func(tx *bolt.Tx) error {
		if _, err := getMsg(tx, m.ID); err != nil {
			return err // removed meanwhile
		}
		if done {
			if err := tx.Bucket(bucketMsgs).Delete([]byte(m.ID)); err != nil {
				return err
			}
			last, err := addRef(tx, m.Blob, -1)
			if err != nil {
				return err
			}
			removeBlob = last
		} else if err := putMsg(tx, nm); err != nil {
			return err
		}
		for _, dm := range dsnMsgs {
			if err := putMsg(tx, dm); err != nil {
				return err
			}
		}
		if dsnBlob != "" {
			if _, err := addRef(tx, dsnBlob, len(dsnMsgs)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := b.step("outcome-committed"); err != nil {
		return err
	}
	if removeBlob {
		os.Remove(filepath.Join(b.msgDir, m.Blob))
	}
	return nil
}

func (b *boltBackend) list(ctx context.Context) ([]Message, error) {
	var out []Message
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var m Message
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode queue record %q: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortMessages(out)
	return out, nil
}

// sortMessages orders records oldest first.
func sortMessages(out []Message) {
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
}

func (b *boltBackend) retry(_ context.Context, id string, now time.Time) ([]string, error) {
	var ids []string
	err := b.db.Update(func(tx *bolt.Tx) error {
		if id != "" {
			ids = []string{id}
		} else {
			tx.Bucket(bucketMsgs).ForEach(func(k, _ []byte) error {
				ids = append(ids, string(k))
				return nil
			})
		}
		for _, i := range ids {
			m, err := getMsg(tx, i)
			if err != nil {
				return err
			}
			m.Next = now
			if err := putMsg(tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	return ids, err
}

func (b *boltBackend) remove(_ context.Context, id string) error {
	var blob string
	var last bool
	err := b.db.Update(func(tx *bolt.Tx) error {
		m, err := getMsg(tx, id)
		if err != nil {
			return err
		}
		blob = m.Blob
		if err := tx.Bucket(bucketMsgs).Delete([]byte(id)); err != nil {
			return err
		}
		last, err = addRef(tx, blob, -1)
		return err
	})
	if err != nil {
		return err
	}
	if last {
		os.Remove(filepath.Join(b.msgDir, blob))
	}
	return nil
}

var keyWarmupStart = []byte("start")

func (b *boltBackend) warmupAllow(_ context.Context, now time.Time, w Warmup) (bool, error) {
	allowed := true
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketWarmup)
		start := w.Start
		if start.IsZero() {
			if v := bk.Get(keyWarmupStart); v != nil {
				if err := start.UnmarshalText(v); err != nil {
					return fmt.Errorf("decode warm-up start: %w", err)
				}
			} else {
				start = now
				v, _ := now.UTC().MarshalText()
				if err := bk.Put(keyWarmupStart, v); err != nil {
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
		if v := bk.Get(key); v != nil {
			n, _ = strconv.Atoi(string(v))
		}
		if n >= limit {
			allowed = false
			return nil
		}
		return bk.Put(key, []byte(strconv.Itoa(n+1)))
	})
	return allowed, err
}

func (b *boltBackend) warmupStatus(_ context.Context, now time.Time, w Warmup) (sent, limit int, err error) {
	limit = -1
	err = b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketWarmup)
		if v := bk.Get([]byte("day:" + now.UTC().Format(time.DateOnly))); v != nil {
			sent, _ = strconv.Atoi(string(v))
		}
		start := w.Start
		if start.IsZero() {
			if v := bk.Get(keyWarmupStart); v != nil {
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
