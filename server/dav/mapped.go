package dav

import (
	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/procmem"
)

// Keeping bbolt's memory map out of the resident memory.
//
// bbolt reads the store through a shared, read-only memory map of the
// whole file, and every page read through it stays in the process's
// resident memory (RssFile) until the mapping is dropped, though the
// kernel keeps the page in its page cache anyway. The kernel also maps the
// pages around each one read (fault-around, 64 KiB): a full REPORT of a
// 5 000-event calendar left 14 MiB of a 16 MiB store resident
// (TestReportLeavesStoreUnmapped), where a server that reads its files
// with read(2), as Radicale does, keeps none of them.
//
// So after each batch of objects a scan reads (ObjectsAfter, Objects,
// Changes: reportBatch objects), and every checkEvery bytes that single
// reads and changes read or write (a change counted with a page more for
// the tree), the process's file-backed resident memory (a counter the
// kernel keeps: /proc/self/statm, no walk of the page tables, but 10-20 µs
// a read) is compared with what it was after the last trim; past
// mappedBudget, the
// whole mapping is dropped (MADV_DONTNEED: the next accesses map the pages
// again from the page cache, about 5 µs a fault). The mail store
// (server/store) reads its big values with pread(2) instead, in bbolt's
// page format, for throughput over very large files; calendar objects are
// small and a REPORT reads a few MiB, for which dropping the mapping now
// and then costs a few milliseconds and keeps this store on bbolt's API.

// checkEvery is how many bytes of objects are read or written between two
// looks at the resident memory.
const checkEvery = 128 << 10

// changeCost is what a change counts for besides its data: the pages of
// the tree it reads and rewrites.
const changeCost = 4096

// readMapped counts n bytes read through the mapping in transaction tx
// and checks the resident memory every checkEvery bytes (checkMappedTx).
func (s *Store) readMapped(tx *bolt.Tx, n int) {
	if s.sinceCheck.Add(int64(n)) < checkEvery {
		return
	}
	s.sinceCheck.Store(0)
	s.checkMappedTx(tx)
}

// wroteMapped counts a change of n bytes of data, after its transaction,
// and checks the resident memory every checkEvery bytes (checkMapped).
func (s *Store) wroteMapped(n int) {
	if s.sinceCheck.Add(int64(n+changeCost)) < checkEvery {
		return
	}
	s.sinceCheck.Store(0)
	s.checkMapped()
}

// mappedBudget is how much the file-backed resident memory of the process
// may grow between two trims of the mapping.
var mappedBudget int64 = 1 << 20

// checkMappedTx trims the store's mapping, within transaction tx (which
// keeps bbolt from replacing the mapping meanwhile), when the file-backed
// resident memory has grown by more than mappedBudget since the last trim.
// Call it once nothing read through tx is used any more.
func (s *Store) checkMappedTx(tx *bolt.Tx) {
	n, err := procmem.FileResident()
	if err != nil || n-s.mappedBase.Load() <= mappedBudget {
		return
	}
	if !s.trimming.TryLock() {
		return // another goroutine is at it
	}
	defer s.trimming.Unlock()
	if data, size := tx.DB().Info().Data, uintptr(tx.Size()); data != 0 && size > 0 {
		procmem.DontNeed(data, size) // nothing is lost if it fails
	}
	if n, err := procmem.FileResident(); err == nil {
		s.mappedBase.Store(n)
	}
}

// checkMapped is checkMappedTx in a read transaction of its own, after a
// change (a write transaction reads the pages it changes through the
// mapping). It must not be called within a transaction.
func (s *Store) checkMapped() {
	n, err := procmem.FileResident()
	if err != nil || n-s.mappedBase.Load() <= mappedBudget {
		return
	}
	s.db.View(func(tx *bolt.Tx) error {
		s.checkMappedTx(tx)
		return nil
	})
}
