//go:build !race

package imap_test

const raceBuild = false
