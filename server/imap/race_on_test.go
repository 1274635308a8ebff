//go:build race

package imap_test

// raceBuild: the race detector allocates for every access it tracks, so
// allocation bounds do not hold under it.
const raceBuild = true
