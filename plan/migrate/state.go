package migrate

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// state is the local record of a migration (a bbolt file): per user, the
// highest source UID copied per source folder and UIDVALIDITY, the
// dedupe keys imported (Message-ID or header digest -> target folder),
// the UIDVALIDITY and UIDNEXT of each target folder after the copy into it
// (to notice a target that lost what was copied: see checkTargets), and
// whether the last run ended cleanly (if not, the target folders are read
// again before appending, so that an interruption re-appends nothing).
type state struct {
	db *bolt.DB
}

var (
	bucketUsers   = []byte("users")
	bucketFolders = []byte("folders")
	bucketKeys    = []byte("keys")
	bucketTargets = []byte("targets")
	keyClean      = []byte("clean")
)

func openState(ctx context.Context, file string) (*state, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, fmt.Errorf("open migration state %q: %w", file, err)
	}
	db, err := bolt.Open(file, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open migration state %q: %w", file, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketUsers)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open migration state %q: %w", file, err)
	}
	return &state{db: db}, nil
}

func (s *state) Close() error { return s.db.Close() }

func folderKey(source string, uidValidity uint32) []byte {
	return fmt.Appendf(nil, "%s\x00%08x", source, uidValidity)
}

// userState is one user's record, loaded in memory.
type userState struct {
	Clean    bool
	LastUID  map[string]uint32 // folderKey -> highest UID copied or decided
	Imported map[string]string // dedupe key -> target folder
	Targets  map[string]targetMark
}

// targetMark is what a target folder's STATUS said after the last copy
// into it.
type targetMark struct {
	UIDValidity, UIDNext uint32
}

func (s *state) load(user string) (*userState, error) {
	us := &userState{LastUID: map[string]uint32{}, Imported: map[string]string{}, Targets: map[string]targetMark{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		us.Clean = string(b.Get(keyClean)) == "1"
		if f := b.Bucket(bucketFolders); f != nil {
			f.ForEach(func(k, v []byte) error {
				if len(v) == 4 {
					us.LastUID[string(k)] = binary.BigEndian.Uint32(v)
				}
				return nil
			})
		}
		if t := b.Bucket(bucketTargets); t != nil {
			t.ForEach(func(k, v []byte) error {
				if len(v) == 8 {
					us.Targets[string(k)] = targetMark{binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])}
				}
				return nil
			})
		}
		if k := b.Bucket(bucketKeys); k != nil {
			k.ForEach(func(k, v []byte) error {
				us.Imported[string(k)] = string(v)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read migration state of %q: %w", user, err)
	}
	return us, nil
}

// update is one batch of progress, committed in one transaction (one
// fsync).
type update struct {
	clean    *bool
	lastUID  map[string]uint32
	imported map[string]string
	// forget removes dedupe keys and targets removes target marks (both
	// before imported and marks are written).
	forget  []string
	forgetT []string
	marks   map[string]targetMark
}

func (u *update) empty() bool {
	return u.clean == nil && len(u.lastUID) == 0 && len(u.imported) == 0 && len(u.forget) == 0 &&
		len(u.forgetT) == 0 && len(u.marks) == 0
}

func (s *state) commit(user string, u *update) error {
	if u.empty() {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketUsers).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		if u.clean != nil {
			v := "0"
			if *u.clean {
				v = "1"
			}
			if err := b.Put(keyClean, []byte(v)); err != nil {
				return err
			}
		}
		f, err := b.CreateBucketIfNotExists(bucketFolders)
		if err != nil {
			return err
		}
		for k, uid := range u.lastUID {
			if err := f.Put([]byte(k), binary.BigEndian.AppendUint32(nil, uid)); err != nil {
				return err
			}
		}
		kb, err := b.CreateBucketIfNotExists(bucketKeys)
		if err != nil {
			return err
		}
		for _, k := range u.forget {
			if err := kb.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, t := range u.imported {
			if err := kb.Put([]byte(k), []byte(t)); err != nil {
				return err
			}
		}
		tb, err := b.CreateBucketIfNotExists(bucketTargets)
		if err != nil {
			return err
		}
		for _, k := range u.forgetT {
			if err := tb.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, m := range u.marks {
			v := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, m.UIDValidity), m.UIDNext)
			if err := tb.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write migration state of %q: %w", user, err)
	}
	*u = update{}
	return nil
}
