package procmem

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// FileResident returns the bytes of file-backed (and shared) memory
// resident in the process: the third field of /proc/self/statm, which the
// kernel keeps as a counter (no walk of the page tables).
func FileResident() (int64, error) { return statmField(2) }

// statmField returns field i (from 0) of /proc/self/statm, in bytes.
func statmField(i int) (int64, error) {
	fd, err := unix.Open("/proc/self/statm", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open /proc/self/statm: %w", err)
	}
	defer unix.Close(fd)
	var buf [128]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/statm: %w", err)
	}
	f := bytes.Fields(buf[:n])
	if len(f) <= i {
		return 0, fmt.Errorf("read /proc/self/statm: %q", buf[:n])
	}
	pages, err := strconv.ParseInt(string(f[i]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// Resident returns the bytes of memory resident in the process (anonymous
// and file-backed): the second field of /proc/self/statm.
func Resident() (int64, error) { return statmField(1) }
