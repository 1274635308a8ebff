package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Snapshot copies the store as it is at one instant, while deliveries,
// flag changes and expunges go on, by calling add once per file with its
// slash-separated name relative to the store directory, its size and its
// content. add must consume r entirely.
//
// The index is copied by bbolt's Tx.WriteTo in one read transaction: a
// consistent copy with every committed message and no half of one. Body
// files are immutable once written; the only risk is their removal after
// an expunge committed after that transaction began. Removal is therefore
// deferred while a snapshot runs (snapshotHold): removeBlobs leaves the
// files of expunged messages in place, and the last snapshot to finish
// removes them. A crash meanwhile only leaves unreferenced files, which
// the next Open removes, as after any interrupted removal. Deferring was
// chosen over hard-linking every body (one link per message, and a window
// between the transaction and the links) and over holding the read
// transaction while the bodies stream (a long read transaction keeps
// bbolt from remapping a growing index, which would stall deliveries).
//
// The index is first written to a temporary file beside it, so that the
// read transaction lasts as long as a local copy, not as long as a slow
// reader (an SSH connection) takes.
func (s *Store) Snapshot(ctx context.Context, add func(name string, size int64, r io.Reader) error) error {
	s.snap.mu.Lock()
	if s.snap.running == 0 {
		// Copies left by a crash during a snapshot.
		old, _ := filepath.Glob(filepath.Join(s.dir, ".snapshot-*.db"))
		for _, p := range old {
			os.Remove(p)
		}
	}
	s.snap.running++
	s.snap.mu.Unlock()
	defer s.snapshotDone(ctx)

	tmp, err := os.CreateTemp(s.dir, ".snapshot-*.db")
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	var blobs []string
	var size int64
	err = s.db.View(func(tx *bolt.Tx) error {
		if _, err := tx.WriteTo(tmp); err != nil {
			return fmt.Errorf("copy index: %w", err)
		}
		size = tx.Size()
		return tx.Bucket(bucketUsers).ForEachBucket(func(user []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Unreadable records are skipped here as the server skips
			// them; the quarantine directory is copied below.
			scanUser(tx, user, func(b blobID, n int64) {
				name := b.String()
				blobs = append(blobs, "msg/"+name[:2]+"/"+name)
			})
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	if err := add("index.db", size, tmp); err != nil {
		return fmt.Errorf("snapshot store: index: %w", err)
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.addFile(b, add); err != nil {
			return fmt.Errorf("snapshot store: %w", err)
		}
	}
	// The quarantine is written only by Open: a plain copy is consistent.
	qdir := filepath.Join(s.dir, quarantineDir)
	err = filepath.WalkDir(qdir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == qdir {
				return filepath.SkipDir
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.dir, path)
		if err != nil {
			return err
		}
		return s.addFile(filepath.ToSlash(rel), add)
	})
	if err != nil {
		return fmt.Errorf("snapshot store: quarantine: %w", err)
	}
	return nil
}

func (s *Store) addFile(name string, add func(string, int64, io.Reader) error) error {
	f, err := os.Open(filepath.Join(s.dir, filepath.FromSlash(name)))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	// The size is the file's: the record's size of a body is the same,
	// but the archive must hold what is read.
	if err := add(name, fi.Size(), io.LimitReader(f, fi.Size())); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// snapshotState counts the snapshots running and the body files whose
// removal waits for them.
type snapshotState struct {
	mu      sync.Mutex
	running int
	remove  []string
}

// snapshotHold reports whether a snapshot runs; if so, it takes path to
// remove when the last one finishes.
func (s *Store) snapshotHold(path string) bool {
	s.snap.mu.Lock()
	defer s.snap.mu.Unlock()
	if s.snap.running == 0 {
		return false
	}
	s.snap.remove = append(s.snap.remove, path)
	return true
}

func (s *Store) snapshotDone(ctx context.Context) {
	s.snap.mu.Lock()
	s.snap.running--
	var paths []string
	if s.snap.running == 0 {
		paths, s.snap.remove = s.snap.remove, nil
	}
	s.snap.mu.Unlock()
	for _, p := range paths {
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
