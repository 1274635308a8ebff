package imap

// SetRawFetch turns on or off the FETCH responses made without the
// library (fetchline.go).
func SetRawFetch(on bool) { rawFetch.Store(on) }

// The sizes of the batches of bodies a FETCH reads ahead (prefetch.go).
const (
	PrefetchBodies = prefetchBodies
	PrefetchBytes  = prefetchBytes
)
