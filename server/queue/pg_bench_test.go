package queue_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/queue"
)

// roundTrips counts the statements and batches a pool sends: one round
// trip each (BEGIN and COMMIT included).
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQueueBackends enqueues b.N messages (8 submitters) on one node
// and waits until a fake remote server accepted them all, with the
// embedded queue and with the queue in PostgreSQL. It reports messages
// per second, this process's CPU per message (the queue and the fake
// server; PostgreSQL's own CPU is not included) and, for PostgreSQL, the
// database round trips per message. Run with a fixed count, e.g.
// -benchtime=500x.
func BenchmarkQueueBackends(b *testing.B) {
	body := pgMessage(0) + strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 60)
	for _, backend := range []string{"bbolt", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			peer := startCountingPeer(b)
			opts := queue.Options{Hostname: "node-a.test", Resolver: loopResolver{}, Port: peer.port, DisableMTASTS: true,
				Workers: 16, MaxPerDestination: 16, PollInterval: time.Second, Logger: testLogger(b)}
			var rt *roundTrips
			if backend == "postgres" {
				pg := testenv.StartPostgres(b)
				url := pg.NewDatabase(b)
				if _, _, err := pgstore.Migrate(ctx, url); err != nil {
					b.Fatal(err)
				}
				cfg, err := pgxpool.ParseConfig(url)
				if err != nil {
					b.Fatal(err)
				}
				rt = &roundTrips{}
				cfg.ConnConfig.Tracer = rt
				pool, err := pgxpool.NewWithConfig(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(pool.Close)
				opts.Postgres, opts.Node = pool, "node-a"
			} else {
				opts.Dir = b.TempDir()
			}
			q, err := queue.Open(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			runQueue(b, q)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			if rt != nil {
				rt.n.Store(0)
			}
			var wg sync.WaitGroup
			next := make(chan int)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						m := strings.Replace(body, "Subject: pg-0", "Subject: pg-"+strconv.Itoa(i), 1)
						if err := q.Enqueue(ctx, "alice@a.test", []string{"bob@b.test"}, strings.NewReader(m)); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for i := range b.N {
				next <- i
			}
			close(next)
			wg.Wait()
			waitDelivered(b, peer, q, b.N, time.Minute)
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(n/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/n, "cpu-µs/msg")
			if rt != nil {
				b.ReportMetric(float64(rt.n.Load())/n, "roundtrips/msg")
			}
		})
	}
}
