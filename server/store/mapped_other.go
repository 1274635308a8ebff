//go:build !linux

package store

func dontNeed(addr, length uintptr) {}
