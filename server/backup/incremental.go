package backup

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// An incremental backup is taken against the manifest of an earlier one
// (its base, Manifest.Full of it): body files the base has (same name and
// size: they are immutable, named once) are only listed, with Ref set; an
// index file (*.db) is sent as the chunks that differ from the base's
// chunks, in the entry Name+DeltaSuffix: for each chunk its number
// (uint32, big-endian), its length (uint32) and its bytes. Every other
// file (keys, certificates) is small and sent whole.
//
// An incremental backup is restored by applying its chain in order onto
// a staging directory (Apply), from the full backup to the last one, and
// writing a full backup from that (WriteDir), which Restore takes as any.

// DeltaSuffix ends the name of the entry that holds an index file's
// changed chunks.
const DeltaSuffix = ".delta"

// isIndex reports whether name is an index file, listed with its chunks.
func isIndex(name string) bool { return strings.HasSuffix(name, ".db") }

// immutable reports whether the file name never changes once written: a
// message body (store or queue), named by a random ID.
func immutable(name string) bool {
	return strings.HasPrefix(name, "store/msg/") || strings.HasPrefix(name, "queue/msg/")
}

// SetBase makes the backup incremental against base (a full manifest of
// the backup named baseName, as Manifest.Full returns it). Call it before
// any Add.
func (w *Writer) SetBase(baseName string, base *Manifest) {
	w.base = map[string]File{}
	for _, f := range base.Files {
		w.base[f.Name] = f
	}
	w.m.Base, w.m.BaseCreated = baseName, base.Created
	w.m.FormatVersion = 2
}

// addIndex adds an index file: whole with its chunks' SHA-256, or as a
// delta against the base's chunks. The content is spooled to a temporary
// file when a delta is sent, as the tar header needs its size first.
func (w *Writer) addIndex(name string, size int64, r io.Reader) error {
	b, inBase := w.base[name]
	if !inBase || len(b.Chunks) == 0 {
		// Whole, hashing the chunks as it streams.
		cw := &chunkHasher{}
		if err := w.addContent(name, size, io.TeeReader(r, cw)); err != nil {
			return err
		}
		w.m.Files[len(w.m.Files)-1].Chunks = cw.sums()
		return nil
	}
	spool, err := os.CreateTemp("", "mailctl-backup-delta-*")
	if err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	whole := sha256.New()
	var chunks []string
	buf := make([]byte, ChunkSize)
	var n int64
	var hdr [8]byte
	for i := 0; ; i++ {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			n += int64(k)
			whole.Write(buf[:k])
			h := chunkSum(buf[:k])
			chunks = append(chunks, h)
			if i >= len(b.Chunks) || b.Chunks[i] != h {
				binary.BigEndian.PutUint32(hdr[:4], uint32(i))
				binary.BigEndian.PutUint32(hdr[4:], uint32(k))
				spool.Write(hdr[:])
				if _, err := spool.Write(buf[:k]); err != nil {
					return fmt.Errorf("backup: %s: %w", name, err)
				}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("backup: %s: %w", name, err)
		}
	}
	if n != size {
		return fmt.Errorf("backup: %s: read %d bytes, expected %d", name, n, size)
	}
	dsize, err := spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := w.addContent(name+DeltaSuffix, dsize, spool); err != nil {
		return err
	}
	// The delta's own entry is replaced by the index file's, marked so.
	w.m.Files[len(w.m.Files)-1] = File{Name: name, Size: size, SHA256: hex.EncodeToString(whole.Sum(nil)), Chunks: chunks, Delta: true}
	return nil
}

// chunkSum is a chunk's checksum in a manifest.
func chunkSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// chunkHasher hashes what is written to it in ChunkSize chunks.
type chunkHasher struct {
	cur  []byte
	list []string
}

func (c *chunkHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(ChunkSize-len(c.cur), len(p))
		c.cur = append(c.cur, p[:k]...)
		p = p[k:]
		if len(c.cur) == ChunkSize {
			c.flush()
		}
	}
	return n, nil
}

func (c *chunkHasher) flush() {
	c.list = append(c.list, chunkSum(c.cur))
	c.cur = c.cur[:0]
}

func (c *chunkHasher) sums() []string {
	if len(c.cur) > 0 {
		c.flush()
	}
	return c.list
}

// readDelta reads a delta entry, writing it to p when p is not "", and
// returns the SHA-256 of each chunk it holds by number.
func readDelta(r io.Reader, p string) (map[int]string, error) {
	var out io.Writer = io.Discard
	if p != "" {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		out = f
	}
	held := map[int]string{}
	var hdr [8]byte
	buf := make([]byte, ChunkSize)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return held, nil
		} else if err != nil {
			return nil, err
		}
		i, k := int(binary.BigEndian.Uint32(hdr[:4])), int(binary.BigEndian.Uint32(hdr[4:]))
		if _, dup := held[i]; k > ChunkSize || k <= 0 || dup {
			return nil, fmt.Errorf("bad chunk %d of %d bytes", i, k)
		}
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return nil, err
		}
		held[i] = chunkSum(buf[:k])
		out.Write(hdr[:])
		if _, err := out.Write(buf[:k]); err != nil {
			return nil, err
		}
	}
}

// checkAgainstBase checks the references and deltas of an incremental
// manifest against its base (a full manifest): a reference must be a
// file of the base with the same size and SHA-256, and a chunk a delta
// does not hold must be the base's.
func checkAgainstBase(m, base *Manifest, held map[string]map[int]string) error {
	bf := map[string]File{}
	for _, f := range base.Files {
		bf[f.Name] = f
	}
	for _, f := range m.Files {
		b := bf[f.Name]
		switch {
		case f.Ref:
			if b.Name == "" || b.Size != f.Size || b.SHA256 != f.SHA256 {
				return fmt.Errorf("%s is taken from the base backup %s, which does not have it", f.Name, m.Base)
			}
		case f.Delta:
			if want := int((f.Size + ChunkSize - 1) / ChunkSize); len(f.Chunks) != want {
				return fmt.Errorf("%s: %d chunks listed for %d bytes", f.Name, len(f.Chunks), f.Size)
			}
			for i, c := range f.Chunks {
				if _, ok := held[f.Name][i]; ok {
					continue
				}
				if i >= len(b.Chunks) || b.Chunks[i] != c {
					return fmt.Errorf("%s: chunk %d is neither in this backup nor in the base backup %s", f.Name, i, m.Base)
				}
			}
		}
	}
	return nil
}

// Apply reads a backup from r (full, or incremental against the backup
// last applied) onto the staging directory dir, which then holds every
// file of the backup, each checked against its manifest; files of the
// earlier backup that this one no longer has are removed. base is the
// manifest of the backup last applied (nil for the first, which must be
// full).
func Apply(ctx context.Context, r io.Reader, dir string, base *Manifest) (*Manifest, error) {
	incoming := filepath.Join(dir, ".incoming")
	os.RemoveAll(incoming)
	defer os.RemoveAll(incoming)
	m, err := read(ctx, r, incoming, base)
	if err != nil {
		return nil, err
	}
	if m.Incremental() != (base != nil) {
		if base == nil {
			return nil, fmt.Errorf("apply backup: it is incremental (built on %s): apply its chain from the full backup", m.Base)
		}
		return nil, errors.New("apply backup: a full backup where an incremental one was expected")
	}
	if base == nil {
		os.RemoveAll(filepath.Join(dir, "files"))
	}
	files := filepath.Join(dir, "files")
	want := map[string]bool{}
	for _, f := range m.Files {
		want[f.Name] = true
		dst := filepath.Join(files, filepath.FromSlash(f.Name))
		src := filepath.Join(incoming, filepath.FromSlash(f.Name))
		switch {
		case f.Ref:
			fi, err := os.Stat(dst)
			if err != nil || fi.Size() != f.Size {
				return nil, fmt.Errorf("apply backup: %s: not in the backups applied before", f.Name)
			}
		case f.Delta:
			if err := applyDelta(src+DeltaSuffix, dst, f.Size); err != nil {
				return nil, fmt.Errorf("apply backup: %s: %w", f.Name, err)
			}
			got, err := hashFile(dst)
			if err != nil || got != f.SHA256 {
				return nil, fmt.Errorf("apply backup: %s: the index rebuilt from the chain differs from the manifest (%v)", f.Name, err)
			}
		default:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return nil, err
			}
			if err := os.Rename(src, dst); err != nil {
				return nil, fmt.Errorf("apply backup: %w", err)
			}
		}
	}
	// What the backups before had and this one has not: expunged bodies.
	err = filepath.WalkDir(files, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(files, p)
		if !want[filepath.ToSlash(rel)] {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apply backup: %w", err)
	}
	return m.Full(), nil
}

// applyDelta writes the chunks of the delta file at src into the file dst
// and cuts it to size.
func applyDelta(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	var hdr [8]byte
	buf := make([]byte, ChunkSize)
	for {
		if _, err := io.ReadFull(in, hdr[:]); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		i, k := int64(binary.BigEndian.Uint32(hdr[:4])), int(binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.ReadFull(in, buf[:k]); err != nil {
			return err
		}
		if _, err := out.WriteAt(buf[:k], i*ChunkSize); err != nil {
			return err
		}
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	return out.Close()
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteDir writes the full backup m (as Apply returned it) from the
// staging directory dir to w.
func WriteDir(ctx context.Context, w io.Writer, dir string, m *Manifest) error {
	bw := NewWriter(w, m.Hostname, m.ServerVersion)
	bw.m.Created = m.Created
	bw.m.FormatVersion = 1
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		fh, err := os.Open(filepath.Join(dir, "files", filepath.FromSlash(f.Name)))
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		err = bw.Add(f.Name, f.Size, fh)
		fh.Close()
		if err != nil {
			return err
		}
		if got := bw.m.Files[len(bw.m.Files)-1]; got.SHA256 != f.SHA256 {
			return fmt.Errorf("backup: %s changed on disk", f.Name)
		}
	}
	_, err := bw.Close()
	return err
}
