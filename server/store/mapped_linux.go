package store

import "golang.org/x/sys/unix"

func dontNeed(addr, length uintptr) {
	unix.Syscall(unix.SYS_MADVISE, addr, length, unix.MADV_DONTNEED)
}
