//go:build !race

package dav_test

const raceBuild = false
