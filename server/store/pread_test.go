package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestFileCursorMatchesBolt: the file cursor reads, from the file, the same
// keys and values as bbolt's cursor, over trees of one leaf up to several
// levels, with values that span overflow pages, for First/Next and Seek of
// keys present and absent; it declines inline buckets and nested buckets.
func TestFileCursorMatchesBolt(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sizes := map[string]int{"one": 3, "small": 40, "big": 5000, "bigvalues": 300}
	want := map[string]map[string][]byte{}
	// Several commits, with deletions, so that pages are freed and reused.
	for round := 0; round < 4; round++ {
		err := db.Update(func(tx *bolt.Tx) error {
			for name, n := range sizes {
				b, err := tx.CreateBucketIfNotExists([]byte(name))
				if err != nil {
					return err
				}
				if want[name] == nil {
					want[name] = map[string][]byte{}
				}
				for i := 0; i < n/4; i++ {
					k := make([]byte, 4+rng.IntN(20))
					binary.BigEndian.PutUint32(k, rng.Uint32())
					vlen := rng.IntN(300)
					if name == "bigvalues" && rng.IntN(3) == 0 {
						vlen = 4000 + rng.IntN(20000) // overflow pages
					}
					v := make([]byte, vlen)
					for j := range v {
						v[j] = byte(rng.Uint32())
					}
					if err := b.Put(k, v); err != nil {
						return err
					}
					want[name][string(k)] = v
				}
				for k := range want[name] {
					if rng.IntN(8) == 0 {
						if err := b.Delete([]byte(k)); err != nil {
							return err
						}
						delete(want[name], k)
					}
				}
			}
			if _, err := tx.CreateBucketIfNotExists([]byte("inline")); err != nil {
				return err
			}
			nb, err := tx.Bucket([]byte("big")).CreateBucketIfNotExists([]byte("\xff\xff\xff\xff nested"))
			if err != nil {
				return err
			}
			return nb.Put([]byte("k"), bytes.Repeat([]byte("v"), 3000))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newIndexFile(f, db.Info().PageSize)
	err = db.View(func(tx *bolt.Tx) error {
		if r.cursor(tx, tx.Bucket([]byte("inline"))) != nil {
			t.Error("an inline bucket is read from the file")
		}
		for name := range sizes {
			b := tx.Bucket([]byte(name))
			fc := r.cursor(tx, b)
			if fc == nil {
				if name != "one" {
					t.Errorf("%s: no file cursor", name)
				}
				continue
			}
			// Every key, in order.
			bc := b.Cursor()
			bk, bv := bc.First()
			fk, fv, ferr := fc.First()
			n := 0
			for ; bk != nil; bk, bv = bc.Next() {
				if bv == nil { // the nested bucket
					if ferr == nil || !errors.Is(ferr, errNoFileRead) {
						t.Errorf("%s: nested bucket read as %q, %v", name, fk, ferr)
					}
					fk, fv, ferr = fc.Seek(append(append([]byte(nil), bk...), 0))
					continue
				}
				if ferr != nil || !bytes.Equal(fk, bk) || !bytes.Equal(fv, bv) {
					t.Fatalf("%s: element %d: file %x (%d bytes, %v), bolt %x (%d bytes)", name, n, fk, len(fv), ferr, bk, len(bv))
				}
				n++
				fk, fv, ferr = fc.Next()
			}
			if fk != nil || ferr != nil {
				t.Errorf("%s: file cursor goes on after the end: %x, %v", name, fk, ferr)
			}
			if name != "big" && n != len(want[name]) {
				t.Errorf("%s: %d elements, want %d", name, n, len(want[name]))
			}
			// Seeks of random keys, present or not.
			for i := 0; i < 200; i++ {
				k := make([]byte, 6)
				binary.BigEndian.PutUint32(k, rng.Uint32())
				k = k[:rng.IntN(len(k)+1)]
				bk, bv := bc.Seek(k)
				for bk != nil && bv == nil {
					bk, bv = bc.Next()
				}
				fk, fv, ferr := fc.Seek(k)
				for errors.Is(ferr, errNoFileRead) && fk == nil && bk != nil {
					fk, fv, ferr = fc.Seek(bk) // past the nested bucket
				}
				if ferr != nil || !bytes.Equal(fk, bk) || !bytes.Equal(fv, bv) {
					t.Fatalf("%s: Seek(%x): file %x, %v; bolt %x", name, k, fk, ferr, bk)
				}
			}
			fc.release()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Writable transactions read through bbolt.
	db.Update(func(tx *bolt.Tx) error {
		if r.cursor(tx, tx.Bucket([]byte("big"))) != nil {
			t.Error("a writable transaction reads from the file")
		}
		return nil
	})
}

// TestIndexFileWindowsFollowCommits: pages kept from the file are not
// used by a transaction that started after a commit rewrote them.
func TestIndexFileWindowsFollowCommits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newIndexFile(f, db.Info().PageSize)
	put := func(v string) {
		t.Helper()
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			for i := 0; i < 200; i++ { // not inline
				if err := b.Put([]byte(fmt.Sprintf("k%03d", i)), []byte(v)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"first", "second", "third", "fourth"} {
		put(v)
		db.View(func(tx *bolt.Tx) error {
			var got []byte
			c := r.cursor(tx, tx.Bucket([]byte("b")))
			c.window = true
			k, val, err := c.First()
			for ; k != nil && err == nil; k, val, err = c.Next() {
				got = append(got[:0], val...)
			}
			if err != nil {
				t.Fatal(err)
			}
			c.release()
			if string(got) != v {
				t.Errorf("after putting %q, read %q", v, got)
			}
			return nil
		})
	}
}
