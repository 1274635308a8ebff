package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/mailctl/mailctl/server/backup"
)

// backupMu keeps backups from overlapping: each would double the work,
// and queue snapshots remove the temporary files an interrupted one left.
var backupMu sync.Mutex

// backup writes a backup of the running server to w (server/backup): the
// store, the queue and the calendars (server/dav) as snapshots taken
// while mail keeps flowing, the DKIM keys, the self-signed certificate and the ACME data as files.
//
// With base (the full manifest of the backup named baseName), the backup
// is incremental against it (backup.Writer.SetBase).
func (d *daemon) backup(ctx context.Context, w io.Writer, baseName string, base *backup.Manifest) (*backup.Manifest, error) {
	snap, ok := d.st.(storeSnapshotter)
	if !ok {
		return nil, errBackupPostgres
	}
	backupMu.Lock()
	defer backupMu.Unlock()
	d.mu.Lock()
	cfg := d.cfg
	dataDir := d.boot.DataDir // a restart setting: the one in use
	d.mu.Unlock()
	bw := backup.NewWriter(w, cfg.Hostname, d.opts.Version)
	if base != nil {
		bw.SetBase(baseName, base)
	}
	under := func(prefix string) func(string, int64, io.Reader) error {
		return func(name string, size int64, r io.Reader) error {
			return bw.Add(prefix+"/"+name, size, r)
		}
	}
	if err := snap.Snapshot(ctx, under("store")); err != nil {
		return nil, err
	}
	if err := d.queue.Snapshot(ctx, under("queue")); err != nil {
		return nil, err
	}
	davSnap, ok := d.dav.(storeSnapshotter)
	if !ok { // davpg: in the PostgreSQL database, refused above already
		return nil, errBackupPostgres
	}
	if err := davSnap.Snapshot(ctx, under(davDir)); err != nil {
		return nil, err
	}
	for _, dir := range []string{"dkim", "tls", "acme"} {
		// certmagic's lock files only matter to the process holding them.
		if err := bw.AddDir(ctx, filepath.Join(dataDir, dir), dir, "locks"); err != nil {
			return nil, err
		}
	}
	m, err := bw.Close()
	if err != nil {
		return nil, err
	}
	d.log.InfoContext(ctx, "backup written", "files", len(m.Files), "bytes", m.Bytes())
	return m, nil
}

// backupFunc writes a backup (daemon.backup).
type backupFunc func(ctx context.Context, w io.Writer, baseName string, base *backup.Manifest) (*backup.Manifest, error)

// BackupBase is the body of POST /backup: the backup an incremental one
// is taken against.
type BackupBase struct {
	// Name is the base backup's file name, recorded in the new manifest.
	Name string `json:"name"`
	// Manifest is the base's full manifest (backup.Manifest.Full).
	Manifest *backup.Manifest `json:"manifest"`
}

// handleBackup adds GET /backup (full) and POST /backup (incremental
// against the BackupBase in the body) to the control socket: the backup
// as a gzip-compressed tar stream. An error after the stream began aborts
// the connection, so the client sees a cut stream (and the backup has no
// manifest), never a short backup taken for a whole one.
func handleBackup(mux *http.ServeMux, run backupFunc) {
	mux.HandleFunc("/backup", func(w http.ResponseWriter, r *http.Request) {
		var base BackupBase
		switch r.Method {
		case "GET":
		case "POST":
			if err := json.NewDecoder(io.LimitReader(r.Body, 512<<20)).Decode(&base); err != nil || base.Manifest == nil || base.Name == "" {
				http.Error(w, fmt.Sprintf("backup base: not a backup description (%v)", err), http.StatusBadRequest)
				return
			}
		default:
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		cw := &countWriter{w: w}
		if _, err := run(r.Context(), cw, base.Name, base.Manifest); err != nil {
			if cw.n == 0 {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			panic(http.ErrAbortHandler)
		}
	})
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Backup asks the server behind the control socket at path for a backup
// and copies it to w: incremental against base when it is not nil.
func Backup(ctx context.Context, path string, w io.Writer, base *BackupBase) (int64, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://mailctl/backup", nil)
	if base != nil {
		b, jerr := json.Marshal(base)
		if jerr != nil {
			return 0, jerr
		}
		req, err = http.NewRequestWithContext(ctx, "POST", "http://mailctl/backup", bytes.NewReader(b))
	}
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return 0, fmt.Errorf("query control socket %q: %w", path, err)
		}
		return 0, fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("server backup: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("server backup: cut after %d bytes: %w", n, err)
	}
	return n, nil
}
