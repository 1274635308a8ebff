package store

import (
	"os"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// mappedSpans collects the pages of bbolt's mapping of the index that a
// transaction read message bodies from, so that they can be dropped from
// the process's resident memory once the bodies are copied out. bbolt maps
// the file shared and read-only: pages read through the mapping stay
// resident, and count in the RSS and PSS of the server, until the mapping
// is replaced, though the kernel keeps them in its page cache anyway. Body
// files, read with read(2), never were.
//
// drop must be called within the transaction, before it allocates pages
// (a write transaction may replace the mapping when it grows the file).
type mappedSpans struct {
	lo, hi uintptr // the part of the mapping this transaction may read
	spans  [][2]uintptr
}

func newMappedSpans(tx *bolt.Tx) mappedSpans {
	data := tx.DB().Info().Data
	return mappedSpans{lo: data, hi: data + uintptr(tx.Size())}
}

// dropUnit is the alignment of the spans dropped: on a page fault the
// kernel also maps the cached pages around (fault-around, 64 KiB by
// default), which would stay resident otherwise.
var dropUnit = max(uintptr(os.Getpagesize()), 64<<10)

// add notes the pages of v, when v lies in the mapping (a value written by
// the transaction itself is in the Go heap: it is left alone).
func (m *mappedSpans) add(v []byte) {
	if len(v) == 0 || m.lo == 0 {
		return
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	e := a + uintptr(len(v))
	if a < m.lo || e > m.hi {
		return
	}
	a = max(a&^(dropUnit-1), m.lo)
	e = min((e+dropUnit-1)&^(dropUnit-1), m.hi)
	if n := len(m.spans); n > 0 && a <= m.spans[n-1][1] && e >= m.spans[n-1][0] {
		m.spans[n-1] = [2]uintptr{min(a, m.spans[n-1][0]), max(e, m.spans[n-1][1])}
		return
	}
	m.spans = append(m.spans, [2]uintptr{a, e})
}

// drop releases the pages noted (MADV_DONTNEED: the next access reads them
// again from the page cache). Failures only leave them resident.
func (m *mappedSpans) drop() {
	for _, s := range m.spans {
		dontNeed(s[0], s[1]-s[0])
	}
	m.spans = m.spans[:0]
}

// trimEvery is how many bytes of bodies deliveries add to the index
// between two trimMapping: each commit reads the last leaf of the bodies
// and, by fault-around, the pages written just before it.
const trimEvery = 4 << 20

// trimMapping drops the whole mapping of the index from the process's
// resident memory (the next accesses read the pages again from the page
// cache), after writes that read many body pages: deliveries (every
// trimEvery bytes), expunges, copies and deleted mailboxes.
func (s *Store) trimMapping() {
	s.db.View(func(tx *bolt.Tx) error {
		m := newMappedSpans(tx)
		if m.lo != 0 && m.hi > m.lo {
			dontNeed(m.lo, m.hi-m.lo)
		}
		return nil
	})
}

// addedInline counts n bytes of bodies added to the index and trims the
// mapping every trimEvery bytes.
func (s *Store) addedInline(n int64) {
	if s.inlineSince.Add(n) < trimEvery {
		return
	}
	if s.inlineSince.Swap(0) >= trimEvery {
		s.trimMapping()
	}
}
