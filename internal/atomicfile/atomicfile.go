// Package atomicfile replaces files so that a crash leaves either the old
// or the new content at the path, never a mix, an empty file or nothing.
//
// Every writer of mailctl follows one policy: the data goes to a temporary
// file in the same directory (".<name>.tmp-*", so that the rename stays on
// one file system), which gets its mode before any data is written, is
// fsynced and closed, then renamed over the path; the directory is then
// fsynced so that the rename itself survives a crash. On a failure before
// the rename the temporary file is removed and the path is untouched.
//
// The outbound queue's message files (server/queue) and the DKIM keys
// (server/dkim, which must never replace a key another process wrote and
// so links instead of renaming) keep their own sequences.
package atomicfile

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces the file at path with data, with permissions perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Write replaces the file at path with what r yields, with permissions
// perm. It stops, leaving path untouched, when ctx ends before the data
// is synced.
func Write(ctx context.Context, path string, r io.Reader, perm fs.FileMode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return write(path, perm, func(f *os.File) error {
		_, err := io.Copy(f, ctxReader{ctx, r})
		if err == nil {
			err = ctx.Err()
		}
		return err
	})
}

// write runs the policy with fill writing the data. Errors are
// *fs.PathError naming the step and path.
func write(path string, perm fs.FileMode, fill func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return pathError("create a temporary file for", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm.Perm()); err != nil {
		return pathError("chmod", tmp, err)
	}
	if err := fill(f); err != nil {
		return pathError("write", path, err)
	}
	if err := f.Sync(); err != nil {
		return pathError("fsync", tmp, err)
	}
	if err := f.Close(); err != nil {
		return pathError("close", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return pathError("replace", path, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return pathError("fsync the directory of", path, err)
	}
	return nil
}

// syncDir fsyncs a directory; a file system that cannot (EINVAL) is
// accepted as is.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// pathError is an *fs.PathError for op on path whose Err is the
// underlying error without its own path.
func pathError(op, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
