//go:build race

package daemon

// raceBuild: the race detector keeps shadow memory for the heap it
// tracks, which returning freed heap to the OS does not release.
const raceBuild = true
