//go:build race

package dav_test

// raceBuild: the race detector adds its own allocations and slows the
// answer down, so heap bounds are not checked under it.
const raceBuild = true
