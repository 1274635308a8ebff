package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/mailctl/mailctl/remote"
	"github.com/mailctl/mailctl/server/backup"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/store"
)

// openBackupTransfer is the transfer of export -from-backup: the backup
// file (and, when it is incremental, the backups it builds on, beside it)
// is unpacked into a temporary 0700 directory beside it, its store is
// opened there and the export stream is written from it by the same code
// as the server's (daemon.ExportStore). Closing the transfer closes the
// store and removes the directory; the backup files are only read.
func openBackupTransfer(ctx context.Context, e *env, file string, identities []age.Identity, user string) (tr *transfer, err error) {
	chain, err := backupChain(ctx, file, identities)
	if err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(file), ".export-stage-")
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", file, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(stage)
		}
	}()
	if len(chain) > 1 {
		fmt.Fprintf(e.Stderr, "export: applying %d backups, from %s on...\n", len(chain), filepath.Base(chain[0].file))
	}
	var full *backup.Manifest
	for _, c := range chain {
		f, _, err := openBackup(c.file, identities)
		if err != nil {
			return nil, err
		}
		full, err = backup.Apply(ctx, f, stage, full)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.file, err)
		}
	}
	dir := filepath.Join(stage, "files", "store")
	if _, err := os.Stat(filepath.Join(dir, "index.db")); err != nil {
		return nil, fmt.Errorf("%s holds no mail store", file)
	}
	st, err := store.Open(ctx, dir, nil)
	if err != nil {
		return nil, fmt.Errorf("open the store of %s: %w", file, err)
	}
	if _, err := st.Mailboxes(ctx, user); errors.Is(err, store.ErrNoSuchUser) {
		st.Close()
		return nil, fmt.Errorf("the backup %s (of %s, %s) has no user %s", file, full.Hostname, full.Created.Format("2006-01-02 15:04 MST"), user)
	} else if err != nil {
		st.Close()
		return nil, fmt.Errorf("read the store of %s: %w", file, err)
	}
	return &transfer{
		server: filepath.Base(file),
		close: func() {
			st.Close()
			os.RemoveAll(stage)
		},
		source: func(ctx context.Context, user, mode string, w io.Writer) error {
			if mode == exportModeDAV {
				return backupDAVSource(ctx, stage, file, user, w)
			}
			return daemon.ExportStore(ctx, st, daemon.ExportOptions{User: user,
				Digests: mode == remote.ExportDigests, MailboxesOnly: mode == remote.ExportMailboxes}, w)
		},
	}, nil
}
