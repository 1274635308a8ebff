package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/store"
)

// onlyBackend hides every method of the embedded store that is not in
// store.Backend, as a PostgreSQL store has none of them.
type onlyBackend struct{ store.Backend }

// TestBackupRefusedWithoutSnapshot: `mailctl backup` of a node whose
// store cannot take a snapshot (PostgreSQL) gets one line telling what to
// do, not a cut or empty archive.
func TestBackupRefusedWithoutSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "store"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := &daemon{st: onlyBackend{st}, log: slog.New(slog.DiscardHandler)}

	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveControl(ln, func(context.Context) (*Status, error) { return &Status{}, nil }, nil, d.backup)
	t.Cleanup(func() { srv.Close() })

	var out bytes.Buffer
	n, err := Backup(ctx, path, &out, nil)
	if err == nil {
		t.Fatalf("backup of a store without snapshots succeeded (%d bytes)", n)
	}
	msg := err.Error()
	if !strings.Contains(msg, "the store is PostgreSQL: back it up with pg_dump (docs/operations.md)") || strings.Contains(msg, "\n") || out.Len() != 0 {
		t.Errorf("backup error = %q, %d bytes written; want the one-line pg_dump advice and nothing written", msg, out.Len())
	}
	if got := storeSize(d.st); got != 0 {
		t.Errorf("storeSize of a store without Size = %d, want 0", got)
	}
	if got := storeSize(st); got <= 0 {
		t.Errorf("storeSize of the embedded store = %d, want its bytes on disk", got)
	}
}
