package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/mailctl/mailctl/server/dav"
)

// exportModeDAV is the `serve export` flag that streams calendars and
// address books (a tar of calendars/NAME.ics and contacts/NAME.vcf)
// instead of mail.
const exportModeDAV = "-dav"

// exportDAV writes user's calendars and address books into dir:
// dir/calendars/NAME.ics and dir/contacts/NAME.vcf. It returns the number
// of files written.
func (t *transfer) exportDAV(ctx context.Context, user, dir string) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var err error
		if t.source != nil {
			err = t.source(ctx, user, exportModeDAV, pw)
		} else {
			err = t.pipe.Pipe(ctx, t.layout.ExportCommand(user, exportModeDAV), nil, pw)
		}
		pw.CloseWithError(io.ErrUnexpectedEOF)
		done <- err
	}()
	n, rerr := untarDAV(pr, dir)
	if rerr != nil {
		cancel()
		pr.CloseWithError(rerr)
	}
	if perr := <-done; perr != nil {
		if t.source != nil {
			return n, fmt.Errorf("%s: %w", t.server, perr)
		}
		return n, fmt.Errorf("server.%s: %w", t.server, perr)
	}
	return n, rerr
}

// untarDAV unpacks the export tar into dir, accepting only the names the
// server writes (calendars/NAME.ics, contacts/NAME.vcf).
func untarDAV(r io.Reader, dir string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read the calendar export: %w", err)
		}
		sub, base := path.Split(h.Name)
		ok := h.Typeflag == tar.TypeReg && base != "" && !strings.HasPrefix(base, ".") &&
			(sub == string(dav.Calendars)+"/" && strings.HasSuffix(base, ".ics") || sub == string(dav.AddressBooks)+"/" && strings.HasSuffix(base, ".vcf"))
		if !ok {
			return n, fmt.Errorf("the calendar export holds an unexpected entry %q", h.Name)
		}
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return n, err
		}
		f, err := os.OpenFile(filepath.Join(dir, sub, base), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return n, err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return n, fmt.Errorf("write %s: %w", f.Name(), err)
		}
		n++
	}
}

// backupDAVSource exports calendars from a backup unpacked in stage (for
// export -from-backup -format dav).
func backupDAVSource(ctx context.Context, stage, file, user string, w io.Writer) error {
	p := filepath.Join(stage, "files", "dav", dav.FileName)
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("the backup %s holds no calendars or contacts (taken before the server had them)", filepath.Base(file))
	}
	st, err := dav.Open(ctx, p)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := st.Users(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, u := range users {
		found = found || u == user
	}
	if !found {
		return fmt.Errorf("the backup %s has no calendars or contacts of %s", filepath.Base(file), user)
	}
	return st.ExportTar(ctx, user, w)
}
