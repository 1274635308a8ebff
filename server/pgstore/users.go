package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// Users returns the users of the store, sorted byte-wise (whatever the
// database's collation), as server/store does.
func (s *Store) Users(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT name FROM users")
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	slices.Sort(users)
	return users, nil
}

// Quota returns the quota of user in bytes (0 = unlimited).
func (s *Store) Quota(ctx context.Context, user string) (int64, error) {
	var q int64
	err := s.pool.QueryRow(ctx, "SELECT quota FROM users WHERE name = $1", user).Scan(&q)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNoSuchUser
	}
	if err != nil {
		return 0, fmt.Errorf("read quota of %q: %w", user, err)
	}
	return q, nil
}

// Usage returns the bytes and number of messages stored for user.
func (s *Store) Usage(ctx context.Context, user string) (bytes int64, messages int, err error) {
	var n int64
	err = s.pool.QueryRow(ctx, "SELECT used, messages FROM users WHERE name = $1", user).Scan(&bytes, &n)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNoSuchUser
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read usage of %q: %w", user, err)
	}
	return bytes, int(n), nil
}
