package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/queue"
)

// loopResolver sends every domain to an MX at 127.0.0.1.
type loopResolver struct{}

func (loopResolver) LookupMX(context.Context, string) ([]*net.MX, error) {
	return []*net.MX{{Host: "127.0.0.1.", Pref: 10}}, nil
}

func (loopResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
}

func (loopResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// countingPeer is a remote SMTP server that counts the messages it
// accepted (250 to DATA) by Subject, with the EHLO name of the sender.
// While hold is set, messages whose number is at least holdFrom wait in
// DATA until release is closed and are then refused (451: never
// accepted), or accepted when acceptHeld is set by then.
type countingPeer struct {
	mu         sync.Mutex
	got        map[string][]string    // subject -> EHLO names of accepted copies
	at         map[string][]time.Time // subject -> times accepted
	held       int
	hold       bool
	holdFrom   int
	acceptHeld bool
	release    chan struct{}
	port       int
}

var subjectRE = regexp.MustCompile(`(?m)^Subject: pg-(\d+)\r?$`)

func startCountingPeer(t testing.TB) *countingPeer {
	t.Helper()
	p := &countingPeer{got: map[string][]string{}, at: map[string][]time.Time{}, release: make(chan struct{})}
	srv := gosmtp.NewServer(p)
	srv.Domain = "mx.remote.test"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	go srv.Serve(ln)
	t.Cleanup(func() {
		p.mu.Lock()
		select {
		case <-p.release:
		default:
			close(p.release)
		}
		p.mu.Unlock()
		srv.Close()
	})
	return p
}

func (p *countingPeer) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &countingSession{p: p, ehlo: c.Hostname()}, nil
}

type countingSession struct {
	p    *countingPeer
	ehlo string
}

func (s *countingSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *countingSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s *countingSession) Reset()                                 {}
func (s *countingSession) Logout() error                          { return nil }

func (s *countingSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := subjectRE.FindSubmatch(b)
	if m == nil {
		return &gosmtp.SMTPError{Code: 554, Message: "no pg-N subject"}
	}
	n, _ := strconv.Atoi(string(m[1]))
	p := s.p
	p.mu.Lock()
	if p.hold && n >= p.holdFrom {
		p.held++
		release := p.release
		p.mu.Unlock()
		<-release
		p.mu.Lock()
		if !p.acceptHeld {
			p.mu.Unlock()
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "held, never accepted"}
		}
	}
	subj := "pg-" + string(m[1])
	p.got[subj] = append(p.got[subj], s.ehlo)
	p.at[subj] = append(p.at[subj], time.Now())
	p.mu.Unlock()
	return nil
}

// snapshot returns the number of distinct subjects accepted and held.
func (p *countingPeer) counts() (accepted, held int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got), p.held
}

// pgDatabase starts PostgreSQL (once per test), creates a database with
// the current schema and returns its URL and a pool.
func pgDatabase(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return url, pool
}

func pgQueueOptions(t testing.TB, pool *pgxpool.Pool, node string, port int, lease time.Duration) queue.Options {
	return queue.Options{
		Postgres: pool, Node: node, LeaseTime: lease,
		Hostname: node + ".test", Resolver: loopResolver{}, Port: port, DisableMTASTS: true,
		Workers: 32, MaxPerDestination: 32, PollInterval: 50 * time.Millisecond,
		DialTimeout: 2 * time.Second, CommandTimeout: 30 * time.Second,
		Logger: testLogger(t).With("node", node),
	}
}

func pgMessage(n int) string {
	return fmt.Sprintf("From: alice@a.test\r\nTo: bob@b.test\r\nSubject: pg-%d\r\nMessage-ID: <%d@a.test>\r\n\r\nmessage %d\r\n", n, n, n)
}

// runQueue runs q until the test ends.
func runQueue(t testing.TB, q *queue.Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		q.Close()
	})
}

// waitDelivered waits until the peer accepted want distinct messages and
// the shared queue is empty.
func waitDelivered(t testing.TB, p *countingPeer, q *queue.Queue, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, _ := p.counts()
		if got >= want && q.Len() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d of %d messages accepted, %d records left in the queue", timeout, got, want, q.Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPGTwoNodesExactlyOnce runs two nodes on one database: 200 messages
// enqueued on either (chosen by a seeded random draw) are each delivered
// exactly once, and both nodes take part.
func TestPGTwoNodesExactlyOnce(t *testing.T) {
	_, pool := pgDatabase(t)
	peer := startCountingPeer(t)
	ctx := context.Background()
	var nodes []*queue.Queue
	for _, name := range []string{"node-a", "node-b"} {
		q, err := queue.Open(ctx, pgQueueOptions(t, pool, name, peer.port, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		runQueue(t, q)
		nodes = append(nodes, q)
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	const total = 200
	for i := range total {
		q := nodes[rng.IntN(2)]
		if err := q.Enqueue(ctx, "alice@a.test", []string{fmt.Sprintf("bob%d@b.test", i)}, strings.NewReader(pgMessage(i))); err != nil {
			t.Fatalf("seed %d: enqueue %d: %v", seed, i, err)
		}
	}
	waitDelivered(t, peer, nodes[0], total, 60*time.Second)
	peer.mu.Lock()
	defer peer.mu.Unlock()
	by := map[string]int{}
	for i := range total {
		copies := peer.got[fmt.Sprintf("pg-%d", i)]
		for _, e := range copies {
			by[e]++
		}
		if len(copies) != 1 {
			t.Errorf("seed %d: message %d delivered %d times, want once", seed, i, len(copies))
		}
	}
	if by["node-a.test"] == 0 || by["node-b.test"] == 0 {
		t.Errorf("seed %d: deliveries per node %v, want both nodes to deliver", seed, by)
	}
	t.Logf("deliveries per node: %v", by)
	var bodies int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM queue_bodies").Scan(&bodies); err != nil || bodies != 0 {
		t.Errorf("queue_bodies holds %d rows (%v) after every delivery, want 0", bodies, err)
	}
}

// TestPGQueueChild is the node of TestPGNodeDiesLeaseTakenOver that dies:
// it delivers the shared queue until it is killed.
func TestPGQueueChild(t *testing.T) {
	url := os.Getenv("PGQ_CHILD_URL")
	if url == "" {
		t.Skip("only run as a child of TestPGNodeDiesLeaseTakenOver")
	}
	port, _ := strconv.Atoi(os.Getenv("PGQ_CHILD_PORT"))
	lease, _ := time.ParseDuration(os.Getenv("PGQ_CHILD_LEASE"))
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(ctx, pgQueueOptions(t, pool, "node-a", port, lease))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("PGQ_CHILD_INGEST") == "" {
		fmt.Println("RUNNING")
		q.Run(ctx)
		return
	}
	go q.Run(ctx)
	for i := 0; ; i++ {
		if err := q.Enqueue(ctx, "alice@a.test", []string{fmt.Sprintf("bob%d@b.test", i)}, strings.NewReader(pgMessage(i))); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ACK %d\n", i)
	}
}

// TestPGSIGKILLDuringIngest kills (SIGKILL) a node that enqueues and
// delivers at full speed; another node then delivers what it left. Every
// message whose Enqueue returned is accepted by the remote server, and
// only messages in flight at the kill (at most the node's workers) may be
// accepted twice.
func TestPGSIGKILLDuringIngest(t *testing.T) {
	url, pool := pgDatabase(t)
	peer := startCountingPeer(t)
	const lease = time.Second
	cmd := exec.Command(os.Args[0], "-test.run=^TestPGQueueChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PGQ_CHILD_URL="+url, fmt.Sprintf("PGQ_CHILD_PORT=%d", peer.port),
		"PGQ_CHILD_LEASE="+lease.String(), "PGQ_CHILD_INGEST=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(out)
	timeout := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked, _ = strconv.Atoi(n)
			if acked >= 150 {
				break
			}
		}
	}
	timeout.Stop()
	cmd.Process.Signal(syscall.SIGKILL)
	go io.Copy(io.Discard, out)
	cmd.Wait()
	if acked < 150 {
		t.Fatalf("child acknowledged %d messages before it stopped, want 150", acked+1)
	}
	accepted, _ := peer.counts()
	t.Logf("killed after %d acknowledged, %d accepted by the remote server", acked+1, accepted)
	b, err := queue.Open(context.Background(), pgQueueOptions(t, pool, "node-b", peer.port, lease))
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, b)
	waitDelivered(t, peer, b, acked+1, 30*time.Second)
	peer.mu.Lock()
	defer peer.mu.Unlock()
	twice := 0
	for i := 0; i <= acked; i++ {
		switch n := len(peer.got[fmt.Sprintf("pg-%d", i)]); {
		case n == 0:
			t.Errorf("acknowledged message %d never accepted", i)
		case n > 1:
			twice++
		}
	}
	t.Logf("%d messages accepted twice", twice)
	if twice > 32 {
		t.Errorf("%d messages accepted more than once, want at most the 32 the node could have in flight", twice)
	}
}

// TestPGNodeDiesLeaseTakenOver lets a node (a child process) claim 20
// messages, deliver and record 10 of them while the remote server holds
// the other 10 in DATA, and kills it with SIGKILL. A second node takes the
// 10 over once their leases expired, and sends none of the 10 recorded
// ones again: every message is accepted exactly once.
func TestPGNodeDiesLeaseTakenOver(t *testing.T) {
	url, pool := pgDatabase(t)
	peer := startCountingPeer(t)
	peer.hold, peer.holdFrom = true, 10
	ctx := context.Background()
	const lease = 3 * time.Second
	// Enqueued by a node that does not deliver.
	enq, err := queue.Open(ctx, pgQueueOptions(t, pool, "enqueuer", peer.port, lease))
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	const total = 20
	for i := range total {
		if err := enq.Enqueue(ctx, "alice@a.test", []string{fmt.Sprintf("bob%d@b.test", i)}, strings.NewReader(pgMessage(i))); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPGQueueChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PGQ_CHILD_URL="+url, fmt.Sprintf("PGQ_CHILD_PORT=%d", peer.port), "PGQ_CHILD_LEASE="+lease.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	go io.Copy(io.Discard, bufio.NewReader(out))
	// The child delivered and recorded 10, and holds the other 10.
	deadline := time.Now().Add(30 * time.Second)
	for {
		accepted, held := peer.counts()
		left := enq.Len()
		if accepted == 10 && held == 10 && left == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child node: %d accepted, %d held, %d records left; want 10, 10, 10", accepted, held, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Give the child a renewal or two, then kill it while it holds the leases.
	time.Sleep(lease / 2)
	// Each record's lease expiry (the child may still renew them later).
	until := map[string]time.Time{}
	rows, err := pool.Query(ctx, `SELECT r.addr, m.lease_until FROM queue_messages m
		JOIN queue_recipients r ON r.message_id = m.id WHERE m.lease_owner = 'node-a' AND m.lease_until > now()`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var addr string
		var u time.Time
		if err := rows.Scan(&addr, &u); err != nil {
			t.Fatal(err)
		}
		until["pg-"+strings.TrimSuffix(strings.TrimPrefix(addr, "bob"), "@b.test")] = u
	}
	if rows.Close(); rows.Err() != nil || len(until) != 10 {
		t.Fatalf("%d records leased by the child before the kill (%v), want 10", len(until), rows.Err())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed = true
	peer.mu.Lock()
	peer.hold = false
	close(peer.release)
	peer.mu.Unlock()

	b, err := queue.Open(ctx, pgQueueOptions(t, pool, "node-b", peer.port, lease))
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, b)
	waitDelivered(t, peer, b, total, 30*time.Second)
	peer.mu.Lock()
	defer peer.mu.Unlock()
	for i := range total {
		subj := fmt.Sprintf("pg-%d", i)
		copies := peer.got[subj]
		want := "node-a.test"
		if i >= 10 {
			want = "node-b.test"
		}
		if len(copies) != 1 || copies[0] != want {
			t.Errorf("message %d accepted from %v, want once from %s", i, copies, want)
			continue
		}
		// Clocks: the database's and this process's are the same machine's.
		if at, u := peer.at[subj][0], until[subj]; i >= 10 && (u.IsZero() || at.Before(u)) {
			t.Errorf("message %d taken over at %s, before its lease expired at %s", i, at.Format(time.StampMilli), u.Format(time.StampMilli))
		}
	}
}

// TestPGOutcomeSurvivesDatabaseRestart has the remote server accept a
// message (250) while PostgreSQL is down (an immediate shutdown, as a
// crash, and its restart). The node must record the outcome once the
// database is back, while its lease holds, rather than leave the record
// leased until the lease expires and send the message again.
func TestPGOutcomeSurvivesDatabaseRestart(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	peer := startCountingPeer(t)
	peer.hold, peer.holdFrom, peer.acceptHeld = true, 0, true
	// Much longer than a restart takes on a loaded machine: the lease
	// holds throughout, and the outcome is retried for half of it.
	const lease = 30 * time.Second
	q, err := queue.Open(ctx, pgQueueOptions(t, pool, "node-a", peer.port, lease))
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	if err := q.Enqueue(ctx, "alice@a.test", []string{"bob@b.test"}, strings.NewReader(pgMessage(0))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, held := peer.counts(); held == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the message never reached DATA")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Accept it while the database is down (Crash stops it at once and
	// waits until it is back).
	go func() {
		time.Sleep(100 * time.Millisecond)
		peer.mu.Lock()
		close(peer.release)
		peer.mu.Unlock()
	}()
	start := time.Now()
	pg.Crash(t)
	t.Logf("database back after %s", time.Since(start).Round(time.Millisecond))
	deadline = time.Now().Add(lease / 2)
	for q.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outcome not recorded %s after the restart (the record stays leased, to be sent again)", lease/2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if n := len(peer.got["pg-0"]); n != 1 {
		t.Errorf("message accepted %d times, want once", n)
	}
}

// TestPGNotifyWakesOtherNode: a message enqueued on a node that does not
// deliver is delivered at once by another node whose poll interval is an
// hour: the insert's notification woke it.
func TestPGNotifyWakesOtherNode(t *testing.T) {
	_, pool := pgDatabase(t)
	peer := startCountingPeer(t)
	ctx := context.Background()
	enq, err := queue.Open(ctx, pgQueueOptions(t, pool, "enqueuer", peer.port, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	opts := pgQueueOptions(t, pool, "node-b", peer.port, time.Minute)
	opts.PollInterval = time.Hour
	b, err := queue.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, b)
	time.Sleep(500 * time.Millisecond) // b's first look at the queue: empty
	for i := range 3 {
		if err := enq.Enqueue(ctx, "alice@a.test", []string{"bob@b.test"}, strings.NewReader(pgMessage(i))); err != nil {
			t.Fatal(err)
		}
		waitDelivered(t, peer, b, i+1, 10*time.Second)
	}
}
