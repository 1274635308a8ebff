package pgstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// benchMessage is message i of bench/anchors/imap-fetch.py's mailbox in
// kind: headers, a needle line and text lines up to size bytes.
func fetchBenchMessage(i, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Sender %d <sender%d@example.test>\r\nTo: Bench User <bench@bench.test>\r\n"+
		"Subject: bench message %d\r\nDate: Mon, 01 Jan 2024 00:%02d:%02d +0000\r\n"+
		"Message-ID: <bench.%d@example.test>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\nneedle%d\r\n",
		i%50, i%50, i, (i/60)%60, i%60, i, i)
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore")
	for k := i; b.Len() < size; k++ {
		line := ""
		for len(line) < 72 {
			line += words[(k*7+len(line))%len(words)] + " "
		}
		b.WriteString(strings.TrimSpace(line) + "\r\n")
	}
	return b.String()
}

// importBench makes alice's INBOX on s hold n benchMessages of size bytes
// in one import transaction (the bench's APPENDs, faster).
func fetchImportBench(tb testing.TB, s *Store, n, size int) {
	tb.Helper()
	ctx := context.Background()
	if err := s.ImportUser(ctx, alice, 0); err != nil {
		tb.Fatal(err)
	}
	mb := store.Mailbox{Name: "INBOX", UIDValidity: 1700000000, UIDNext: uint32(n + 1), ModSeq: uint64(n), Messages: n, RecentUID: uint32(n + 1)}
	i := 0
	date := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := s.ImportMailbox(ctx, alice, mb, func() (store.Message, io.Reader, error) {
		if i == n {
			return store.Message{}, nil, io.EOF
		}
		i++
		return store.Message{UID: uint32(i), ModSeq: uint64(i), InternalDate: date}, strings.NewReader(fetchBenchMessage(i, size)), nil
	}); err != nil {
		tb.Fatal(err)
	}
}

// rawFetcher is an IMAP client that sends FETCH commands and reads the
// answer without parsing it: what the benchmark measures is the server.
type rawFetcher struct {
	c    net.Conn
	br   *bufio.Reader
	n    int
	keep *bytes.Buffer // when not nil, the answers are kept here
}

func dialRaw(tb testing.TB, addr string) *rawFetcher {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	// A wrong literal size leaves the client waiting: fail instead.
	c.SetDeadline(time.Now().Add(time.Minute))
	f := &rawFetcher{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	if _, err := f.br.ReadSlice('\n'); err != nil {
		tb.Fatal(err)
	}
	f.run(tb, "LOGIN "+alice+" pw")
	f.run(tb, "SELECT INBOX")
	return f
}

// run sends cmd and reads its answer whole; it returns the bytes read.
func (f *rawFetcher) run(tb testing.TB, cmd string) int {
	f.n++
	tag := fmt.Sprintf("T%d ", f.n)
	if _, err := fmt.Fprintf(f.c, "%s%s\r\n", tag, cmd); err != nil {
		tb.Fatal(err)
	}
	read := 0
	for {
		line, err := f.br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			read += len(line)
			if f.keep != nil {
				f.keep.Write(line)
			}
			line, err = f.br.ReadSlice('\n')
		}
		if err != nil {
			tb.Fatalf("%s: %v", cmd, err)
		}
		read += len(line)
		if f.keep != nil {
			f.keep.Write(line)
		}
		if bytes.HasPrefix(line, []byte(tag)) {
			if !bytes.HasPrefix(line[len(tag):], []byte("OK")) {
				tb.Fatalf("%s: %q", cmd, line)
			}
			return read
		}
		// A literal: skip its bytes ({n}\r\n ends the line).
		if l := bytes.TrimRight(line, "\r\n"); len(l) > 0 && l[len(l)-1] == '}' {
			if at := bytes.LastIndexByte(l, '{'); at >= 0 {
				var size int64
				if _, err := fmt.Sscanf(string(l[at+1:len(l)-1]), "%d", &size); err == nil {
					var w io.Writer = io.Discard
					if f.keep != nil {
						w = f.keep
					}
					n, err := io.CopyN(w, f.br, size)
					read += int(n)
					if err != nil {
						tb.Fatalf("%s: %v", cmd, err)
					}
				}
			}
		}
	}
}

// BenchmarkFetchBodies measures bench/pg.sh's fetch_body phase through a
// real IMAP server: each of 1 or 4 clients fetches 2000 messages of 10 KiB
// as FETCH 1:1000 and 1001:2000 (BODY.PEEK[]), on pgstore and on the
// embedded store, at the same time behind a barrier. MiB/s is the
// clients' total. Run with
//
//	go test -run '^$' -bench FetchBodies -benchtime 3x ./server/pgstore/
func BenchmarkFetchBodies(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package: Linux only")
	}
	const n, size = 2000, 10 << 10
	s, emb := benchStores(b, n, size)
	timed := &timedBodies{Store: s}
	for _, backend := range []struct {
		name string
		st   store.Backend
	}{{"embedded", emb}, {"postgres", timed}} {
		addr := serveIMAP(b, backend.st)
		for _, clients := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/clients=%d", backend.name, clients), func(b *testing.B) {
				fs := make([]*rawFetcher, clients)
				for i := range fs {
					fs[i] = dialRaw(b, addr)
				}
				var total int64
				timed.ns.Store(0)
				cpu0 := cpuTime()
				b.ResetTimer()
				for range b.N {
					var wg sync.WaitGroup
					var mu sync.Mutex
					for _, f := range fs {
						wg.Add(1)
						go func() {
							defer wg.Done()
							got := 0
							for lo := 1; lo <= n; lo += 1000 {
								got += f.run(b, fmt.Sprintf("FETCH %d:%d (BODY.PEEK[])", lo, lo+999))
							}
							mu.Lock()
							total += int64(got)
							mu.Unlock()
						}()
					}
					wg.Wait()
				}
				b.ReportMetric(float64(total)/(1<<20)/b.Elapsed().Seconds(), "MiB/s")
				// The CPU time of this process (server and clients): on a
				// busy machine a steadier figure than the wall clock.
				b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "ms-cpu/op")
				if backend.st == timed {
					// The clients' total time in OpenBodies.
					b.ReportMetric(float64(timed.ns.Load())/1e6/float64(b.N), "ms-OpenBodies/op")
				}
			})
		}
	}
}

// timedBodies is a Store that adds up the time its callers wait in
// OpenBodies.
type timedBodies struct {
	*Store
	ns atomic.Int64
}

func (t *timedBodies) OpenBodies(ctx context.Context, msgs []store.Message) ([]store.Body, error) {
	start := time.Now()
	defer func() { t.ns.Add(int64(time.Since(start))) }()
	return t.Store.OpenBodies(ctx, msgs)
}

// cpuTime returns the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
