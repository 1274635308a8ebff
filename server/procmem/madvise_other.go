//go:build !linux

package procmem

import "errors"

func dontNeed(addr, length uintptr) error {
	return errors.New("not supported on this system")
}
