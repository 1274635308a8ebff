package atomicfile_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailctl/mailctl/internal/atomicfile"
)

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	return out
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(path, []byte("new content"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new content" {
		t.Errorf("content = %q, %v", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, %v; want 0600", st.Mode(), err)
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Errorf("directory holds %q, want only server.json", got)
	}
}

// TestWriteFailureKeepsOld: a reader that fails half-way leaves the old
// content and no temporary file.
func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zone")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("half of the new"), iotest.ErrReader(boom))
	err := atomicfile.Write(context.Background(), path, r, 0o644)
	var pe *fs.PathError
	if !errors.Is(err, boom) || !errors.As(err, &pe) || pe.Path != path {
		t.Errorf("Write = %v, want the reader's error about %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("content after a failed write = %q, want the old one", b)
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Errorf("directory holds %q after a failed write, want only zone", got)
	}
}

// TestWriteCancelled: a cancelled context stops the write before the
// rename.
func TestWriteCancelled(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	ctx, cancel := context.WithCancel(context.Background())
	r := io.MultiReader(strings.NewReader("a"), readerFunc(func([]byte) (int, error) { cancel(); return 0, nil }), strings.NewReader("b"))
	if err := atomicfile.Write(ctx, path, r, 0o644); !errors.Is(err, context.Canceled) {
		t.Errorf("Write = %v, want context.Canceled", err)
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("directory holds %q after a cancelled write, want nothing", got)
	}
}

// TestMissingDirectory: the error names the path and the cause.
func TestMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no such dir", "plan")
	err := atomicfile.WriteFile(path, []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "create a temporary file for "+path+": no such file or directory" {
		t.Errorf("WriteFile = %v, want no such directory naming %s", err, path)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
