package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Reading the index without its mapping.
//
// bbolt reads only through its shared mapping of the index, and every page
// read through it stays in the process's resident memory (RSS and PSS)
// until the mapping is dropped: FETCH of every body of a 10 000-message
// mailbox left the whole 130 MB index resident. The kernel also maps the
// pages around each one read (fault-around), so that reading all the cached
// headers, scattered among the bodies' pages, mapped nearly the whole file
// as well. Dropping the pages (MADV_DONTNEED) and faulting them in again
// costs 5-7 µs per page on the project's virtual machines, several times
// what pread(2) costs to copy them: FETCH of every body fell from 358 to 95
// MB/s in-package when they were dropped every 8 MiB.
//
// So the big reads of read-only transactions (bodies kept in the index,
// cached headers, message records) read the B+tree's pages with pread(2)
// from a descriptor of their own, in bbolt's file format: a page at
// pgid*pageSize of 16 bytes of header (id uint64, flags uint16, count uint16,
// overflow uint32) followed by count elements of 16 bytes (branch: pos, ksize
// uint32, pgid uint64; leaf: flags, pos, ksize, vsize uint32; pos counted
// from the element itself), in the machine's byte order. bbolt's API has no
// such read; the format is bbolt's on-disk format, which it keeps
// compatible. The pages of a read-only transaction's tree are not reused
// while it is open, and pread sees what the mapping sees (the page cache).
// Anything unexpected (an inline bucket, a page of the wrong kind) makes the
// caller read through bbolt as before: errNoFileRead.

// errNoFileRead says that a bucket cannot be read from the file: read it
// through bbolt.
var errNoFileRead = errors.New("bucket not readable from the index file")

const (
	pageHeaderSize  = 16
	pageElementSize = 16
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	bucketLeafFlag  = 0x01
)

// indexFile reads pages of the index with pread; those of bodies in
// windows of fileWindow bytes: the pages of a body, and the branch pages
// above them, are mostly next to each other, and a pread costs about as
// much as one page fault (4 µs here). The last maxWindows windows read are kept while no commit
// happens: the pages of the tree of the last commit are not rewritten
// until the next one (bbolt reuses a freed page only once no transaction
// can read it).
type indexFile struct {
	f        *os.File
	pageSize int

	mu    sync.Mutex
	txid  int              // of the transaction whose windows are kept
	wins  map[int64][]byte // window number -> its bytes
	order []int64          // window numbers, oldest first
}

const (
	fileWindow = 64 << 10
	maxWindows = 32 // 2 MiB
)

func newIndexFile(f *os.File, pageSize int) *indexFile {
	return &indexFile{f: f, pageSize: pageSize, wins: map[int64][]byte{}}
}

// readAt reads len(buf) bytes at off of the file, as transaction txid sees
// it, through the windows when they hold them.
func (r *indexFile) readAt(txid int, buf []byte, off int64, window bool) error {
	w := off / fileWindow
	if !window || (off+int64(len(buf))-1)/fileWindow != w {
		// Across windows (overflow pages): read directly.
		_, err := r.f.ReadAt(buf, off)
		return err
	}
	r.mu.Lock()
	switch {
	case txid > r.txid:
		// Committed since: the pages kept may have been rewritten.
		clear(r.wins)
		r.order = r.order[:0]
		r.txid = txid
	case txid < r.txid:
		// An older transaction: its pages are not those kept.
		r.mu.Unlock()
		_, err := r.f.ReadAt(buf, off)
		return err
	}
	win, ok := r.wins[w]
	if ok {
		// Most recently used last: the windows of the branch pages,
		// read for every body, stay.
		if i := slices.Index(r.order, w); i >= 0 && i < len(r.order)-1 {
			copy(r.order[i:], r.order[i+1:])
			r.order[len(r.order)-1] = w
		}
	} else {
		if len(r.order) >= maxWindows {
			old := r.order[0]
			r.order = append(r.order[:0], r.order[1:]...)
			win = r.wins[old][:fileWindow]
			delete(r.wins, old)
		} else {
			win = make([]byte, fileWindow)
		}
		n, err := r.f.ReadAt(win, w*fileWindow)
		if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			r.mu.Unlock()
			return err
		}
		win = win[:n]
		r.wins[w] = win
		r.order = append(r.order, w)
	}
	start := int(off - w*fileWindow)
	if start+len(buf) > len(win) {
		r.mu.Unlock()
		return io.ErrUnexpectedEOF
	}
	copy(buf, win[start:])
	r.mu.Unlock()
	return nil
}

// fileCursor walks the leaves of one bucket's B+tree read from the file:
// Seek and Next as bolt.Cursor's. Keys and values are valid until the next
// move.
type fileCursor struct {
	r    *indexFile
	txid int
	// window: read through the windows (pages next to each other, as
	// those of a body); else page by page (records and headers, whose
	// leaves are scattered among the bodies' pages: a window would copy
	// 16 pages for one).
	window bool
	root   uint64
	stack  []fileFrame
	bufs   [][]byte // page buffers, reused
}

type fileFrame struct {
	page  []byte
	index int
}

// fileCursor returns a cursor reading b from the file, or nil when b is
// not to be read so: no file, a writable transaction (whose changes are in
// memory only) or an inline bucket (kept in its parent's page).
func (r *indexFile) cursor(tx *bolt.Tx, b *bolt.Bucket) *fileCursor {
	if r == nil || b == nil || tx.Writable() {
		return nil
	}
	root := uint64(b.Root())
	if root == 0 {
		return nil
	}
	c := cursors.Get().(*fileCursor)
	c.r, c.txid, c.root, c.stack, c.window = r, tx.ID(), root, c.stack[:0], false
	return c
}

// cursors keeps fileCursors and their page buffers between reads.
var cursors = sync.Pool{New: func() any { return new(fileCursor) }}

// release gives c back for another read; c must not be used after. A nil
// c is not released.
func (c *fileCursor) release() {
	if c == nil {
		return
	}
	c.r, c.stack = nil, c.stack[:0]
	for i, b := range c.bufs {
		if cap(b) > 4*fileWindow { // a big overflow page: not kept
			c.bufs[i] = nil
		}
	}
	cursors.Put(c)
}

// readPage reads page id (with its overflow pages) into a buffer of
// depth's frame.
func (c *fileCursor) readPage(id uint64, depth int) ([]byte, error) {
	for len(c.bufs) <= depth {
		c.bufs = append(c.bufs, nil)
	}
	if cap(c.bufs[depth]) < c.r.pageSize {
		c.bufs[depth] = make([]byte, c.r.pageSize)
	}
	buf := c.bufs[depth][:c.r.pageSize]
	if err := c.r.readAt(c.txid, buf, int64(id)*int64(c.r.pageSize), c.window); err != nil {
		return nil, fmt.Errorf("read index page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(buf); got != id {
		return nil, fmt.Errorf("%w: page %d says it is %d", errNoFileRead, id, got)
	}
	if overflow := int(ne.Uint32(buf[12:])); overflow > 0 {
		n := (overflow + 1) * c.r.pageSize
		if cap(c.bufs[depth]) < n {
			c.bufs[depth] = append(make([]byte, 0, n), buf...)
		}
		buf = c.bufs[depth][:n]
		if err := c.r.readAt(c.txid, buf[c.r.pageSize:], int64(id)*int64(c.r.pageSize)+int64(c.r.pageSize), false); err != nil {
			return nil, fmt.Errorf("read index page %d: %w", id, err)
		}
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if (flags != branchPageFlag && flags != leafPageFlag) || pageHeaderSize+count*pageElementSize > len(buf) {
		return nil, fmt.Errorf("%w: page %d: flags %#x, %d elements", errNoFileRead, id, flags, count)
	}
	return buf, nil
}

func pageFlags(p []byte) uint16 { return binary.NativeEndian.Uint16(p[8:]) }
func pageCount(p []byte) int    { return int(binary.NativeEndian.Uint16(p[10:])) }

// element returns the key, and the value (leaf) or child page (branch), of
// element i of page p.
func element(p []byte, i int) (key, value []byte, child uint64, flags uint32, err error) {
	ne := binary.NativeEndian
	off := pageHeaderSize + i*pageElementSize
	e := p[off : off+pageElementSize]
	if pageFlags(p) == branchPageFlag {
		pos, ksize := int(ne.Uint32(e)), int(ne.Uint32(e[4:]))
		if off+pos+ksize > len(p) {
			return nil, nil, 0, 0, fmt.Errorf("%w: branch element out of its page", errNoFileRead)
		}
		return p[off+pos : off+pos+ksize], nil, ne.Uint64(e[8:]), 0, nil
	}
	flags = ne.Uint32(e)
	pos, ksize, vsize := int(ne.Uint32(e[4:])), int(ne.Uint32(e[8:])), int(ne.Uint32(e[12:]))
	if off+pos+ksize+vsize > len(p) {
		return nil, nil, 0, 0, fmt.Errorf("%w: leaf element out of its page", errNoFileRead)
	}
	k := p[off+pos : off+pos+ksize]
	v := p[off+pos+ksize : off+pos+ksize+vsize]
	return k, v, 0, flags, nil
}

// Seek moves to the first key at or after seek and returns it (nil at the
// end).
func (c *fileCursor) Seek(seek []byte) (key, value []byte, err error) {
	c.stack = c.stack[:0]
	id := c.root
	for depth := 0; ; depth++ {
		if depth > 64 {
			return nil, nil, fmt.Errorf("%w: tree too deep", errNoFileRead)
		}
		p, err := c.readPage(id, depth)
		if err != nil {
			return nil, nil, err
		}
		n := pageCount(p)
		var ferr error
		i := sort.Search(n, func(i int) bool {
			k, _, _, _, err := element(p, i)
			if err != nil {
				ferr = err
				return true
			}
			return bytes.Compare(k, seek) >= 0
		})
		if ferr != nil {
			return nil, nil, ferr
		}
		if pageFlags(p) == leafPageFlag {
			c.stack = append(c.stack, fileFrame{page: p, index: i})
			if i >= n {
				return c.Next()
			}
			return c.current()
		}
		// Branch: the last child whose first key is at most seek.
		if n == 0 {
			return nil, nil, fmt.Errorf("%w: empty branch page", errNoFileRead)
		}
		if i >= n {
			i = n - 1
		} else if k, _, _, _, _ := element(p, i); !bytes.Equal(k, seek) && i > 0 {
			i--
		}
		c.stack = append(c.stack, fileFrame{page: p, index: i})
		_, _, id, _, _ = element(p, i)
	}
}

// First moves to the first key.
func (c *fileCursor) First() (key, value []byte, err error) { return c.Seek(nil) }

// Next moves to the next key and returns it (nil at the end).
func (c *fileCursor) Next() (key, value []byte, err error) {
	for {
		if len(c.stack) == 0 {
			return nil, nil, nil
		}
		leaf := &c.stack[len(c.stack)-1]
		if leaf.index+1 < pageCount(leaf.page) {
			leaf.index++
			return c.current()
		}
		// Up to the first branch with a next child, then down its
		// leftmost path.
		d := len(c.stack) - 2
		for d >= 0 && c.stack[d].index+1 >= pageCount(c.stack[d].page) {
			d--
		}
		if d < 0 {
			c.stack = c.stack[:0]
			return nil, nil, nil
		}
		c.stack[d].index++
		c.stack = c.stack[:d+1]
		for {
			top := c.stack[len(c.stack)-1]
			_, _, id, _, err := element(top.page, top.index)
			if err != nil {
				return nil, nil, err
			}
			p, err := c.readPage(id, len(c.stack))
			if err != nil {
				return nil, nil, err
			}
			c.stack = append(c.stack, fileFrame{page: p, index: 0})
			if pageFlags(p) == leafPageFlag {
				break
			}
			if pageCount(p) == 0 {
				return nil, nil, fmt.Errorf("%w: empty branch page", errNoFileRead)
			}
		}
		leaf = &c.stack[len(c.stack)-1]
		if pageCount(leaf.page) > 0 {
			return c.current()
		}
		// An empty leaf (only a root can be): go on.
		leaf.index = -1 + pageCount(leaf.page)
	}
}

// current returns the element under the cursor. Nested buckets are not
// read from the file.
func (c *fileCursor) current() (key, value []byte, err error) {
	top := c.stack[len(c.stack)-1]
	k, v, _, flags, err := element(top.page, top.index)
	if err != nil {
		return nil, nil, err
	}
	if flags&bucketLeafFlag != 0 {
		return nil, nil, fmt.Errorf("%w: nested bucket", errNoFileRead)
	}
	return k, v, nil
}

// forEach calls fn for every key and value of b, read from the file when
// it can be, else through bbolt.
func (r *indexFile) forEach(tx *bolt.Tx, b *bolt.Bucket, fn func(k, v []byte) error) error {
	if c := r.cursor(tx, b); c != nil {
		defer c.release()
		var n int
		err := func() error {
			for k, v, err := c.First(); k != nil || err != nil; k, v, err = c.Next() {
				if err != nil {
					return err
				}
				if err := fn(k, v); err != nil {
					return err
				}
				n++
			}
			return nil
		}()
		if !errors.Is(err, errNoFileRead) || n > 0 {
			return err
		}
	}
	return b.ForEach(fn)
}
