package pgstore

import "github.com/mailctl/mailctl/server/store"

// *Store is a store.Backend: server/imap runs on it unchanged.
var _ store.Backend = (*Store)(nil)
