//go:build !linux

package procmem

import "errors"

// DontNeed is not supported here: nothing is dropped.
func DontNeed(addr, length uintptr) error {
	return errors.New("not supported on this system")
}
