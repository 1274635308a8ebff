package store

import "context"

// BodyBatcher is implemented by a Backend whose OpenBody costs a round
// trip to a server (pgstore): a command that reads many bodies (SEARCH
// BODY, TEXT) asks for them in batches instead, one round trip for many
// small bodies. The embedded store, whose OpenBody reads a local file or
// its index, does not implement it.
type BodyBatcher interface {
	// OpenBodies returns the bodies of msgs (messages returned by
	// Messages, MessagesByID or SetFlags), bodies[i] that of msgs[i], each
	// as OpenBody would return it. bodies[i] is nil when the message is
	// better opened by OpenBody: a body too large to be read whole, or one
	// gone (OpenBody then tells os.ErrNotExist). The caller closes the
	// bodies that are not nil. An error is a failure of the whole batch.
	OpenBodies(ctx context.Context, msgs []Message) (bodies []Body, err error)
}
