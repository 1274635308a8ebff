package atomicfile_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/internal/atomicfile"
)

// TestHelperWriteFile is not a test: TestSyscallOrder runs it under strace.
func TestHelperWriteFile(t *testing.T) {
	path := os.Getenv("ATOMICFILE_HELPER_PATH")
	if path == "" {
		t.Skip("helper of TestSyscallOrder")
	}
	if err := atomicfile.WriteFile(path, []byte("durable"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSyscallOrder checks the durability policy, which no test can see
// without a crash, in the system calls: the temporary file is fsynced
// before it is renamed over the path, and the directory after.
func TestSyscallOrder(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "target")
	log := filepath.Join(t.TempDir(), "strace.log")
	cmd := exec.Command(strace, "-f", "-qq", "-o", log, "-e", "trace=openat,fsync,rename,renameat,renameat2",
		os.Args[0], "-test.run=^TestHelperWriteFile$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ATOMICFILE_HELPER_PATH="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here: %v\n%s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// fd of each opened name, then the events in order.
	openRE := regexp.MustCompile(`openat\([^,]+, "([^"]+)".*\) = (\d+)$`)
	fsyncRE := regexp.MustCompile(`fsync\((\d+)\)\s+= 0$`)
	renameRE := regexp.MustCompile(`rename(?:at2?)?\((?:[^,]+, )?"([^"]+)", (?:[^,]+, )?"([^"]+)"`)
	names := map[string]string{} // fd -> name (last opened)
	var events []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if m := openRE.FindStringSubmatch(line); m != nil {
			names[m[2]] = m[1]
		} else if m := fsyncRE.FindStringSubmatch(line); m != nil {
			events = append(events, "fsync "+names[m[1]])
		} else if m := renameRE.FindStringSubmatch(line); m != nil && m[2] == path {
			events = append(events, "rename "+m[1])
		}
	}
	var tmp string
	renameAt, tmpSync, dirSync := -1, -1, -1
	for i, e := range events {
		if name, ok := strings.CutPrefix(e, "rename "); ok {
			tmp, renameAt = name, i
		}
	}
	for i, e := range events {
		switch {
		case tmp != "" && e == "fsync "+tmp && i < renameAt:
			tmpSync = i
		case e == "fsync "+dir && i > renameAt:
			dirSync = i
		}
	}
	if renameAt < 0 || tmpSync < 0 || dirSync < 0 {
		t.Errorf("want fsync of the temporary file, rename over %s, fsync of %s; the calls were:\n%s", path, dir, strings.Join(events, "\n"))
	}
}
