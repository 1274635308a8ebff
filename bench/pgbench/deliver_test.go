package pgbench

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// body is a ~10 KiB message; i makes each one different. Text bodies
// repeat one line, as smtp-source -l 10240 does in bench/run.sh, and
// PostgreSQL compresses them (TOAST, pglz) to a few hundred bytes;
// random ones are base64 of seeded pseudo-random bytes, as an attachment,
// which do not compress: the upper bound of WAL and table bytes.
func body(i int, random bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <bench@client.test>\r\nTo: <bench@bench.test>\r\n"+
		"Subject: bench message %d\r\nMessage-ID: <%d@client.test>\r\n"+
		"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n\r\n", i, i)
	line := []byte(strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 2))
	rnd := rand.New(rand.NewPCG(uint64(i), 20))
	for b.Len() < 10240 {
		if random {
			raw := make([]byte, 54)
			for k := range raw {
				raw[k] = byte(rnd.Uint32())
			}
			line = []byte(base64.StdEncoding.EncodeToString(raw))
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

type deliverer interface {
	Deliver(ctx context.Context, user, mailbox string, body *bytes.Reader, flags []string, date time.Time) (uint32, error)
}

// pgDeliver and embDeliver adapt both stores to one signature (their
// Deliver takes an io.Reader).
type pgDeliver struct{ *pgstore.Store }

func (s pgDeliver) Deliver(ctx context.Context, user, mailbox string, r *bytes.Reader, flags []string, date time.Time) (uint32, error) {
	return s.Store.Deliver(ctx, user, mailbox, r, flags, date)
}

type embDeliver struct{ *store.Store }

func (s embDeliver) Deliver(ctx context.Context, user, mailbox string, r *bytes.Reader, flags []string, date time.Time) (uint32, error) {
	return s.Store.Deliver(ctx, user, mailbox, r, flags, date)
}

// deliverAll delivers n messages with conc goroutines, message i to user
// i%len(users), and fails tb on the first error.
func deliverAll(tb testing.TB, s deliverer, users []string, n, conc int, random bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = body(i, random)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if _, err := s.Deliver(ctx, users[i%len(users)], "", bytes.NewReader(bodies[i%len(bodies)]), nil, time.Time{}); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		tb.Fatalf("deliver: %v", first)
	}
}

func userNames(n int) []string {
	u := make([]string, n)
	for i := range u {
		u[i] = fmt.Sprintf("bench%d@bench.test", i)
	}
	return u
}

// shape is one load.
type shape struct {
	name        string
	conc, users int
	nodes       int  // Stores open on the database (each listens to the change feed)
	random      bool // incompressible bodies
}

// shapes are the loads: concurrent deliveries into one mailbox (as the
// ingest of bench/run.sh: C=10 sessions, one recipient); spread over ten
// users (one user's row lock no longer orders them all); with four nodes
// listening to the change feed (each one's listening backend reads every
// notification); and with incompressible bodies. The embedded store runs
// the shapes that mean something for one process.
var shapes = []shape{
	{"c=1/users=1", 1, 1, 1, false},
	{"c=10/users=1", 10, 1, 1, false},
	{"c=10/users=10", 10, 10, 1, false},
	{"c=10/users=10/nodes=4", 10, 10, 4, false},
	{"c=10/users=1/random", 10, 1, 1, true},
}

// BenchmarkDeliver delivers b.N messages into the embedded store and into
// the PostgreSQL store, for each shape. Run with a fixed count, e.g.
// go test -run '^$' -bench Deliver -benchtime 2000x ./bench/pgbench/
func BenchmarkDeliver(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package and /proc: Linux only")
	}
	for _, sh := range shapes {
		if sh.nodes == 1 {
			b.Run("embedded/"+sh.name, func(b *testing.B) { benchEmbedded(b, sh) })
		}
	}
	pg := testenv.StartPostgres(b)
	for _, sh := range shapes {
		b.Run("postgres/"+sh.name, func(b *testing.B) { benchPostgres(b, pg, sh) })
	}
}

func benchEmbedded(b *testing.B, sh shape) {
	ctx := context.Background()
	s, err := store.Open(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	users := userNames(sh.users)
	for _, u := range users {
		if err := s.EnsureUser(ctx, u, 0); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := SelfCPU()
	b.ResetTimer()
	deliverAll(b, embDeliver{s}, users, b.N, sh.conc, sh.random)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((SelfCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/msg")
}

// pgCounters are the cluster-wide figures read before and after a run.
type pgCounters struct {
	xacts int64
	lsn   string
	cpu   time.Duration
}

func readCounters(tb testing.TB, pg *testenv.Postgres, dbURL string) pgCounters {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("counters: %v", err)
	}
	defer conn.Close(ctx)
	var c pgCounters
	if err := conn.QueryRow(ctx, `SELECT xact_commit, pg_current_wal_lsn()::text
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&c.xacts, &c.lsn); err != nil {
		tb.Fatalf("counters: %v", err)
	}
	if c.cpu, err = TreeCPU(pg.PID); err != nil {
		tb.Fatalf("counters: %v", err)
	}
	return c
}

func walBytes(tb testing.TB, dbURL, from, to string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("wal: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint", to, from).Scan(&n); err != nil {
		tb.Fatalf("wal: %v", err)
	}
	return n
}

// withHost returns u with its host:port replaced.
func withHost(tb testing.TB, u, hostport string) string {
	tb.Helper()
	p, err := url.Parse(u)
	if err != nil {
		tb.Fatal(err)
	}
	p.Host = hostport
	return p.String()
}

func benchPostgres(b *testing.B, pg *testenv.Postgres, sh shape) {
	ctx := context.Background()
	dbURL := pg.NewDatabase(b)
	if _, _, err := pgstore.Migrate(ctx, dbURL); err != nil {
		b.Fatal(err)
	}
	users := userNames(sh.users)
	setup, err := pgstore.Open(ctx, dbURL, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range users {
		if err := setup.EnsureUser(ctx, u, 0); err != nil {
			b.Fatal(err)
		}
	}
	setup.Close()
	var others []*pgstore.Store // the other nodes: idle but listening
	for range sh.nodes - 1 {
		other, err := pgstore.Open(ctx, dbURL, nil)
		if err != nil {
			b.Fatal(err)
		}
		others = append(others, other)
	}

	// The timed pass, straight to the server. Its connections are closed
	// before the counters are read again: a backend that exits flushes its
	// statistics (a live idle one may hold them for seconds).
	s, err := pgstore.Open(ctx, dbURL, nil)
	if err != nil {
		b.Fatal(err)
	}
	before := readCounters(b, pg, dbURL)
	cpu0 := SelfCPU()
	b.ResetTimer()
	deliverAll(b, pgDeliver{s}, users, b.N, sh.conc, sh.random)
	b.StopTimer()
	cpu := SelfCPU() - cpu0
	s.Close()
	for _, o := range others { // their listening backends' counters too
		o.Close()
	}
	time.Sleep(200 * time.Millisecond) // the backends' exit
	after := readCounters(b, pg, dbURL)
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-us/msg")
	b.ReportMetric(float64((after.cpu-before.cpu).Microseconds())/n, "pg-cpu-us/msg")
	b.ReportMetric(float64(after.xacts-before.xacts)/n, "xacts/msg")
	b.ReportMetric(float64(walBytes(b, dbURL, before.lsn, after.lsn))/n, "wal-B/msg")

	// The counting pass, through the proxy: round trips per message once
	// the pool is warm (connection set-up is not part of a delivery).
	b.ReportMetric(roundTrips(b, dbURL, users, sh.conc), "rt/msg")
}

// roundTrips delivers messages through a TurnCounter and returns the round
// trips per message, connection set-up excluded: a first batch warms the
// pool (one connection per goroutine), the second is counted.
func roundTrips(tb testing.TB, dbURL string, users []string, conc int) float64 {
	tb.Helper()
	u, _ := url.Parse(dbURL)
	tc, err := NewTurnCounter(u.Host)
	if err != nil {
		tb.Fatal(err)
	}
	defer tc.Close()
	s, err := pgstore.Open(context.Background(), withHost(tb, dbURL, tc.Addr()), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	const n = 200
	deliverAll(tb, pgDeliver{s}, users, n, conc, false)
	t0 := tc.Turns()
	deliverAll(tb, pgDeliver{s}, users, n, conc, false)
	return float64(tc.Turns()-t0) / n
}

// TestTurnCounter checks the round-trip counter on a real server: one
// simple query is one round trip; a pgx batch of three queries, sent in
// one go, is one too (once its statements are described); an extended-protocol query with arguments is one
// once its statement is prepared and cached.
func TestTurnCounter(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	pg := testenv.StartPostgres(t)
	tc, err := NewTurnCounter(pg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, withHost(t, pg.URL, tc.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if tc.Turns() < 1 {
		t.Fatalf("connection set-up counted %d round trips, want >= 1", tc.Turns())
	}
	count := func(what string, want int64, fn func() error) {
		t.Helper()
		t0 := tc.Turns()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := tc.Turns() - t0; got != want {
			t.Errorf("%s: %d round trips, want %d", what, got, want)
		}
	}
	simple := func() error {
		_, err := conn.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
		return err
	}
	count("simple query", 1, simple)
	count("five simple queries", 5, func() error {
		for range 5 {
			if err := simple(); err != nil {
				return err
			}
		}
		return nil
	})
	batch := func() error {
		var bt pgx.Batch
		for i := range 3 {
			bt.Queue("SELECT $1::int", i)
		}
		return conn.SendBatch(ctx, &bt).Close()
	}
	// pgx first describes the statements it has not cached: one more
	// round trip, once.
	count("first batch of three", 2, batch)
	count("batch of three", 1, batch)
	var v int
	prepared := func() error { return conn.QueryRow(ctx, "SELECT $1::int + 1", 41).Scan(&v) }
	if err := prepared(); err != nil { // prepares and caches the statement
		t.Fatal(err)
	}
	count("cached prepared query", 1, prepared)
	if v != 42 {
		t.Fatalf("query through the proxy returned %d, want 42", v)
	}
}
