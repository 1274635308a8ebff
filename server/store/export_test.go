package store

import (
	"encoding/binary"
	"errors"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Dir returns the directory of st, for tests that inspect files.
func Dir(st *Store) string { return st.dir }

// AbortBeforeCommit makes the next deliveries fail right before their index
// commit, as a crash at that point would.
func AbortBeforeCommit(st *Store) {
	st.hook = func(step, path string) error {
		if step == "fsync-dir" || step == "inline" {
			return errCrash
		}
		return nil
	}
}

var errCrash = errors.New("simulated crash")

// DropHeaderCache removes the header cache of every user, leaving the
// index as stores written before the cache existed.
func DropHeaderCache(st *Store) error {
	return st.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEachBucket(func(user []byte) error {
			u := tx.Bucket(bucketUsers).Bucket(user)
			if u.Bucket(bucketHdrs) == nil {
				return nil
			}
			return u.DeleteBucket(bucketHdrs)
		})
	})
}

// SetInlineMax sets the largest body kept in the index (0: every body
// goes to a file).
func SetInlineMax(st *Store, n int) { st.inlineMax = n }

// Bodies counts the stored bodies: files and bodies kept in the index.
func Bodies(st *Store) (files, inline int, err error) {
	names, err := filepath.Glob(filepath.Join(st.dir, "msg", "*", "*"))
	if err != nil {
		return 0, 0, err
	}
	err = st.db.View(func(tx *bolt.Tx) error {
		var last uint64
		return tx.Bucket(bucketBodies).ForEach(func(k, v []byte) error {
			if id := binary.BigEndian.Uint64(k); id != last {
				inline++
				last = id
			}
			return nil
		})
	})
	return len(names), inline, err
}

// SetGoneLimits bounds the expunge records of each mailbox (vanished.go)
// until the returned function restores the defaults.
func SetGoneLimits(records, bytes int) (restore func()) {
	r, b := maxGoneRecords, maxGoneBytes
	maxGoneRecords, maxGoneBytes = records, bytes
	return func() { maxGoneRecords, maxGoneBytes = r, b }
}
