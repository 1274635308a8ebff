package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
)

// storeNode writes what apply puts on a node of a PostgreSQL store: a
// server.json naming the URL file, and the URL file (mode).
func storeNode(t *testing.T, url string, mode int) string {
	t.Helper()
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "postgres-url")
	writeFile(t, urlFile, url+"\n", 0o600)
	if err := os.Chmod(urlFile, os.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "server.json")
	writeFile(t, cfg, fmt.Sprintf(`{"format_version": "1", "hostname": "a.example.org", "store": {"postgres_url_file": %q, "node": "a"}}`, urlFile), 0o600)
	return cfg
}

// TestStoreMigrate: `mailctl store migrate` creates the schema of an
// empty database, a second run changes nothing, `store version` reads it
// without changing it, and a database at a newer schema than this binary
// is refused with one line naming both versions.
func TestStoreMigrate(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	cfg := storeNode(t, url, 0o600)
	bin := pgstore.SchemaVersion()

	version := func() storeSchema {
		t.Helper()
		e, out, errb := testEnv(t.TempDir())
		if code := runCLI(t, e, "store", "version", "-json", "-config", cfg); code != 0 {
			t.Fatalf("store version = %d: %s", code, errb)
		}
		var v storeSchema
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Fatalf("store version -json: %v: %q", err, out)
		}
		return v
	}
	if v := version(); v != (storeSchema{Database: 0, Binary: bin}) {
		t.Fatalf("version of an empty database = %+v, want 0 and %d", v, bin)
	}

	e, out, errb := testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "migrate", "-config", cfg); code != 0 {
		t.Fatalf("store migrate = %d: %s", code, errb)
	}
	if want := fmt.Sprintf("store schema 0 -> %d\n", bin); out.String() != want {
		t.Errorf("store migrate printed %q, want %q", out, want)
	}
	if v := version(); v.Database != bin {
		t.Errorf("version after migrate = %+v, want %d", v, bin)
	}
	e, out, errb = testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "migrate", "-config", cfg); code != 0 {
		t.Fatalf("second store migrate = %d: %s", code, errb)
	}
	if want := fmt.Sprintf("store schema %d: up to date\n", bin); out.String() != want {
		t.Errorf("second store migrate printed %q, want %q", out, want)
	}

	// A newer mailctl migrated the database: this one must not touch it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, 'future.sql')", bin+1); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	e, _, errb = testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "migrate", "-config", cfg); code != 1 {
		t.Fatalf("store migrate of a newer schema = %d, want 1", code)
	}
	msg := errb.String()
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, fmt.Sprintf("the database is at schema %d, this mailctl knows up to %d", bin+1, bin)) {
		t.Errorf("error = %q, want one line naming schema %d and %d", msg, bin+1, bin)
	}
}

// TestStoreURLFile: the URL file must be private, and a server.json
// without a store is told apart; no error prints the URL.
func TestStoreURLFile(t *testing.T) {
	t.Parallel()
	const url = "postgres://mailctl:hunter2-secret@127.0.0.1:1/mail"
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"readable by others", storeNode(t, url, 0o644), "is open to group or others (mode 0644)"},
		{"no store", func() string {
			p := filepath.Join(t.TempDir(), "server.json")
			writeFile(t, p, `{"hostname": "a.example.org"}`, 0o600)
			return p
		}(), "has no PostgreSQL store"},
		{"unreachable", storeNode(t, url, 0o600), "connect to the store"},
	} {
		e, _, errb := testEnv(t.TempDir())
		if code := runCLI(t, e, "store", "version", "-timeout", "5s", "-config", tc.cfg); code != 1 {
			t.Errorf("%s: exit %d, want 1", tc.name, code)
		}
		if msg := errb.String(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "hunter2") || strings.Count(msg, "\n") != 1 {
			t.Errorf("%s: error %q, want one line with %q and no password", tc.name, msg, tc.want)
		}
	}
}
