package pgstore

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
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
		fmt.Fprintf(&b, "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench message %d\r\nMessage-ID: <%d@example.org>\r\n\r\n", i, i)
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
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package: Linux only")
	}
	const n = 2000
	pg := testenv.StartPostgres(b)
	url := pg.NewDatabase(b)
	ctx := context.Background()
	if _, _, err := Migrate(ctx, url); err != nil {
		b.Fatal(err)
	}
	s, err := Open(ctx, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchImport(b, s, "bench", n, 1024)
	all := make([]uint32, n)
	for i := range all {
		all[i] = uint32(i + 1)
	}
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
