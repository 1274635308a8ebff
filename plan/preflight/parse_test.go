package preflight

import (
	"context"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/verify"
)

// outputs is a fake remote.Target that holds the output of each command.
type outputs map[string]string

func (o outputs) Run(_ context.Context, cmd string, _ io.Reader) ([]byte, error) {
	if out, ok := o[cmd]; ok {
		return []byte(out), nil
	}
	return nil, os.ErrNotExist
}
func (o outputs) WriteFile(context.Context, string, io.Reader, os.FileMode) error {
	return os.ErrPermission
}
func (o outputs) ReadFile(context.Context, string) ([]byte, error) { return nil, os.ErrNotExist }
func (o outputs) Close() error                                     { return nil }

func TestParseProcNetTCP(t *testing.T) {
	t.Parallel()
	// Lines as Linux prints them: 127.0.0.1:25 listening, 0.0.0.0:587
	// established (ignored), :::993 and ::1:143 listening on IPv6.
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000:024B 0F02000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:03E1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 5555 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:008F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6666 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0
`
	got := parseProcNetTCP([]byte(tcp + tcp6))
	want := []listener{
		{netip.MustParseAddr("127.0.0.1"), 25, "31337"},
		{netip.MustParseAddr("::"), 993, "5555"},
		{netip.MustParseAddr("::1"), 143, "6666"},
		{netip.MustParseAddr("127.0.0.1"), 443, "7777"},
	}
	if len(got) != len(want) {
		t.Fatalf("parseProcNetTCP = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("listener %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestMemoryThresholds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		availKB int64
		want    verify.Status
	}{
		{"1 GiB", 1 << 20, verify.Pass},
		{"256 MiB", 256 << 10, verify.Pass},
		{"200 MiB", 200 << 10, verify.Warn},
		{"128 MiB", 128 << 10, verify.Warn},
		{"100 MiB", 100 << 10, verify.Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meminfo := "MemTotal:        2014064 kB\nMemFree:          123456 kB\nMemAvailable:   " + strconv.FormatInt(tc.availKB, 10) + " kB\n"
			r := checkMemory(context.Background(), outputs{"cat /proc/meminfo": meminfo})
			if r.Status != tc.want {
				t.Errorf("checkMemory(%d kB available) = %v %q, want %v", tc.availKB, r.Status, r.Detail, tc.want)
			}
			if r.Status != verify.Pass && r.Fix == "" {
				t.Errorf("checkMemory(%d kB) has no fix", tc.availKB)
			}
		})
	}
	if r := checkMemory(context.Background(), outputs{"cat /proc/meminfo": "MemTotal: 1 kB\n"}); r.Status != verify.Fail {
		t.Errorf("checkMemory without MemAvailable = %v, want fail", r.Status)
	}
}

func TestDiskThresholds(t *testing.T) {
	t.Parallel()
	head := "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
	for _, tc := range []struct {
		name, df string
		want     verify.Status
		detail   string
		fs       int
	}{
		{"one filesystem", head + "/dev/vda1 20511312 3000000 16000000 16% /\n/dev/vda1 20511312 3000000 16000000 16% /\n", verify.Pass, "/ 15.3 GiB free", 1},
		{"small /var", head + "/dev/vda1 20511312 3000000 16000000 16% /\n/dev/vdb 2000000 300000 1500000 17% /var\n", verify.Warn, "/var 1.4 GiB free", 2},
		{"full /", head + "/dev/vda1 20511312 3000000 400000 99% /\n/dev/vdb 20000000 300000 15000000 2% /var\n", verify.Fail, "/ 390 MiB free", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := checkDisk(context.Background(), outputs{"df -Pk / /var": tc.df})
			if r.Status != tc.want || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("checkDisk = %v %q, want %v with %q", r.Status, r.Detail, tc.want, tc.detail)
			}
			if n := strings.Count(r.Detail, " free"); n != tc.fs {
				t.Errorf("checkDisk detail %q names %d filesystems, want %d", r.Detail, n, tc.fs)
			}
		})
	}
}

func TestOSRelease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id, version string
		want        bool
	}{
		{"debian", "12", true},
		{"debian", "13", true},
		{"debian", "11", false},
		{"ubuntu", "24.04", true},
		{"ubuntu", "22.04", true},
		{"ubuntu", "23.10", false},
		{"ubuntu", "20.04", false},
		{"centos", "9", false},
		{"debian", "", false},
	} {
		t.Run(tc.id+tc.version, func(t *testing.T) {
			if got := supportedOS(tc.id, tc.version); got != tc.want {
				t.Errorf("supportedOS(%q, %q) = %v, want %v", tc.id, tc.version, got, tc.want)
			}
		})
	}
	rel := parseOSRelease("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID='12'\n# comment\n")
	if rel["ID"] != "debian" || rel["VERSION_ID"] != "12" || rel["PRETTY_NAME"] != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("parseOSRelease = %v", rel)
	}
}

func TestStderrText(t *testing.T) {
	t.Parallel()
	got := stderrText("outbound25: connect: Connection refused\noutbound25: line 1: /dev/tcp/127.0.0.1/1: Connection refused\n")
	if want := "connect: Connection refused; /dev/tcp/127.0.0.1/1: Connection refused"; got != want {
		t.Errorf("stderrText = %q, want %q", got, want)
	}
}
