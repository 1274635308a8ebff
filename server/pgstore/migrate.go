package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the key of the transaction-level advisory lock that
// serialises migrations run by several nodes at once.
const migrationLock = 0x6d61696c63746c // "mailctl"

// ErrSchemaTooNew is returned when the database's schema is newer than
// this binary knows: an older mailctl must not write to it.
var ErrSchemaTooNew = errors.New("pgstore: database schema is newer than this mailctl")

// ErrSchemaTooOld is returned by Open when the database needs migrations
// that have not been applied.
var ErrSchemaTooOld = errors.New("pgstore: database schema is older than this mailctl")

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the files NNNN_name.sql of fsys's directory
// "migrations", which must be numbered 1, 2, 3... without a gap.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary writes.
func SchemaVersion() int {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return len(ms)
}

// Migrate brings the schema of the database at url to SchemaVersion,
// applying each missing migration in a transaction of its own, and returns
// the versions before and after. Several nodes may call it at once: an
// advisory lock makes them take turns. It refuses (ErrSchemaTooNew) a
// database whose schema is newer than this binary.
func Migrate(ctx context.Context, url string) (from, to int, err error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return 0, 0, fmt.Errorf("pgstore: migrate: %w", err)
	}
	defer pool.Close()
	return migrate(ctx, pool, migrationFiles)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) (from, to int, err error) {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return 0, 0, fmt.Errorf("pgstore: migrate: %w", err)
	}
	from = -1
	for {
		done := false
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
				version    integer     PRIMARY KEY,
				name       text        NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				return err
			}
			cur, err := currentVersion(ctx, tx)
			if err != nil {
				return err
			}
			if from < 0 {
				from = cur
			}
			to = cur
			if cur > len(ms) {
				return tooNew(cur, len(ms))
			}
			if cur == len(ms) {
				done = true
				return nil
			}
			m := ms[cur]
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			to = m.version
			return nil
		})
		if err != nil {
			switch {
			case errors.Is(err, ErrSchemaTooNew):
				return from, to, err
			case from < 0: // the version was never read
				return 0, 0, fmt.Errorf("pgstore: migrate: %w", err)
			}
			return from, to, fmt.Errorf("pgstore: migrate: from schema %d: %w", to, err)
		}
		if done {
			return from, to, nil
		}
	}
}

func tooNew(cur, known int) error {
	return fmt.Errorf("%w: the database is at schema %d, this mailctl knows up to %d; upgrade mailctl", ErrSchemaTooNew, cur, known)
}

func currentVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v int
	err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&v)
	return v, err
}

// checkVersion refuses a database whose schema is not the binary's.
func checkVersion(ctx context.Context, pool *pgxpool.Pool) error {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("pgstore: read schema version: %w", err)
	}
	cur := 0
	if exists {
		var err error
		if cur, err = currentVersion(ctx, pool); err != nil {
			return fmt.Errorf("pgstore: read schema version: %w", err)
		}
	}
	known := SchemaVersion()
	switch {
	case cur > known:
		return tooNew(cur, known)
	case cur < known:
		return fmt.Errorf("%w: the database is at schema %d, this mailctl needs %d; migrate it first", ErrSchemaTooOld, cur, known)
	}
	return nil
}
