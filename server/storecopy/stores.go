package storecopy

import (
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// Both stores are read and written by the copy.
var (
	_ Source               = (*store.Store)(nil)
	_ Destination          = (*store.Store)(nil)
	_ SubscriptionImporter = (*store.Store)(nil)
	_ Source               = (*pgstore.Store)(nil)
	_ Destination          = (*pgstore.Store)(nil)
	_ SubscriptionImporter = (*pgstore.Store)(nil)
)
