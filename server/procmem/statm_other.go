//go:build !linux

package procmem

import "errors"

// FileResident is not supported here.
func FileResident() (int64, error) {
	return 0, errors.New("not supported on this system")
}

// Resident is not supported here.
func Resident() (int64, error) {
	return 0, errors.New("not supported on this system")
}
