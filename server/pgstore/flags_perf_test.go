package pgstore

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// benchImport makes mailbox INBOX of user with n messages of about size
// bytes each, subjects "bench message N" (as bench/anchors/imap-fetch.py).
func benchImport(tb testing.TB, s *Store, user string, n, size int) {
	tb.Helper()
	ctx := context.Background()
	if err := s.ImportUser(ctx, user, 0); err != nil {
		tb.Fatal(err)
	}
	mb := store.Mailbox{Name: "INBOX", UIDValidity: 1700000000, UIDNext: uint32(n + 1), ModSeq: uint64(n), Messages: n, RecentUID: uint32(n + 1)}
	i := 0
	date := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	pad := strings.Repeat("x", 76) + "\r\n"
	_, err := s.ImportMailbox(ctx, user, mb, func() (store.Message, io.Reader, error) {
		if i == n {
			return store.Message{}, nil, io.EOF
		}
		i++
		var b strings.Builder
		// The header of bench/anchors/imap-fetch.py's messages.
		fmt.Fprintf(&b, "From: Sender %d <sender%d@example.test>\r\nTo: Bench User <bench@bench.test>\r\n"+
			"Subject: bench message %d\r\nDate: Mon, 01 Jan 2024 00:%02d:%02d +0000\r\nMessage-ID: <bench.%d@example.test>\r\n"+
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", i%50, i%50, i, (i/60)%60, i%60, i)
		for b.Len() < size {
			b.WriteString(pad)
		}
		return store.Message{UID: uint32(i), ModSeq: uint64(i), InternalDate: date}, strings.NewReader(b.String()), nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSetFlagsConcurrent is the STORE phase of bench/pg.sh at the
// store level: each of c goroutines runs SetFlags 1:* +\Flagged then
// -\Flagged on a mailbox of 2000 messages, all at once; one op is one
// pair per goroutine.
func BenchmarkSetFlagsConcurrent(b *testing.B) {
	ctx := context.Background()
	s, all := benchFlagStore(b)
	for _, c := range []int{1, 4} {
		b.Run(fmt.Sprintf("clients=%d", c), func(b *testing.B) {
			for range b.N {
				var wg sync.WaitGroup
				errs := make(chan error, c)
				for range c {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for _, op := range []store.FlagOp{store.FlagsAdd, store.FlagsRemove} {
							if _, err := s.SetFlags(ctx, "bench", "INBOX", all, op, []string{store.FlagFlagged}); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHeaders is SEARCH SUBJECT of bench/pg.sh at the store level:
// each of c goroutines reads the headers of a mailbox of 2000 messages,
// 1000 at a time as server/imap does, with and without the node's
// header cache (warm: the first op fills it).
func BenchmarkHeaders(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package: Linux only")
	}
	const n = 2000
	ctx := context.Background()
	s := benchPG(b)
	benchImport(b, s, "bench", n, 1024)
	mb, err := s.Mailbox(ctx, "bench", "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	cache := s.hdrCache
	for _, cached := range []bool{false, true} {
		for _, c := range []int{1, 4} {
			b.Run(fmt.Sprintf("cache=%v/clients=%d", cached, c), func(b *testing.B) {
				s.hdrCache = nil
				if cached {
					s.hdrCache = cache
				}
				defer func() { s.hdrCache = cache }()
				for range b.N {
					var wg sync.WaitGroup
					for range c {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for lo := uint32(1); lo <= n; lo += 1000 {
								uids := make([]uint32, 1000)
								for i := range uids {
									uids[i] = lo + uint32(i)
								}
								hs, err := s.Headers(ctx, "bench", mb.ID, uids)
								if err != nil || len(hs) != 1000 || hs[999] == nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
				}
			})
		}
	}
}

// benchFlagStore returns a migrated pgstore whose user "bench" has 2000
// messages of 1 KiB in INBOX, and their UIDs.
func benchFlagStore(b *testing.B) (*Store, []uint32) {
	b.Helper()
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package: Linux only")
	}
	const n = 2000
	s := benchPG(b)
	benchImport(b, s, "bench", n, 1024)
	all := make([]uint32, n)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	return s, all
}

// BenchmarkSetFlagsPaths compares SetFlags 1:* +FLAGS and -FLAGS on 2000
// messages, one at a time, for a system flag (systemFlagStatements) and
// a keyword (setFlagsQuery's general statement), interleaved in the same
// run: the median of each, in ms, and their ratio.
//
//	go test -run '^$' -bench SetFlagsPaths ./server/pgstore/
func BenchmarkSetFlagsPaths(b *testing.B) {
	ctx := context.Background()
	s, all := benchFlagStore(b)
	flags := []string{store.FlagFlagged, "$Junk"}
	b.ResetTimer()
	for range b.N {
		d := map[string][]time.Duration{}
		for range 10 {
			for _, f := range flags {
				for _, op := range []store.FlagOp{store.FlagsAdd, store.FlagsRemove, store.FlagsAdd, store.FlagsRemove} {
					t0 := time.Now()
					if _, err := s.SetFlags(ctx, "bench", "INBOX", all, op, []string{f}); err != nil {
						b.Fatal(err)
					}
					d[f] = append(d[f], time.Since(t0))
				}
			}
		}
		med := func(f string) time.Duration { slices.Sort(d[f]); return d[f][len(d[f])/2] }
		sys, kw := med(flags[0]), med(flags[1])
		b.ReportMetric(float64(sys.Microseconds())/1000, "system-ms")
		b.ReportMetric(float64(kw.Microseconds())/1000, "keyword-ms")
		b.ReportMetric(float64(sys)/float64(kw), "ratio")
	}
}
