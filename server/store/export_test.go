package store

import (
	"errors"

	bolt "go.etcd.io/bbolt"
)

// Dir returns the directory of st, for tests that inspect files.
func Dir(st *Store) string { return st.dir }

// AbortBeforeCommit makes the next deliveries fail right before their index
// commit, as a crash at that point would.
func AbortBeforeCommit(st *Store) {
	st.hook = func(step, path string) error {
		if step == "fsync-dir" {
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
