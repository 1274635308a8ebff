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
// Radicale's is; and as the process that seeds its store beforehand when
// DAVBENCH_SEED_STORE names one.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DAVBENCH_SEED_STORE"); dir != "" {
		n, _ := strconv.Atoi(os.Getenv("DAVBENCH_SEED"))
		if err := seedChild(dir, n); err != nil {
			fmt.Fprintln(os.Stderr, "davbench seeder:", err)
			os.Exit(1)
		}
		return
	}
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

// seedChild writes n events and n contacts into the user's default
// collections of a new store in dir (fsync off, one sync at the end),
// then exits: the store is written by a process other than the server's,
// as Radicale's files are written for it, and as an import or a migration
// to a server started afterwards would leave it.
func seedChild(dir string, n int) error {
	ctx := context.Background()
	st, err := dav.Open(ctx, filepath.Join(dir, dav.FileName))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, benchUser); err != nil {
		return err
	}
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
		return fmt.Errorf("sync the seeded store: %w", err)
	}
	return st.Close()
}

// serveChild opens the store in dir (seeded by seedChild), serves it on a
// loopback port and prints "listening ADDR" on stdout; it serves until
// stdin closes.
func serveChild(dir string) error {
	ctx := context.Background()
	st, err := dav.Open(ctx, filepath.Join(dir, dav.FileName))
	if err != nil {
		return err
	}
	defer st.Close()
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
	fmt.Printf("listening %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
	return srv.Close()
}

// startMailctlProcess seeds a store with the benchmark's objects in a
// child process that then exits, and serves it with server/dav in
// another child process (this binary, see TestMain).
func startMailctlProcess(b *testing.B) *davServer {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	seed := exec.Command(exe)
	seed.Env = append(os.Environ(), "DAVBENCH_SEED_STORE="+dir, "DAVBENCH_SEED="+strconv.Itoa(objects()))
	seed.Stdout, seed.Stderr = os.Stderr, os.Stderr
	seed.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := seed.Run(); err != nil {
		b.Fatalf("davbench seeder: %v", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "DAVBENCH_SERVE="+dir)
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
	if err != nil || len(f) != 2 || f[0] != "listening" {
		b.Fatalf("davbench server: %q, %v", line, err)
	}
	col := dav.DefaultCollection
	pid := cmd.Process.Pid
	return &davServer{name: "mailctl", url: "http://" + f[1] + "/", user: benchUser, password: "bench-pw",
		cal: dav.HomePath(benchUser, dav.Calendars) + col + "/", book: dav.HomePath(benchUser, dav.AddressBooks) + col + "/",
		seed: func(*testing.B, string, string, int, func(int) string) {}, // seeded before it started
		rss:  func() (int64, int64) { return procRSS(pid) }, pid: pid}
}
