package procmem

import (
	"fmt"
	"regexp"
	"runtime"
	"testing"
)

const sample = `00400000-00eba000 r-xp 00000000 fe:00 1234                               /opt/mailctl/current/mailctl
Size:              11000 kB
Rss:                8424 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00eba000-019c7000 r--p 00aba000 fe:00 1234                               /opt/mailctl/current/mailctl
Rss:                7908 kB
Anonymous:            12 kB
019c7000-01a6e000 rw-p 015c7000 fe:00 1234                               /opt/mailctl/current/mailctl
Rss:                 528 kB
Anonymous:           100 kB
7ff5ff9e9000-7ff5ffb3f000 r-xp 00028000 fe:00 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 920 kB
Anonymous:             0 kB
7ff5ffb40000-7ff5ffb50000 rw-p 00000000 00:00 0 
Rss:                  64 kB
Anonymous:            64 kB
`

func TestParseSmaps(t *testing.T) {
	maps, err := parseSmaps([]byte(sample), "/opt/mailctl/current/mailctl")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(maps)
	want := "[{4194304 15441920 r-xp 8626176 0} {15441920 27029504 r--p 8097792 12288} {27029504 27713536 rw-p 540672 102400}]"
	if got != want {
		t.Fatalf("parsed\n %s\nwant\n %s", got, want)
	}
	// Code is released; read-only data written by relocations and the
	// writable data never are.
	for i, want := range []bool{true, false, false} {
		if maps[i].Releasable() != want {
			t.Errorf("%s releasable = %v, want %v", maps[i].Perms, !want, want)
		}
	}
}

// written is in the executable's writable data: releasing must keep it.
var written = []string{"before"}

func residentExe(t *testing.T) (total int64) {
	t.Helper()
	maps, err := ExecutableMappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) < 2 {
		t.Fatalf("only %d mappings of the executable found", len(maps))
	}
	for _, m := range maps {
		total += m.Rss
	}
	return total
}

func TestReleaseStartupKeepsTheProcessWhole(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc (Linux)")
	}
	written[0] = "after start-up"
	before := residentExe(t)
	released, err := ReleaseStartup()
	if err != nil {
		t.Fatal(err)
	}
	after := residentExe(t)
	t.Logf("executable resident: %d KiB before, %d KiB after, %d KiB released", before>>10, after>>10, released>>10)
	if released <= 0 || after >= before {
		t.Fatalf("nothing released: %d KiB before, %d KiB after", before>>10, after>>10)
	}
	// Code and read-only data come back as they are used, writable data
	// was never dropped.
	if written[0] != "after start-up" {
		t.Fatalf("writable data lost: %q", written[0])
	}
	re := regexp.MustCompile(`^(\w+)@([a-z.]+)$`)
	if m := re.FindStringSubmatch("postmaster@example.org"); len(m) != 3 || m[2] != "example.org" {
		t.Fatalf("code after release: %q", m)
	}
	runtime.GC()
	if got := fmt.Sprintf("%x", []byte("ok")); got != "6f6b" {
		t.Fatalf("code after release: %q", got)
	}
}
