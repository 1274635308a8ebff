package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL cluster (Debian package postgresql)
// started for one test: initdb in a temporary directory, trust
// authentication, listening on 127.0.0.1 only (no Unix socket), stopped
// and removed when the test ends.
type Postgres struct {
	// URL is the superuser's connection URL to the database "postgres".
	URL string
	// Addr is the server's "127.0.0.1:PORT".
	Addr string
	// Dir holds the cluster's data directory.
	Dir string
	// PID is the postmaster's process id.
	PID int

	dbs atomic.Int64

	bin, top string
	port     int
	cred     *syscall.Credential
	c        *child // the running postmaster
}

// postgresBin returns the directory of the newest installed server
// version's programs, /usr/lib/postgresql/<version>/bin.
func postgresBin() (string, error) {
	dirs, err := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if err != nil || len(dirs) == 0 {
		return "", fmt.Errorf("no /usr/lib/postgresql/*/bin/initdb (install the Debian package postgresql)")
	}
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[j]))))
		return vi > vj
	})
	return filepath.Dir(dirs[0]), nil
}

// postgresCredential returns the identity the cluster runs as: initdb and
// postgres refuse to run as root, so a root test process runs them as the
// user "nobody" (the CI runs as root); any other user runs them as itself.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// StartPostgres creates a cluster in a temporary directory, starts it on
// a free loopback port and waits (up to 60 s, logging every 2 s) until it
// accepts connections. A missing PostgreSQL binary fails the test: the CI
// installs the Debian package postgresql.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	cred, err := postgresCredential()
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	// Not t.TempDir: its parents are private to root, and the cluster may
	// run as nobody.
	top, err := os.MkdirTemp("", "mailctl-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	dir := filepath.Join(top, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		for _, d := range []string{top, dir} {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatalf("start postgres: %v", err)
			}
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", dir, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	initdb.Dir = top
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("start postgres: initdb: %v: %s", err, out)
	}
	var lastErr error
	for range 3 { // a port taken between the probe and the bind: try another
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		p, err := startPostgres(t, bin, top, dir, port, cred)
		if err == nil {
			return p
		}
		lastErr = err
	}
	t.Fatalf("start postgres: %v", lastErr)
	return nil
}

func startPostgres(t testing.TB, bin, top, dir string, port int, cred *syscall.Credential) (*Postgres, error) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	u := &url.URL{Scheme: "postgres", User: url.User("postgres"), Host: addr, Path: "/postgres", RawQuery: "sslmode=disable"}
	p := &Postgres{URL: u.String(), Addr: addr, Dir: dir, bin: bin, top: top, port: port, cred: cred}
	if err := p.run(t); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		// SIGINT is the fast shutdown: it ends the sessions still open.
		p.c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.c.exited:
		case <-time.After(10 * time.Second):
			p.c.cmd.Process.Kill()
			<-p.c.exited
		}
	})
	return p, nil
}

// run starts the postmaster and waits until it accepts connections.
func (p *Postgres) run(t testing.TB) error {
	var out syncBuffer
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.Dir,
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(p.port),
		"-c", "unix_socket_directories=", "-c", "max_connections=100",
		"-c", "logging_collector=off")
	cmd.Dir = p.top
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run postgres: %w", err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	start, lastLog := time.Now(), time.Now()
	err := c.waitReady(60*time.Second, func() bool {
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			t.Logf("postgres on %s: not accepting connections yet after %s", p.Addr, time.Since(start).Round(time.Second))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.URL)
		if err != nil {
			return false
		}
		conn.Close(ctx)
		return true
	})
	if err != nil {
		return fmt.Errorf("postgres on %s: %w: %s", p.Addr, err, out.String())
	}
	p.c, p.PID = c, cmd.Process.Pid
	return nil
}

// Crash stops the cluster with an immediate shutdown (SIGQUIT: no
// checkpoint, sessions cut, as a crash would leave it) and starts it
// again on the same address, which replays the WAL. Tests use it to show
// that what was acknowledged survives.
func (p *Postgres) Crash(t testing.TB) {
	t.Helper()
	p.c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.c.exited:
	case <-time.After(10 * time.Second):
		p.c.cmd.Process.Kill()
		<-p.c.exited
	}
	if err := p.run(t); err != nil {
		t.Fatalf("restart postgres after a crash: %v", err)
	}
}

// NewDatabase creates an empty database in the cluster and returns its
// connection URL. Each call gives a new database.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		t.Fatalf("postgres: connect: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("test%d", p.dbs.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("postgres: create database %s: %v", name, err)
	}
	u, _ := url.Parse(p.URL)
	u.Path = "/" + name
	return u.String()
}

// DatabaseTest is a test that runs on a database of its own
// (RunOnDatabases), given its connection URL.
type DatabaseTest struct {
	Name string
	Fn   func(t *testing.T, url string)
}

// RunOnDatabases runs each test as a subtest on a new database of the
// cluster.
func (p *Postgres) RunOnDatabases(t *testing.T, tests []DatabaseTest) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.Name, func(t *testing.T) { tc.Fn(t, p.NewDatabase(t)) })
	}
}
