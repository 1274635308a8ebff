package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// openStore opens the mail store cfg names: the embedded store in
// <data_dir>/store (the default), or the PostgreSQL database of
// store.postgres_url_file that several nodes share. For the latter it
// also returns a connection pool on that database for what the nodes
// share besides mail (the outbound queue, the greylist, the login
// failure counters); the caller closes it after the store. Calendars and
// contacts stay in the data directory either way (dav.go).
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Backend, *pgxpool.Pool, error) {
	if cfg.Store == nil || cfg.Store.PostgresURLFile == "" {
		st, err := store.Open(ctx, filepath.Join(cfg.DataDir, "store"), log)
		if err != nil {
			return nil, nil, err
		}
		return st, nil, nil
	}
	url, err := readPostgresURL(cfg.Store.PostgresURLFile)
	if err != nil {
		return nil, nil, err
	}
	// pgstore's errors never hold the URL (its password); a schema too old
	// or too new is one line saying both versions.
	st, err := pgstore.Open(ctx, url, log)
	if err != nil {
		return nil, nil, fmt.Errorf("open the PostgreSQL store: %w", err)
	}
	// pgxpool.New only parses (its errors name the setting, not the
	// password); the store's Open has just connected with the same URL.
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("connect to the PostgreSQL store: %w", err)
	}
	log.Info("mail store on PostgreSQL", "node", cfg.NodeName(), "schema", pgstore.SchemaVersion())
	return st, pool, nil
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

// shareGreylist replaces the greylist of the data directory that
// inbound.OptionsFromConfig opened (local, nil when greylisting is off)
// by the one in the PostgreSQL database on a node of a shared store, so
// that a sender deferred by one node is accepted by another once the
// delay is over.
func (d *daemon) shareGreylist(ctx context.Context, cfg *config.Config, local *inbound.Greylist) (*inbound.Greylist, error) {
	if local == nil || d.pool == nil {
		return local, nil
	}
	local.Close()
	return inbound.OpenGreylistPostgres(ctx, d.pool, inbound.GreylistOptions{Delay: time.Duration(cfg.WithDefaults().Inbound.GreylistDelay)})
}
