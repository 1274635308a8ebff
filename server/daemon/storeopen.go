package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// openStore opens the mail store cfg names: the embedded store in
// <data_dir>/store (the default), or the PostgreSQL database of
// store.postgres_url_file that several nodes share. Calendars and
// contacts stay in the data directory either way (dav.go).
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Backend, error) {
	if cfg.Store == nil || cfg.Store.PostgresURLFile == "" {
		st, err := store.Open(ctx, filepath.Join(cfg.DataDir, "store"), log)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	url, err := readPostgresURL(cfg.Store.PostgresURLFile)
	if err != nil {
		return nil, err
	}
	// pgstore's errors never hold the URL (its password); a schema too old
	// or too new is one line saying both versions.
	st, err := pgstore.Open(ctx, url, log)
	if err != nil {
		return nil, fmt.Errorf("open the PostgreSQL store: %w", err)
	}
	log.Info("mail store on PostgreSQL", "node", cfg.NodeName(), "schema", pgstore.SchemaVersion())
	return st, nil
}

// readPostgresURL reads the connection URL of the PostgreSQL store from
// path. The URL holds the database password: a file that the group or
// others may read or write is refused.
func readPostgresURL(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("store.postgres_url_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("store.postgres_url_file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("store.postgres_url_file %s is open to group or others (mode %04o): it holds the database password, chmod 600 it", path, perm)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("store.postgres_url_file %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", fmt.Errorf("store.postgres_url_file %s: %w", path, err)
	}
	url := strings.TrimSpace(string(b))
	switch {
	case url == "":
		return "", fmt.Errorf("store.postgres_url_file %s is empty: it must hold the database's connection URL", path)
	case strings.ContainsAny(url, "\r\n"):
		return "", fmt.Errorf("store.postgres_url_file %s holds more than one line: it must hold the connection URL alone", path)
	}
	return url, nil
}
