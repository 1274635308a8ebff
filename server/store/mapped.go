package store

import (
	"cmp"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/procmem"
)

// bbolt maps the index shared and read-only: the pages read through the
// mapping stay resident, and count in the RSS and PSS of the server, until
// the mapping is replaced, though the kernel keeps them in its page cache
// anyway. Bodies kept in the index are read through it (OpenBody), where
// body files, read with read(2), never were; and each commit reads the last
// pages of the trees it appends to. So the store drops from its resident
// memory (MADV_DONTNEED: the next accesses map the pages again from the
// page cache):
//   - the pages of the bodies read, once they reach trimReadEvery: only those,
//     so that the rest of the index (records, the cached headers that FETCH
//     ENVELOPE and header SEARCH read) stays resident;
//   - the whole mapping every trimEvery bytes of bodies written, and after
//     expunges, copies and deleted mailboxes that read bodies.

// trimReadEvery is how much of the bodies read may stay mapped: a cache
// (a client syncing a folder again, several sessions fetching the same
// messages) where each page dropped costs a page fault when read again and
// each drop interrupts every session reading (TLB shootdown). Once the
// pages of the bodies read reach it, they are all dropped.
const trimReadEvery = 128 << 20

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
	s.readSpans.mu.Lock()
	s.readSpans.pages.spans = nil // dropped with the rest
	s.readSpans.mu.Unlock()
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

// pageSpans are page-aligned address ranges of the index mapping at base,
// in the order read; a range adjacent to or overlapping the last one
// extends it (bodies read in UID order are mostly contiguous).
type pageSpans struct {
	base  uintptr
	spans [][2]uintptr
}

var pageMask = uintptr(os.Getpagesize() - 1)

// add notes the pages of b, a slice of the mapping. A nil receiver notes
// nothing.
func (p *pageSpans) add(b []byte) {
	if p == nil || len(b) == 0 {
		return
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p.addRange(addr&^pageMask, (addr+uintptr(len(b))+pageMask)&^pageMask)
}

// addRange notes the page-aligned range [start, end).
func (p *pageSpans) addRange(start, end uintptr) {
	if n := len(p.spans); n > 0 {
		last := &p.spans[n-1]
		if start <= last[1] && end >= last[0] {
			last[0], last[1] = min(last[0], start), max(last[1], end)
			return
		}
	}
	p.spans = append(p.spans, [2]uintptr{start, end})
}

// readSpans gathers the pages read for bodies since the last trim.
type readSpans struct {
	every int64 // trimReadEvery; tests make it smaller
	// bytes of bodies read since the pages were last counted
	mu    sync.Mutex
	pages pageSpans
	bytes int64
}

// readBodies notes the pages read for n bytes of bodies. Every
// trimCheckEvery bytes read it counts the distinct pages noted (sessions
// reading the same messages note the same pages) and, once they reach
// r.every bytes, drops them from resident memory.
func (s *Store) readBodies(p *pageSpans, n int64) {
	r := &s.readSpans
	r.mu.Lock()
	if r.pages.base != p.base {
		// The mapping was replaced since: its pages went with it.
		r.pages = pageSpans{base: p.base}
	}
	for _, sp := range p.spans {
		r.pages.addRange(sp[0], sp[1])
	}
	r.bytes += n
	var drop pageSpans
	if r.bytes >= trimCheckEvery {
		r.bytes = 0
		r.pages.spans = mergeSpans(r.pages.spans)
		var mapped uintptr
		for _, sp := range r.pages.spans {
			mapped += sp[1] - sp[0]
		}
		if int64(mapped) >= r.every {
			drop, r.pages = r.pages, pageSpans{base: p.base}
		}
	}
	r.mu.Unlock()
	if len(drop.spans) > 0 {
		s.dropPages(drop)
	}
}

// trimCheckEvery is how many bytes of bodies are read between two counts
// of the pages noted.
const trimCheckEvery = 4 << 20

// dropPages drops the pages of p from resident memory, if p's mapping is
// still the index's: a range of a mapping since replaced may have been
// reused for other memory, which MADV_DONTNEED would wipe.
func (s *Store) dropPages(p pageSpans) {
	s.db.View(func(tx *bolt.Tx) error {
		data, size := tx.DB().Info().Data, uintptr(tx.Size())
		if data == 0 || data != p.base {
			return nil
		}
		// One call per run of pages (merged): each call interrupts every
		// processor running the server (TLB shootdown).
		for _, sp := range p.spans {
			if sp[0] >= data && sp[1] <= (data+size+pageMask)&^pageMask {
				procmem.DontNeed(sp[0], sp[1]-sp[0])
			}
		}
		return nil
	})
}

// mergeSpans sorts spans and merges those that overlap or touch.
func mergeSpans(spans [][2]uintptr) [][2]uintptr {
	slices.SortFunc(spans, func(a, b [2]uintptr) int { return cmp.Compare(a[0], b[0]) })
	out := spans[:0]
	for _, sp := range spans {
		if n := len(out); n > 0 && sp[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], sp[1])
			continue
		}
		out = append(out, sp)
	}
	return out
}
