package procmem

import "golang.org/x/sys/unix"

// DontNeed drops the pages of [addr, addr+length) from the process's
// resident memory (MADV_DONTNEED). Only for shared or read-only file
// mappings, whose pages are read again from the file: private memory would
// be wiped.
func DontNeed(addr, length uintptr) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, length, unix.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}
