package store

import (
	"runtime/debug"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/procmem"
)

// bbolt maps the index shared and read-only: the pages read through the
// mapping stay resident, and count in the RSS and PSS of the server, until
// they are dropped, though the kernel keeps them in its page cache anyway.
// The big reads (bodies, cached headers, records) read the file instead
// (pread.go); what still goes through the mapping (commits, which read the
// pages they change and, by fault-around, those around them) is dropped
// from resident memory (MADV_DONTNEED: the next accesses map the pages
// again from the page cache):
//   - the whole mapping every trimEvery bytes of bodies written, after
//     expunges, copies and deleted mailboxes that read bodies, and after
//     the store is opened (bbolt reads every page to rebuild its freelist);
//   - after a commit, when the file-backed memory resident in the process
//     has grown by more than mappedBudget since the last trim (checkMapped).

// trimEvery is how many bytes of bodies are written between two
// trims of the mapping.
const trimEvery = 4 << 20

// trimMapping drops the mapping of the index from resident memory. The
// mapping cannot be replaced while the read transaction is open.
func (s *Store) trimMapping() {
	s.db.View(func(tx *bolt.Tx) error {
		if data, n := tx.DB().Info().Data, uintptr(tx.Size()); data != 0 && n > 0 {
			procmem.DontNeed(data, n) // nothing is lost if it fails
		}
		return nil
	})
	if n, err := procmem.FileResident(); err == nil {
		s.mappedBase.Store(n)
	}
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

// wroteInline counts n bytes of bodies written to the index and trims the
// whole mapping every trimEvery bytes.
func (s *Store) wroteInline(n int64) {
	if s.inlineWritten.Add(n) < trimEvery {
		return
	}
	if s.inlineWritten.Swap(0) >= trimEvery {
		s.trimMapping()
	}
}

// mappedBudget is how much the file-backed memory resident in the process
// (the index mapping, the executable) may grow between two trims.
var mappedBudget int64 = 8 << 20 // tests make it smaller

// checkMapped trims the mapping when the file-backed resident memory has
// grown by more than mappedBudget since the last trim. It must not be
// called within a transaction (trimMapping opens one).
func (s *Store) checkMapped() {
	n, err := procmem.FileResident()
	if err != nil || n-s.mappedBase.Load() <= mappedBudget {
		return
	}
	if !s.trimming.TryLock() {
		return // another goroutine is at it
	}
	defer s.trimming.Unlock()
	s.trimMapping()
}

// checkMappedEvery is how many records a long transaction changes between
// two checks (checkMappedTx).
const checkMappedEvery = 256

// checkMappedTx is checkMapped within transaction tx, which keeps the
// mapping in place: a big change maps the pages of every record it reads,
// and those around them, before its commit.
func (s *Store) checkMappedTx(tx *bolt.Tx) {
	n, err := procmem.FileResident()
	if err != nil || n-s.mappedBase.Load() <= mappedBudget {
		return
	}
	if data, size := tx.DB().Info().Data, uintptr(tx.Size()); data != 0 && size > 0 {
		procmem.DontNeed(data, size) // nothing is lost if it fails
	}
	if n, err := procmem.FileResident(); err == nil {
		s.mappedBase.Store(n)
	}
	s.step("trim mapping", "") // for tests
}
