package store

import (
	"runtime/debug"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// bbolt maps the index shared and read-only: the pages read through the
// mapping stay resident, and count in the RSS and PSS of the server, until
// the mapping is replaced, though the kernel keeps them in its page cache
// anyway. Bodies kept in the index are read through it (OpenBody, and each
// commit reads the last leaf of the bodies, which holds the end of those
// delivered just before), where body files, read with read(2), never were. So
// the store drops the whole mapping from its resident memory
// (MADV_DONTNEED: the next accesses read the pages again from the page
// cache) every trimEvery bytes of bodies written or read, and after
// expunges, copies and deleted mailboxes that read bodies.

// trimEvery is how many bytes of bodies are written or read between two
// trims of the mapping.
const trimEvery = 4 << 20

// trimMapping drops the mapping of the index from resident memory. The
// mapping cannot be replaced while the read transaction is open.
func (s *Store) trimMapping() {
	s.db.View(func(tx *bolt.Tx) error {
		if data, n := tx.DB().Info().Data, uintptr(tx.Size()); data != 0 && n > 0 {
			dontNeed(data, n)
		}
		return nil
	})
}

// bigDelete is the number of bodies kept in the index whose removal in one
// transaction returns the memory it took to the kernel: bbolt loads a node
// for each leaf it deletes from (about 4 KiB of heap per body, 80 MiB for
// 20 000), which the Go runtime would otherwise give back only slowly.
const bigDelete = 1000

// deletedInline trims the mapping after n bodies kept in the index were
// removed, and returns the heap after a big removal.
func (s *Store) deletedInline(n int) {
	if n == 0 {
		return
	}
	s.trimMapping()
	if n >= bigDelete {
		debug.FreeOSMemory()
	}
}

// countInline counts n bytes of bodies written to or read from the index
// in c and trims the mapping every trimEvery bytes.
func (s *Store) countInline(c *atomic.Int64, n int64) {
	if c.Add(n) < trimEvery {
		return
	}
	if c.Swap(0) >= trimEvery {
		s.trimMapping()
	}
}
