package pgstore

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// BenchmarkSearchUnseen measures SEARCH UNSEEN (an answer from the node's
// snapshot plus, on PostgreSQL, one round trip asking whether the mailbox
// changed) on 2000 messages through a real IMAP server, on pgstore and on
// the embedded store in the same run, with many samples: bench/pg.sh
// takes one sample per client and run, too few for an answer of half a
// millisecond. It reports the median and 90th percentile of both and
// their ratio (pg / embedded).
//
//	go test -run '^$' -bench SearchUnseen ./server/pgstore/
func BenchmarkSearchUnseen(b *testing.B) {
	s, emb := benchStores(b, 2000, 10240)
	const samples = 200
	quantiles := func(st store.Backend) (p50, p90 time.Duration) {
		c := dialIMAP(b, serveIMAP(b, st), nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
		d := make([]time.Duration, 0, samples)
		for range samples {
			t0 := time.Now()
			data, err := c.Search(&goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}, nil).Wait()
			if err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(t0))
			if n := len(data.AllSeqNums()); n != 2000 {
				b.Fatalf("SEARCH UNSEEN found %d messages, want 2000", n)
			}
		}
		slices.Sort(d)
		return d[samples/2], d[samples*9/10]
	}
	b.ResetTimer()
	for range b.N {
		pg50, pg90 := quantiles(s)
		emb50, emb90 := quantiles(emb)
		b.ReportMetric(float64(pg50.Microseconds()), "pg-p50-µs")
		b.ReportMetric(float64(emb50.Microseconds()), "emb-p50-µs")
		b.ReportMetric(float64(pg90.Microseconds()), "pg-p90-µs")
		b.ReportMetric(float64(emb90.Microseconds()), "emb-p90-µs")
		b.ReportMetric(float64(pg50)/float64(emb50), "ratio-p50")
		b.ReportMetric(float64(pg90)/float64(emb90), "ratio-p90")
	}
}

// BenchmarkStoreAll measures bench/pg.sh's STORE phase (STORE 1:*
// +FLAGS.SILENT (\Flagged) then -FLAGS.SILENT) on 2000 messages through a
// real IMAP server, 1 and 4 clients at once, on pgstore and on the
// embedded store in the same run, 20 samples each: the median of the
// phase's time and the ratio pg / embedded.
//
//	go test -run '^$' -bench StoreAll ./server/pgstore/
func BenchmarkStoreAll(b *testing.B) {
	s, emb := benchStores(b, 2000, 1024)
	const samples = 20
	phase := func(addr string, clients int) time.Duration {
		cs := make([]*imapclient.Client, clients)
		for i := range cs {
			cs[i] = dialIMAP(b, addr, nil)
			if _, err := cs[i].Select("INBOX", nil).Wait(); err != nil {
				b.Fatal(err)
			}
		}
		var all goimap.SeqSet
		all.AddRange(1, 0)
		d := make([]time.Duration, 0, samples)
		for range samples {
			t0 := time.Now()
			var wg sync.WaitGroup
			for _, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, op := range []goimap.StoreFlagsOp{goimap.StoreFlagsAdd, goimap.StoreFlagsDel} {
						if err := c.Store(all, &goimap.StoreFlags{Op: op, Silent: true, Flags: []goimap.Flag{goimap.FlagFlagged}}, nil).Close(); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			d = append(d, time.Since(t0))
		}
		for _, c := range cs {
			c.Close()
		}
		slices.Sort(d)
		return d[samples/2]
	}
	pgAddr, embAddr := serveIMAP(b, s), serveIMAP(b, emb)
	b.ResetTimer()
	for range b.N {
		for _, clients := range []int{1, 4} {
			p, e := phase(pgAddr, clients), phase(embAddr, clients)
			b.ReportMetric(float64(p.Microseconds())/1000, fmt.Sprintf("pg-%dc-ms", clients))
			b.ReportMetric(float64(e.Microseconds())/1000, fmt.Sprintf("emb-%dc-ms", clients))
			b.ReportMetric(float64(p)/float64(e), fmt.Sprintf("ratio-%dc", clients))
		}
	}
}

// benchStores returns a migrated pgstore on a private cluster and an
// embedded store, each with alice's INBOX holding n fetchBenchMessages
// of size bytes.
func benchStores(b *testing.B, n, size int) (*Store, *store.Store) {
	b.Helper()
	ctx := b.Context()
	s := benchPG(b)
	fetchImportBench(b, s, n, size)
	emb, err := store.Open(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { emb.Close() })
	if err := emb.EnsureUser(ctx, alice, 0); err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, _, err := emb.Append(ctx, alice, "INBOX", strings.NewReader(fetchBenchMessage(i, size)), nil, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	return s, emb
}

// benchPG returns a pgstore, migrated, on a database of a private
// cluster, closed when the benchmark ends.
func benchPG(b *testing.B) *Store {
	b.Helper()
	url := testenv.StartPostgres(b).NewDatabase(b)
	if _, _, err := Migrate(b.Context(), url); err != nil {
		b.Fatal(err)
	}
	s, err := Open(b.Context(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSearchPhase measures bench/pg.sh's search phase with 4
// clients: each client runs SEARCH SUBJECT, SEARCH UNSEEN and SEARCH
// BODY in turn, the four starting together, 20 times, on pgstore and on
// the embedded store in the same run. It reports each search's median
// (80 samples) and the ratio pg / embedded: SEARCH UNSEEN is then measured
// beside the other clients' searches, as bench/pg.sh has it, with enough
// samples.
//
//	go test -run '^$' -bench SearchPhase ./server/pgstore/
func BenchmarkSearchPhase(b *testing.B) {
	s, emb := benchStores(b, 2000, 10240)
	const clients, rounds = 4, 20
	kinds := []struct {
		name string
		crit *goimap.SearchCriteria
	}{
		{"subject", &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "bench message 4242"}}}},
		{"unseen", &goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}},
		{"body", &goimap.SearchCriteria{Body: []string{"needle4242"}}},
	}
	phase := func(st store.Backend) [][]time.Duration {
		addr := serveIMAP(b, st)
		cs := make([]*imapclient.Client, clients)
		for i := range cs {
			cs[i] = dialIMAP(b, addr, nil)
			if _, err := cs[i].Select("INBOX", nil).Wait(); err != nil {
				b.Fatal(err)
			}
		}
		// Once, untimed: pgstore makes the search texts at the first
		// SEARCH BODY of a mailbox imported without them.
		if _, err := cs[0].Search(kinds[2].crit, nil).Wait(); err != nil {
			b.Fatal(err)
		}
		d := make([][]time.Duration, len(kinds))
		var mu sync.Mutex
		for range rounds {
			var wg sync.WaitGroup
			for _, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k, kind := range kinds {
						t0 := time.Now()
						if _, err := c.Search(kind.crit, nil).Wait(); err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						d[k] = append(d[k], time.Since(t0))
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
		}
		for _, c := range cs {
			c.Close()
		}
		return d
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	b.ResetTimer()
	for range b.N {
		p, e := phase(s), phase(emb)
		for k, kind := range kinds {
			pm, em := median(p[k]), median(e[k])
			b.ReportMetric(float64(pm.Microseconds())/1000, "pg-"+kind.name+"-ms")
			b.ReportMetric(float64(em.Microseconds())/1000, "emb-"+kind.name+"-ms")
			b.ReportMetric(float64(pm)/float64(em), "ratio-"+kind.name)
		}
	}
}
