package backup_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/backup"
	"github.com/mailctl/mailctl/server/dav"
)

// TestRestoreRefusesDataDirWithCalendars: a data directory whose only
// data is calendars or contacts is not replaced by a restore without
// -force either.
func TestRestoreRefusesDataDirWithCalendars(t *testing.T) {
	ctx := context.Background()
	other := t.TempDir()
	st := openStore(t, filepath.Join(other, "store"))
	var empty bytes.Buffer
	snapshot(t, st, other, &empty, nil)
	st.Close()

	dir := t.TempDir()
	ds, err := dav.Open(ctx, filepath.Join(dir, "dav", dav.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.EnsureUser(ctx, "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	// While the calendar store is open (a server running): refused.
	if _, err := backup.Occupied(ctx, dir); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("Occupied while the calendar store is open: %v", err)
	}
	ds.Close()
	if why, err := backup.Occupied(ctx, dir); err != nil || why != "" {
		t.Fatalf("empty default collections: Occupied = %q, %v; want nothing", why, err)
	}
	if ds, err = dav.Open(ctx, filepath.Join(dir, "dav", dav.FileName)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ds.PutObject(ctx, "alice@example.test", dav.AddressBooks, dav.DefaultCollection, "c.vcf",
		[]byte("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c\r\nFN:C\r\nEND:VCARD\r\n"), dav.Conditions{}); err != nil {
		t.Fatal(err)
	}
	ds.Close()
	_, err = backup.Restore(ctx, bytes.NewReader(empty.Bytes()), dir, false)
	if err == nil || !strings.Contains(err.Error(), "1 calendar events and contacts") || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("restore over a contact without -force: %v", err)
	}
}
