package imap

// SetRawFetch turns on or off the FETCH responses made without the
// library (fetchline.go).
func SetRawFetch(on bool) { rawFetch.Store(on) }
