package storecopy

import (
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

var (
	_ Source               = (*store.Store)(nil)
	_ Destination          = (*store.Store)(nil)
	_ SubscriptionImporter = (*store.Store)(nil)
	_ Destination          = (*pgstore.Store)(nil)
)
