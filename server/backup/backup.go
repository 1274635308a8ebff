// Package backup writes and restores backups of the bundled mail server's
// data directory.
//
// A backup is a tar stream (archive/tar) compressed with gzip
// (compress/gzip): the standard library's, as no other compressor is a
// dependency of mailctl. Its entries are regular files named relative to
// the data directory:
//
//	store/index.db        the store's index, copied in one read transaction
//	store/msg/xx/<blob>   the body files that index refers to
//	store/quarantine/...  the store's quarantine, when there is one
//	queue/index.db        the outbound queue's index
//	queue/msg/<blob>      the bodies of queued messages
//	dav/dav.db            calendars and address books (server/dav),
//	                      copied in one read transaction
//	dkim/...              DKIM private keys
//	tls/..., acme/...     the self-signed certificate, the ACME account
//	                      and certificates
//	MANIFEST.json         last: the format, when and where the backup was
//	                      taken, and the size and SHA-256 of every file
//
// The manifest comes last because the checksums are computed as the files
// stream; a backup cut short has none and Restore refuses it. Restore
// unpacks into a directory beside the data directory, checks every file
// against the manifest, and only then moves the parts into place, so a bad
// backup leaves the data directory as it was.
//
// Greylisting state (greylist.db) is not in a backup: losing it only makes
// senders retry once more. Files are written 0600 in 0700 directories:
// the backup holds private keys.
//
// A backup can also be incremental, taken against the manifest of an
// earlier one (incremental.go): bodies the base has are only listed, and
// index files are sent as the fixed-size chunks that changed. The delta
// is this package's own, about a hundred lines: bbolt writes whole pages
// at fixed offsets, so comparing chunk checksums at the same offsets finds
// what changed, and an rsync-like library (rolling checksums for data that
// shifts, a wire protocol) would add a dependency for nothing this needs.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailctl/mailctl/server/store"
)

// Format identifies the manifest of a mailctl backup.
const Format = "mailctl-backup"

// FormatVersion is the version of the backup format: 1 for a full
// backup, 2 for an incremental one (which a mailctl that only knows 1
// refuses).
const FormatVersion = 2

// ChunkSize is the size of the chunks of an index file (*.db) whose
// SHA-256 a manifest lists, and that an incremental backup sends when they
// changed: bbolt rewrites whole pages, so a small change to the store
// changes a few chunks.
const ChunkSize = 16 << 10

// ManifestName is the name of the manifest entry, the last of a backup.
const ManifestName = "MANIFEST.json"

// Parts are the top-level entries of the data directory that a backup
// holds; Restore replaces those the backup has.
var Parts = []string{"store", "queue", "dav", "dkim", "tls", "acme"}

// Manifest describes a backup.
type Manifest struct {
	Format        string    `json:"format"`
	FormatVersion int       `json:"format_version"`
	Created       time.Time `json:"created"`
	Hostname      string    `json:"hostname"`
	ServerVersion string    `json:"server_version"`
	// Base is the file name of the backup an incremental backup builds
	// on ("" for a full backup); BaseCreated is when that was taken.
	Base        string    `json:"base,omitempty"`
	BaseCreated time.Time `json:"base_created,omitzero"`
	Files       []File    `json:"files"`
}

// File is one file of a backup.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Chunks are the checksums of each ChunkSize chunk of an index file:
	// the first 128 bits of its SHA-256, in hex (the whole file's SHA256
	// is checked too, once rebuilt).
	Chunks []string `json:"chunks,omitempty"`
	// Ref (incremental backups): the file is the base's, not in this
	// backup. Delta: this backup holds Name+".delta", the chunks that
	// differ from the base's (DeltaSuffix).
	Ref   bool `json:"ref,omitempty"`
	Delta bool `json:"delta,omitempty"`
}

// Incremental reports whether the backup builds on another.
func (m *Manifest) Incremental() bool { return m.Base != "" }

// Full returns the manifest as a full backup's: every file as it is, none
// a reference or a delta. It is what the next incremental backup is
// taken against.
func (m *Manifest) Full() *Manifest {
	f := *m
	f.Files = make([]File, len(m.Files))
	for i, x := range m.Files {
		x.Ref, x.Delta = false, false
		f.Files[i] = x
	}
	return &f
}

// Bytes returns the total size of the files.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Writer writes a backup.
type Writer struct {
	gz   *gzip.Writer
	tw   *tar.Writer
	m    Manifest
	seen map[string]bool
	base map[string]File // SetBase
}

// NewWriter starts a backup of the server hostname (running version) on w.
func NewWriter(w io.Writer, hostname, version string) *Writer {
	gz := gzip.NewWriter(w)
	return &Writer{gz: gz, tw: tar.NewWriter(gz), seen: map[string]bool{},
		m: Manifest{Format: Format, FormatVersion: 1, Created: time.Now().UTC(),
			Hostname: hostname, ServerVersion: version}}
}

// Add writes the file name (slash-separated, relative to the data
// directory) of size bytes read from r.
func (w *Writer) Add(name string, size int64, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	if name == ManifestName || w.seen[name] {
		return fmt.Errorf("backup: %q added twice", name)
	}
	w.seen[name] = true
	if isIndex(name) {
		return w.addIndex(name, size, r)
	}
	if b, ok := w.base[name]; ok && immutable(name) && b.Size == size {
		w.m.Files = append(w.m.Files, File{Name: name, Size: size, SHA256: b.SHA256, Ref: true})
		return nil
	}
	return w.addContent(name, size, r)
}

// addContent writes r as the archive's entry name.
func (w *Writer) addContent(name string, size int64, r io.Reader) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600, ModTime: w.m.Created, Format: tar.FormatPAX}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	h := sha256.New()
	n, err := io.Copy(w.tw, io.TeeReader(io.LimitReader(r, size), h))
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, expected %d", n, size)
	}
	if err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	w.m.Files = append(w.m.Files, File{Name: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

// AddDir writes the regular files under root as prefix/...; a missing
// root is no error, and directories named skip are left out. Only for
// files that are not changed while the server runs, or changed by atomic
// renames (keys, certificates).
func (w *Writer) AddDir(ctx context.Context, root, prefix string, skip ...string) error {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return filepath.SkipDir
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() && p != root && slices.Contains(skip, d.Name()) {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // replaced meanwhile (a certificate renewal)
			}
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		return w.Add(prefix+"/"+filepath.ToSlash(rel), fi.Size(), f)
	})
	if err != nil {
		return fmt.Errorf("backup %s: %w", root, err)
	}
	return nil
}

// Close writes the manifest and ends the stream. Without Close the backup
// is incomplete and Restore refuses it.
func (w *Writer) Close() (*Manifest, error) {
	b, err := json.MarshalIndent(&w.m, "", " ")
	if err != nil {
		return nil, err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: ManifestName, Size: int64(len(b)), Mode: 0o600, ModTime: w.m.Created, Format: tar.FormatPAX}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("backup: manifest: %w", err)
	}
	if _, err := w.tw.Write(b); err != nil {
		return nil, fmt.Errorf("backup: manifest: %w", err)
	}
	if err := w.tw.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := w.gz.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return &w.m, nil
}

// checkName accepts clean relative slash-separated names under one of
// Parts.
func checkName(name string) error {
	if name == "" || path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." || strings.Contains(name, "\\") {
		return fmt.Errorf("backup: bad file name %q", name)
	}
	part, _, _ := strings.Cut(name, "/")
	for _, p := range Parts {
		if part == p && name != p {
			return nil
		}
	}
	return fmt.Errorf("backup: file %q is not in %s", name, strings.Join(Parts, ", "))
}

// Verify reads the whole backup from r and checks it against its manifest,
// writing nothing. The references and unchanged chunks of an incremental
// backup are not checked: VerifyAgainst does, given its base.
func Verify(ctx context.Context, r io.Reader) (*Manifest, error) { return read(ctx, r, "", nil) }

// VerifyAgainst is Verify for a backup taken against base (the full
// manifest of the backup it builds on, nil for a full backup).
func VerifyAgainst(ctx context.Context, r io.Reader, base *Manifest) (*Manifest, error) {
	m, err := read(ctx, r, "", base)
	if err == nil && base == nil && m.Incremental() {
		err = fmt.Errorf("read backup: incremental (built on %s) where a full backup was expected", m.Base)
	}
	return m, err
}

// Read unpacks the full backup from r into dir (which must not exist),
// checks it against its manifest and returns the manifest. On error dir
// may hold part of the backup.
func Read(ctx context.Context, r io.Reader, dir string) (*Manifest, error) {
	m, err := read(ctx, r, dir, nil)
	if err == nil && m.Incremental() {
		return nil, fmt.Errorf("read backup: it is incremental (built on %s): restore it with mailctl restore, which applies the backups it builds on", m.Base)
	}
	return m, err
}

// read unpacks (dir != "") or checks the backup from r. An incremental
// backup's references and unchanged chunks are checked against base when
// it is given.
func read(ctx context.Context, r io.Reader, dir string, base *Manifest) (*Manifest, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read backup: not a mailctl backup (gzip): %w", err)
	}
	if dir != "" {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, fmt.Errorf("read backup: %w", err)
		}
	}
	tr := tar.NewReader(gz)
	got := map[string]File{}
	deltas := map[string]map[int]string{}
	var m *Manifest
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read backup: %w (the backup is damaged or was cut short)", err)
		}
		if m != nil {
			return nil, fmt.Errorf("read backup: %q after the manifest", hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("read backup: %q is not a regular file", hdr.Name)
		}
		if hdr.Name == ManifestName {
			m = new(Manifest)
			if err := json.NewDecoder(io.LimitReader(tr, 256<<20)).Decode(m); err != nil {
				return nil, fmt.Errorf("read backup: manifest: %w", err)
			}
			continue
		}
		if err := checkName(hdr.Name); err != nil {
			return nil, fmt.Errorf("read backup: %w", err)
		}
		if _, dup := got[hdr.Name]; dup {
			return nil, fmt.Errorf("read backup: %q twice", hdr.Name)
		}
		target := ""
		if dir != "" {
			target = filepath.Join(dir, filepath.FromSlash(hdr.Name))
		}
		if name, ok := strings.CutSuffix(hdr.Name, DeltaSuffix); ok && isIndex(name) {
			held, err := readDelta(tr, target)
			if err != nil {
				return nil, fmt.Errorf("read backup: %s: %w (the backup is damaged or was cut short)", hdr.Name, err)
			}
			deltas[name] = held
			continue
		}
		f, err := writeFile(target, tr)
		if err != nil {
			if damaged(err) {
				return nil, fmt.Errorf("read backup: %s: %w (the backup is damaged or was cut short)", hdr.Name, err)
			}
			return nil, fmt.Errorf("read backup: %s: %w", hdr.Name, err)
		}
		f.Name = hdr.Name
		got[hdr.Name] = f
	}
	// The gzip trailer (its CRC) is checked at EOF of the gzip stream.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return nil, fmt.Errorf("read backup: %w (the backup is damaged or was cut short)", err)
	}
	if m == nil {
		return nil, errors.New("read backup: no manifest: the backup is incomplete (cut short while it was taken?)")
	}
	if m.Format != Format {
		return nil, fmt.Errorf("read backup: not a mailctl backup (format %q)", m.Format)
	}
	if m.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("read backup: format version %d is newer than this mailctl's (%d): upgrade mailctl", m.FormatVersion, FormatVersion)
	}
	if (m.Base == "") != (m.FormatVersion < 2) {
		return nil, fmt.Errorf("read backup: format version %d with base %q", m.FormatVersion, m.Base)
	}
	usedDelta := map[string]bool{}
	for _, want := range m.Files {
		if (want.Ref || want.Delta) && !m.Incremental() {
			return nil, fmt.Errorf("read backup: %s refers to a base backup, but this one is full", want.Name)
		}
		if want.Ref {
			continue
		}
		if want.Delta {
			held, ok := deltas[want.Name]
			if !ok {
				return nil, fmt.Errorf("read backup: %s is in the manifest but not in the backup", want.Name+DeltaSuffix)
			}
			for i, sum := range held {
				if i >= len(want.Chunks) || want.Chunks[i] != sum {
					return nil, fmt.Errorf("read backup: %s: chunk %d differs from the manifest (damaged backup)", want.Name, i)
				}
			}
			usedDelta[want.Name] = true
			continue
		}
		f, ok := got[want.Name]
		if !ok {
			return nil, fmt.Errorf("read backup: %s is in the manifest but not in the backup", want.Name)
		}
		if f.Size != want.Size || f.SHA256 != want.SHA256 {
			return nil, fmt.Errorf("read backup: %s: checksum or size differs from the manifest (damaged backup)", want.Name)
		}
		delete(got, want.Name)
	}
	for name := range got {
		return nil, fmt.Errorf("read backup: %s is not in the manifest", name)
	}
	for name := range deltas {
		if usedDelta[name] {
			continue
		}
		return nil, fmt.Errorf("read backup: %s is not in the manifest", name+DeltaSuffix)
	}
	if base != nil {
		if err := checkAgainstBase(m, base, deltas); err != nil {
			return nil, fmt.Errorf("read backup: %w", err)
		}
	}
	return m, nil
}

// damaged reports whether err is one of a damaged or truncated stream.
func damaged(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) ||
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, tar.ErrHeader)
}

// writeFile writes r to p ("" to only hash it).
func writeFile(p string, r io.Reader) (File, error) {
	if p == "" {
		h := sha256.New()
		n, err := io.Copy(h, r)
		if err != nil {
			return File{}, err
		}
		return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return File{}, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return File{}, err
	}
	h := sha256.New()
	n, err := io.Copy(f, io.TeeReader(r, h))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, err
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Restore replaces the parts of dataDir that the backup from r holds with
// the backup's, after unpacking it beside them and checking it entirely.
// The server must be stopped. It refuses a data directory that holds mail
// (messages in the store or in the queue) unless force is set; a fresh
// server's (what apply starts: users without messages, new keys) is
// replaced.
func Restore(ctx context.Context, r io.Reader, dataDir string, force bool) (*Manifest, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	// Checked before and after reading: the first saves a long read, the
	// second counts.
	check := func() error {
		why, err := Occupied(ctx, dataDir)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if why != "" && !force {
			return fmt.Errorf("restore: %s holds %s; restoring would replace it (give -force to do so)", dataDir, why)
		}
		return nil
	}
	if err := check(); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(dataDir, ".restore-")
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(stage)
	m, err := Read(ctx, r, filepath.Join(stage, "new"))
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := check(); err != nil {
		return nil, err
	}
	// Everything unpacked reaches the disk before anything is replaced.
	if err := syncFS(stage); err != nil {
		return nil, fmt.Errorf("restore: sync: %w", err)
	}
	old := filepath.Join(stage, "old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	var parts []string
	for _, p := range Parts {
		if _, err := os.Stat(filepath.Join(stage, "new", p)); err == nil {
			parts = append(parts, p)
		}
	}
	sort.Strings(parts)
	for _, p := range parts {
		cur := filepath.Join(dataDir, p)
		if err := os.Rename(cur, filepath.Join(old, p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("restore: set aside %s: %w", cur, err)
		}
		if err := os.Rename(filepath.Join(stage, "new", p), cur); err != nil {
			return nil, fmt.Errorf("restore: put %s in place: %w", cur, err)
		}
	}
	if err := syncFS(dataDir); err != nil {
		return nil, fmt.Errorf("restore: sync: %w", err)
	}
	return m, nil
}

// syncFS flushes the file system that holds dir: one call for the
// thousands of files a restore writes.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// Occupied reports what mail dataDir holds ("" when none): messages in
// the store, messages in the outbound queue. It opens the store, so it
// fails while a server runs on dataDir.
func Occupied(ctx context.Context, dataDir string) (string, error) {
	var what []string
	if _, err := os.Stat(filepath.Join(dataDir, "store", "index.db")); err == nil {
		st, err := store.Open(ctx, filepath.Join(dataDir, "store"), nil)
		if err != nil {
			return "", fmt.Errorf("%w (is the server still running? stop it first)", err)
		}
		defer st.Close()
		users, err := st.Users(ctx)
		if err != nil {
			return "", err
		}
		n := 0
		for _, u := range users {
			_, c, err := st.Usage(ctx, u)
			if err != nil {
				return "", err
			}
			n += c
		}
		if n > 0 {
			what = append(what, fmt.Sprintf("%d messages of %d users", n, len(users)))
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dataDir, "queue", "msg")); err == nil && len(ents) > 0 {
		what = append(what, fmt.Sprintf("%d queued messages", len(ents)))
	}
	return strings.Join(what, " and "), nil
}
