package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Snapshot copies the queue as it is at one instant, while it keeps
// accepting and delivering, by calling add once per file with its
// slash-separated name relative to the queue directory ("index.db",
// "msg/<blob>"), its size and its content. add must consume r entirely.
//
// The queue is small next to the store, so the copy is taken inside a
// write transaction: no record can be committed or removed meanwhile, so
// every body the copied index refers to exists. Inside it the index is
// written to a temporary directory beside the queue and the bodies are
// hard-linked there (no data copied), so the queue waits only for that,
// never for a slow reader; the files stream from the temporary directory
// afterwards. Snapshots must not overlap: one removes the temporary
// directories that an interrupted one left.
//
// A queue in PostgreSQL has no snapshot here (ErrSharedSnapshot): it is
// in the database, whose backups hold it.
func (q *Queue) Snapshot(ctx context.Context, add func(name string, size int64, r io.Reader) error) error {
	b, ok := q.be.(*boltBackend)
	if !ok {
		return ErrSharedSnapshot
	}
	return b.snapshot(ctx, add)
}

// ErrSharedSnapshot is Snapshot's error for a queue kept in PostgreSQL.
var ErrSharedSnapshot = errors.New("queue: the queue is in PostgreSQL: back up the database instead")

func (q *boltBackend) snapshot(ctx context.Context, add func(name string, size int64, r io.Reader) error) error {
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(q.msgDir), ".snapshot-*"))
	for _, p := range old {
		os.RemoveAll(p)
	}
	dir, err := os.MkdirTemp(filepath.Dir(q.msgDir), ".snapshot-")
	if err != nil {
		return fmt.Errorf("snapshot queue: %w", err)
	}
	defer os.RemoveAll(dir)
	var blobs []string
	err = q.db.Update(func(tx *bolt.Tx) error {
		f, err := os.OpenFile(filepath.Join(dir, "index.db"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = tx.WriteTo(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("copy index: %w", err)
		}
		seen := map[string]bool{}
		err = tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
			var m Message
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode queue record %q: %w", k, err)
			}
			if m.Blob == "" || seen[m.Blob] {
				return nil
			}
			seen[m.Blob] = true
			blobs = append(blobs, m.Blob)
			return os.Link(filepath.Join(q.msgDir, m.Blob), filepath.Join(dir, m.Blob))
		})
		if err != nil {
			return err
		}
		// Nothing was changed: roll back rather than commit.
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		return fmt.Errorf("snapshot queue: %w", err)
	}
	files := append([]string{"index.db"}, blobs...)
	for i, name := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		arcName := name
		if i > 0 {
			arcName = "msg/" + name
		}
		if err := addFile(filepath.Join(dir, name), arcName, add); err != nil {
			return fmt.Errorf("snapshot queue: %w", err)
		}
	}
	return nil
}

var errRollback = errors.New("queue: snapshot done")

func addFile(path, name string, add func(string, int64, io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := add(name, fi.Size(), io.LimitReader(f, fi.Size())); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
