package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/internal/bufpool"
)

// Bodies kept in the index. A message body of up to MaxInlineBody bytes is
// stored in the index itself, in the transaction that commits its record,
// rather than in a file of its own: the commit's fsyncs then make durable
// every body of the group at once, where each file needed its own
// creation and fsync. Larger bodies, and those of stores written before,
// stay in files (msg/xx/<blob>).
//
//	bodies/<body id, 8 bytes><chunk number, 4 bytes> = chunk bytes
//
// Body ids come from the bucket's sequence, so deliveries append at the
// end of the B+tree and a commit rewrites only its last leaf beside the new
// pages. A body is cut into chunks of bodyChunk bytes (at least one, maybe
// empty), so that a leaf page holds a few of them: a body as one value
// would share its leaf with its neighbours, and each commit would rewrite
// (and read back) the bodies delivered just before.
var bucketBodies = []byte("bodies")

// MaxInlineBody is the largest body kept in the index.
const MaxInlineBody = 128 << 10

// bodyChunk is the size of the values of the bodies bucket: two of them
// (with their keys and headers) fill a 4 KiB page.
const bodyChunk = 2000

func bodyKey(id uint64, chunk uint32) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, id)
	binary.BigEndian.PutUint32(k[8:], chunk)
	return k
}

// putBody stores body under a new id, within tx, and returns the id. The
// bucket keeps references to body until the transaction ends.
func putBody(tx *bolt.Tx, body []byte) (uint64, error) {
	b := tx.Bucket(bucketBodies)
	b.FillPercent = 1 // appends only: full pages
	id, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	for chunk := uint32(0); ; chunk++ {
		n := min(len(body), bodyChunk)
		if err := b.Put(bodyKey(id, chunk), body[:n]); err != nil {
			return 0, err
		}
		body = body[n:]
		if len(body) == 0 {
			return id, nil
		}
	}
}

// bodyKeys returns the keys of body id, in order.
func bodyKeys(b *bolt.Bucket, id uint64) [][]byte {
	var keys [][]byte
	prefix := bodyKey(id, 0)[:8]
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	return keys
}

// deleteBody removes body id within tx.
func deleteBody(tx *bolt.Tx, id uint64) error {
	b := tx.Bucket(bucketBodies)
	for _, k := range bodyKeys(b, id) {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// copyBody stores a copy of body id under a new id, within tx.
func copyBody(tx *bolt.Tx, id uint64, size int64) (uint64, error) {
	body, err := readBody(tx, nil, id, size, nil)
	if err != nil {
		return 0, err
	}
	return putBody(tx, body)
}

// readBody appends to dst[:0] a copy of body id, which must be size bytes
// long; it fails with os.ErrNotExist when there is no such body. In a
// read-only transaction it reads the pages from file (pread.go), else
// through bbolt's mapping.
func readBody(tx *bolt.Tx, file *indexFile, id uint64, size int64, dst []byte) ([]byte, error) {
	if size < 0 || size > MaxInlineBody {
		return nil, fmt.Errorf("%w: body size %d", errCorrupt, size)
	}
	out := dst[:0]
	if int64(cap(out)) < size {
		out = make([]byte, 0, size)
	}
	b := tx.Bucket(bucketBodies)
	if c := file.cursor(tx, b); c != nil {
		c.window = true
		got, err := readBodyFrom(c, id, size, out)
		c.release()
		if !errors.Is(err, errNoFileRead) {
			return got, err
		}
	}
	return readBodyFrom(boltCursor{b.Cursor()}, id, size, out)
}

// boltCursor is a bolt.Cursor as a kvCursor.
type boltCursor struct{ c *bolt.Cursor }

func (c boltCursor) Seek(k []byte) ([]byte, []byte, error) { k, v := c.c.Seek(k); return k, v, nil }
func (c boltCursor) Next() ([]byte, []byte, error)         { k, v := c.c.Next(); return k, v, nil }

// kvCursor walks a bucket: bolt's cursor or a fileCursor.
type kvCursor interface {
	Seek(k []byte) ([]byte, []byte, error)
	Next() ([]byte, []byte, error)
}

// readBodyFrom reads body id of size bytes into out[:0] through c.
func readBodyFrom(c kvCursor, id uint64, size int64, out []byte) ([]byte, error) {
	out = out[:0]
	prefix := bodyKey(id, 0)[:8]
	k, v, err := c.Seek(prefix)
	if err != nil {
		return nil, err
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, os.ErrNotExist
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v, err = c.Next() {
		if int64(len(out)+len(v)) > size {
			return nil, fmt.Errorf("%w: body %d longer than %d bytes", errCorrupt, id, size)
		}
		out = append(out, v...)
	}
	if err != nil {
		return nil, err
	}
	if int64(len(out)) != size {
		return nil, fmt.Errorf("%w: body %d of %d bytes, want %d", errCorrupt, id, len(out), size)
	}
	return out, nil
}

// Body is an open message body (OpenBody).
type Body interface {
	io.Reader
	io.ReaderAt
	io.Closer
}

// memBody is a body read from the index, in a buffer from bodyBufs that
// Close gives back.
type memBody struct {
	*bytes.Reader
	buf *[]byte
}

func (b *memBody) Close() error {
	if b.buf != nil {
		b.Reader.Reset(nil)
		bodyBufs.Put(b.buf)
		b.buf = nil
	}
	return nil
}

// bodyBufs holds the buffers bodies are read into, at delivery (up to
// inlineMax+1 bytes) and from the index (OpenBody).
var bodyBufs = bufpool.New(32<<10, 2*MaxInlineBody)
