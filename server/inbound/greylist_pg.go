package inbound

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// OpenGreylistPostgres returns a greylist kept in the table greylist of a
// PostgreSQL database (schema of server/pgstore, migrated beforehand),
// shared by every node that opens it: a sender deferred by one node is
// accepted by any other once the delay is over, and a triplet passed on
// one node is passed on all. Each check is one upsert, atomic per
// triplet, with the same rules and TTLs as the embedded greylist; times
// come from opts.Clock (the nodes' clocks must agree to within the delay's
// precision, as NTP gives).
func OpenGreylistPostgres(ctx context.Context, pool *pgxpool.Pool, opts GreylistOptions) (*Greylist, error) {
	var ok bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('greylist') IS NOT NULL").Scan(&ok); err != nil {
		return nil, fmt.Errorf("open greylist in PostgreSQL: %w", err)
	}
	if !ok {
		return nil, errors.New("open greylist in PostgreSQL: no table greylist (migrate the database first)")
	}
	return &Greylist{pg: pool, opts: opts.withDefaults()}, nil
}

// checkPG applies Check's rules in one statement. In the DO UPDATE
// branch, g.* are the row's values before the update:
//   - passed and used within PassedTTL: stays passed;
//   - pending and first seen within PendingTTL: passes once Delay is over;
//   - otherwise (expired): starts again as a new triplet.
func (g *Greylist) checkPG(ctx context.Context, now time.Time, key string) (bool, time.Duration, error) {
	const q = `INSERT INTO greylist AS g (triplet, first_seen, last_seen, passed) VALUES ($1, $2, $2, false)
	ON CONFLICT (triplet) DO UPDATE SET
		first_seen = CASE
			WHEN g.passed AND $2 - g.last_seen < $3 * interval '1 microsecond' THEN g.first_seen
			WHEN NOT g.passed AND $2 - g.first_seen < $4 * interval '1 microsecond' THEN g.first_seen
			ELSE $2 END,
		passed = CASE
			WHEN g.passed AND $2 - g.last_seen < $3 * interval '1 microsecond' THEN true
			WHEN NOT g.passed AND $2 - g.first_seen < $4 * interval '1 microsecond'
				THEN $2 - g.first_seen >= $5 * interval '1 microsecond'
			ELSE false END,
		last_seen = $2
	RETURNING first_seen, passed`
	var first time.Time
	var passed bool
	err := g.pg.QueryRow(ctx, q, key, now, g.opts.PassedTTL.Microseconds(), g.opts.PendingTTL.Microseconds(),
		g.opts.Delay.Microseconds()).Scan(&first, &passed)
	if err != nil {
		return false, 0, fmt.Errorf("greylist check: %w", err)
	}
	if passed {
		return true, 0, nil
	}
	return false, g.opts.Delay - now.Sub(first), nil
}

func (g *Greylist) expirePG(ctx context.Context, now time.Time) (int, error) {
	tag, err := g.pg.Exec(ctx, `DELETE FROM greylist WHERE
		(passed AND $1 - last_seen >= $2 * interval '1 microsecond') OR
		(NOT passed AND $1 - first_seen >= $3 * interval '1 microsecond')`,
		now, g.opts.PassedTTL.Microseconds(), g.opts.PendingTTL.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("expire greylist: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
