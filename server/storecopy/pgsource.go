package storecopy

import (
	"context"

	"github.com/mailctl/mailctl/server/pgstore"
)

// PGSource reads a PostgreSQL store as a Source. *pgstore.Store returns
// the store package's types; until it keeps subscriptions of deleted
// mailboxes, this bridge reports none.
func PGSource(st *pgstore.Store) Source { return pgSource{st} }

type pgSource struct{ *pgstore.Store }

// GoneSubscriptions: PostgreSQL keeps none yet.
func (pgSource) GoneSubscriptions(ctx context.Context, user string) ([]string, error) {
	return nil, nil
}
