// Package procmem gives back to the kernel the memory that only the
// daemon's start-up needed.
//
// The one mailctl binary holds the provisioner (HCL, provider SDKs, SSH)
// beside the server. Package initialisation and the configuration load touch
// pages of code and read-only data all over the executable, and the kernel
// maps the 64 KiB around each of those faults: about 16 MiB of the idle
// server's resident memory were pages of the executable that it never uses
// again. Once the server is listening, ReleaseStartup unmaps the
// executable's read-only pages (they stay in the page cache; those the
// server needs are mapped back at their next access) and returns the
// start-up garbage of the heap.
package procmem

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Mapping is one mapping of the executable in /proc/self/smaps.
type Mapping struct {
	Start, End uintptr
	Perms      string
	// Rss and Anonymous are in bytes. A mapping with anonymous pages has
	// been written to (relocations, copy-on-write): it is never released.
	Rss, Anonymous int64
}

// Releasable reports whether m can be unmapped without losing anything: a
// private read-only mapping of the file whose pages are all the file's.
func (m Mapping) Releasable() bool {
	return len(m.Perms) == 4 && m.Perms[0] == 'r' && m.Perms[1] == '-' && m.Perms[3] == 'p' && m.Anonymous == 0
}

// ExecutableMappings reads the mappings of the running executable from
// /proc/self/smaps.
func ExecutableMappings() ([]Mapping, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("reading the executable's path: %w", err)
	}
	return Mappings(exe)
}

// Mappings reads the mappings of the file at path (as the kernel names
// it) from /proc/self/smaps.
func Mappings(path string) ([]Mapping, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("reading the process's mappings: %w", err)
	}
	return parseSmaps(data, path)
}

func parseSmaps(data []byte, exe string) ([]Mapping, error) {
	var out []Mapping
	var cur *Mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if r := fields[0]; strings.IndexByte(r, '-') > 0 && !strings.HasSuffix(r, ":") {
			// Header: start-end perms offset dev inode [path]
			cur = nil
			if len(fields) < 6 {
				continue
			}
			path := strings.Join(fields[5:], " ")
			if path != exe {
				continue
			}
			lo, hi, _ := strings.Cut(r, "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("reading the process's mappings: bad range %q", r)
			}
			out = append(out, Mapping{Start: uintptr(start), End: uintptr(end), Perms: fields[1]})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil || len(fields) < 2 {
			continue
		}
		var dst *int64
		switch fields[0] {
		case "Rss:":
			dst = &cur.Rss
		case "Anonymous:":
			dst = &cur.Anonymous
		default:
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("reading the process's mappings: %q: %w", line, err)
		}
		*dst = kb * 1024
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the process's mappings: %w", err)
	}
	return out, nil
}

// ReleaseStartup unmaps the executable's read-only pages and returns the
// free heap to the kernel. It returns how many bytes of the executable were
// resident before. Call it once the start-up is over; it is safe to call at
// any time (the code that runs maps its pages back).
func ReleaseStartup() (int64, error) {
	// The collection first: it walks type and stack data (in the
	// executable's read-only pages) that would be mapped back at once.
	debug.FreeOSMemory()
	maps, err := ExecutableMappings()
	if err != nil {
		return 0, err
	}
	var released int64
	for _, m := range maps {
		if !m.Releasable() {
			continue
		}
		if err := DontNeed(m.Start, m.End-m.Start); err != nil {
			return released, fmt.Errorf("releasing %x-%x: %w", m.Start, m.End, err)
		}
		released += m.Rss
	}
	return released, nil
}
