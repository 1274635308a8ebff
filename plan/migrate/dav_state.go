package migrate

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketDAV holds, in a user's bucket, the calendar and contacts copy:
// collKey(kind, source collection) -> target collection, and
// objKey(kind, source href) -> ETag copied, NUL, target path.
var bucketDAV = []byte("dav")

// loadDAV reads the user's calendar and contacts marks.
func (s *state) loadDAV(user string) (map[string]string, error) {
	out := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		if d := b.Bucket(bucketDAV); d != nil {
			return d.ForEach(func(k, v []byte) error {
				out[string(k)] = string(v)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the calendar and contacts state of %q: %w", user, err)
	}
	return out, nil
}

// commitDAV writes marks in one transaction.
func (s *state) commitDAV(user string, marks map[string]string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketUsers).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		d, err := b.CreateBucketIfNotExists(bucketDAV)
		if err != nil {
			return err
		}
		for k, v := range marks {
			if err := d.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write the calendar and contacts state of %q: %w", user, err)
	}
	return nil
}
