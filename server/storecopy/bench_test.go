package storecopy_test

import (
	"context"

	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
	"github.com/mailctl/mailctl/server/storecopy"
)

// BenchmarkCopy copies a store of 2000 messages of 4 KiB (one user, one
// mailbox) from the embedded store to PostgreSQL and back, per op; it
// reports messages per second each way.
func BenchmarkCopy(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package: Linux only")
	}
	const n = 2000
	ctx := context.Background()
	src, err := store.Open(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	if err := src.EnsureUser(ctx, "u", 0); err != nil {
		b.Fatal(err)
	}
	body := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef", 256)
	for i := 0; i < n; i++ {
		if _, err := src.Deliver(ctx, "u", "", strings.NewReader(body), []string{store.FlagSeen}, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	pg := testenv.StartPostgres(b)
	var to, back time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		url := pg.NewDatabase(b)
		if _, _, err := pgstore.Migrate(ctx, url); err != nil {
			b.Fatal(err)
		}
		p, err := pgstore.Open(ctx, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := storecopy.Copy(ctx, src, p, storecopy.Options{}); err != nil {
			b.Fatal(err)
		}
		to += time.Since(start)
		dst, err := store.Open(ctx, b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if _, err := storecopy.Copy(ctx, p, dst, storecopy.Options{}); err != nil {
			b.Fatal(err)
		}
		back += time.Since(start)
		dst.Close()
		p.Close()
	}
	b.ReportMetric(float64(n*b.N)/to.Seconds(), "msgs/s-to-pg")
	b.ReportMetric(float64(n*b.N)/back.Seconds(), "msgs/s-from-pg")
}
