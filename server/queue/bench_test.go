package queue_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
)

// BenchmarkOutbound measures delivery between two servers on loopback:
// messages enqueued (DKIM-signed with ed25519 and rsa) at mx.a.test until
// all are durable in bob@b.test's INBOX at mx.b.test. "checked" runs the
// inbound checks at the receiver (iprev, SPF, DKIM, DMARC against Knot).
// Run with a fixed count, e.g. -benchtime=500x: each run starts new servers.
var perDest = 12

func BenchmarkOutbound(b *testing.B) {
	for _, checked := range []bool{false, true} {
		name := "plain"
		var inb *inbound.Options
		if checked {
			name, inb = "checked", &inbound.Options{}
		}
		b.Run(name, func(b *testing.B) {
			_, a, dst := twoServers(b, inb, func(o *queue.Options) { o.MaxPerDestination = perDest })
			ctx := context.Background()
			body := msg("Alice <alice@a.test>", "bob@b.test", "bench") +
				strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 60)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start := time.Now()
			// Eight submitters at once, as concurrent SMTP sessions would.
			var wg sync.WaitGroup
			next := make(chan struct{})
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						if err := a.queue.Enqueue(ctx, "alice@a.test", []string{"bob@b.test"}, strings.NewReader(body)); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				next <- struct{}{}
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "enqueued/s")
			deadline := time.Now().Add(5 * time.Minute)
			for {
				_, msgs, err := dst.store.Messages(ctx, "bob@b.test", "INBOX")
				if err != nil {
					b.Fatal(err)
				}
				if len(msgs) >= b.N {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d delivered", len(msgs), b.N)
				}
				time.Sleep(5 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
