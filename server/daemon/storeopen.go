package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// openStore opens the mail store cfg names: the embedded store in
// <data_dir>/store (the default), or the PostgreSQL database of
// store.postgres_url_file that several nodes share. For the latter it
// also returns a connection pool on that database for what the nodes
// share besides mail (the outbound queue, the greylist, the login
// failure counters, calendars and contacts: davctl.go); the caller closes
// it after the store.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Backend, *pgxpool.Pool, error) {
	if cfg.Store == nil || cfg.Store.PostgresURLFile == "" {
		st, err := store.Open(ctx, filepath.Join(cfg.DataDir, "store"), log)
		if err != nil {
			return nil, nil, err
		}
		return st, nil, nil
	}
	url, err := config.ReadPostgresURL(cfg.Store.PostgresURLFile)
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
