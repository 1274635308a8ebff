package davbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/dav"
)

// TestMain runs this test binary as the bundled server's CalDAV/CardDAV
// alone when DAVBENCH_SERVE names a directory (startMailctlProcess), so
// that its resident memory is measured apart from the client's, as
// Radicale's is.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DAVBENCH_SERVE"); dir != "" {
		if err := serveChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "davbench server:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

const benchUser = "bench@example.org"

// serveChild opens a store in dir, seeds DAVBENCH_SEED events and
// contacts into the user's default collections (fsync off), then serves
// on a loopback port and prints "listening ADDR RSS" (RSS before seeding,
// in bytes) on stdout; it serves until stdin closes.
func serveChild(dir string) error {
	ctx := context.Background()
	before, _ := procRSS(os.Getpid())
	st, err := dav.Open(ctx, filepath.Join(dir, dav.FileName))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, benchUser); err != nil {
		return err
	}
	n, _ := strconv.Atoi(os.Getenv("DAVBENCH_SEED"))
	st.DB().NoSync = true
	for i := range n {
		if _, _, err := st.PutObject(ctx, benchUser, dav.Calendars, dav.DefaultCollection, fmt.Sprintf("%d.ics", i), []byte(event(i)), dav.Conditions{}); err != nil {
			return err
		}
		if _, _, err := st.PutObject(ctx, benchUser, dav.AddressBooks, dav.DefaultCollection, fmt.Sprintf("%d.vcf", i), []byte(contact(i)), dav.Conditions{}); err != nil {
			return err
		}
	}
	st.DB().NoSync = false
	if err := st.DB().Sync(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h := dav.New(st, func(ctx context.Context, name, password string, remote net.Addr) (string, error) {
		if name == benchUser && password == "bench-pw" {
			return name, nil
		}
		return "", errors.New("invalid credentials")
	}, dav.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	go srv.Serve(ln)
	// The resident memory once seeded, before any request: what the
	// requests add is told apart from what seeding (10 000 PutObjects in
	// this process, which Radicale's process does not do) left.
	seeded, _ := procRSS(os.Getpid())
	anon, file := procRSSParts(os.Getpid())
	fmt.Printf("listening %s %d %d %d %d\n", ln.Addr(), before, seeded, anon, file)
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
	return srv.Close()
}

// startMailctlProcess runs server/dav in a child process (this binary,
// see TestMain) seeded with the benchmark's objects.
func startMailctlProcess(b *testing.B) *davServer {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "DAVBENCH_SERVE="+b.TempDir(), "DAVBENCH_SEED="+strconv.Itoa(objects()))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 6 || f[0] != "listening" {
		b.Fatalf("davbench server: %q, %v", line, err)
	}
	before, _ := strconv.ParseInt(f[2], 10, 64)
	var seeded [3]int64
	for i := range seeded {
		seeded[i], _ = strconv.ParseInt(f[3+i], 10, 64)
	}
	col := dav.DefaultCollection
	pid := cmd.Process.Pid
	return &davServer{name: "mailctl", url: "http://" + f[1] + "/", user: benchUser, password: "bench-pw",
		cal: dav.HomePath(benchUser, dav.Calendars) + col + "/", book: dav.HomePath(benchUser, dav.AddressBooks) + col + "/",
		seed:     func(*testing.B, string, string, int, func(int) string) {}, // seeded at start
		rss:      func() (int64, int64) { return procRSS(pid) },
		baseline: before, seeded: seeded, pid: pid}
}
