package storecopy

import (
	"context"

	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

var (
	_ Source               = (*store.Store)(nil)
	_ Destination          = (*store.Store)(nil)
	_ SubscriptionImporter = (*store.Store)(nil)
	_ Destination          = (*pgstore.Store)(nil)
	_ SubscriptionImporter = (*pgstore.Store)(nil)
)

// PGSource reads a PostgreSQL store as a Source: *pgstore.Store, with the
// subscriptions to deleted mailboxes read when it has GoneSubscriptions
// (none reported before), so that this builds while pgstore's read API
// is being completed.
func PGSource(st *pgstore.Store) Source { return pgSource{st} }

type pgSource struct{ *pgstore.Store }

type goneSubscriptions interface {
	GoneSubscriptions(ctx context.Context, user string) ([]string, error)
}

func (p pgSource) GoneSubscriptions(ctx context.Context, user string) ([]string, error) {
	if g, ok := any(p.Store).(goneSubscriptions); ok {
		return g.GoneSubscriptions(ctx, user)
	}
	return nil, nil
}
