package pgbench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
)

// BenchmarkCommit isolates what bounds the commit rate of PostgreSQL here:
// the same small write transaction (one INSERT), with and without a
// pg_notify in it, from 1 and 10 connections. PostgreSQL gives the WAL
// flush of concurrent commits one fsync (group commit), unless they
// NOTIFY: a transaction that notifies takes a database-wide lock before
// its commit record and keeps it until the commit is flushed, so such
// commits are flushed one at a time. A notifying commit rate that does not
// grow with connections, while the plain one does, shows that lock.
func BenchmarkCommit(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package: Linux only")
	}
	pg := testenv.StartPostgres(b)
	for _, notify := range []bool{false, true} {
		for _, conc := range []int{1, 10} {
			b.Run(fmt.Sprintf("notify=%v/c=%d", notify, conc), func(b *testing.B) {
				benchCommit(b, pg.NewDatabase(b), notify, conc)
			})
		}
	}
}

func benchCommit(b *testing.B, dbURL string, notify bool, conc int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = int32(conc)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id bigserial PRIMARY KEY, v int NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	b.ResetTimer()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO t (v) VALUES ($1)", 1); err != nil {
						return err
					}
					if notify {
						_, err := tx.Exec(ctx, "SELECT pg_notify('bench', 'x')")
						return err
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("commit: %v", err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
