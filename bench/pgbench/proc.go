package pgbench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of the times in /proc/<pid>/stat: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// procStat is what this package reads from /proc/<pid>/stat.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64 // clock ticks
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after its last ')' are split by spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var st procStat
	var perr error
	num := func(k int) int64 {
		v, err := strconv.ParseInt(f[k-3], 10, 64)
		if err != nil && perr == nil {
			perr = fmt.Errorf("/proc/%d/stat field %d: %w", pid, k, err)
		}
		return v
	}
	st.ppid = int(num(4))
	st.utime, st.stime, st.cutime, st.cstime = num(14), num(15), num(16), num(17)
	return st, perr
}

// TreeCPU returns the CPU time (user + system) used so far by the process
// root, its live children, and its children that exited and were reaped
// (root's cutime/cstime): for a PostgreSQL postmaster, the whole cluster,
// including backends that have ended.
func TreeCPU(root int) (time.Duration, error) {
	st, err := readProcStat(root)
	if err != nil {
		return 0, fmt.Errorf("cpu of process %d: %w", root, err)
	}
	ticks := st.utime + st.stime + st.cutime + st.cstime
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("cpu of process %d: %w", root, err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		c, err := readProcStat(pid)
		if err != nil || c.ppid != root {
			continue // gone meanwhile, or not a child
		}
		ticks += c.utime + c.stime
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}

// SelfCPU returns the CPU time (user + system) used so far by this process.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
