package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/store"
)

// countingConn counts the bytes read from the database.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// testHeadersCached: Headers and Summaries through the node's cache give
// what they give without it (dense and sparse UIDs, duplicates, UIDs
// expunged or beyond the last; after an expunge, a delivery, a STORE;
// with and without a body map), and a second SEARCH-sized read of 1000
// headers is one statement that reads a fraction of the bytes of the
// first (the mailbox's change stamp, one row, where the headers are ~230
// bytes each). An expunged message has no header though its body's is
// cached; another user gets ErrNoSuchUser.
func testHeadersCached(t *testing.T, url string) {
	const n = 1000
	plain := migrated(t, url)
	plain.SetHeaderSummary(func(h []byte) []byte { return append([]byte("sum:"), h[:min(len(h), 20)]...) })
	benchImport(t, plain, alice, n, 300)
	// Delivered ones too: their summaries are made at delivery.
	for i := range 5 {
		deliver(t, plain, "INBOX", msg(fmt.Sprintf("late %d", i)))
	}
	mb := mailboxOf(t, plain, "INBOX")
	plain.hdrCache = nil

	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var read atomic.Int64
	var count statementCounter
	cfg.ConnConfig.Tracer = &count
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &read}, nil
	}
	pool, err := pgxpool.NewWithConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cached := &Store{pool: pool, chunkSize: bodyChunk, hdrCache: newHeaderCache(headerCacheBytes, headerCacheIdle)}
	t.Cleanup(cached.hdrCache.close)
	ctx := ctxT(t)

	all := make([]uint32, n)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	var got [3][]int64 // bytes, statements
	for round := range 3 {
		if _, err := pool.Exec(ctx, "SELECT 1"); err != nil { // the connection up
			t.Fatal(err)
		}
		read.Store(0)
		count.n.Store(0)
		hs, err := cached.Headers(ctx, alice, mb.ID, all)
		if err != nil {
			t.Fatal(err)
		}
		got[round] = []int64{read.Load(), count.n.Load()}
		want, err := plain.Headers(ctx, alice, mb.ID, all)
		if err != nil {
			t.Fatal(err)
		}
		for i := range hs {
			if string(hs[i]) != string(want[i]) {
				t.Fatalf("round %d: UID %d: header %q, want %q", round, all[i], hs[i], want[i])
			}
		}
		if !strings.Contains(string(hs[41]), "Subject: bench message 42\r\n") {
			t.Fatalf("UID 42: header %q", hs[41])
		}
	}
	t.Logf("Headers of %d messages: cold %d bytes in %d statements, warm %d bytes in %d", n, got[0][0], got[0][1], got[1][0], got[1][1])
	if got[1][1] != 1 || got[1][0]*4 > got[0][0] {
		t.Errorf("warm Headers of %d messages: %d bytes in %d statements, want 1 statement and at most a quarter of the cold read's %d bytes",
			n, got[1][0], got[1][1], got[0][0])
	}

	// Odd asks, Headers and Summaries, before and after an expunge.
	top := uint32(n + 5)
	asks := [][]uint32{
		{3, 3, 900, top, top + 1, 1},
		{top, top - 1, top - 2},
		{2, 500, 999, 17, 2},
		{top + 40},
	}
	check := func(what string) {
		t.Helper()
		for _, ask := range asks {
			for _, sum := range []bool{false, true} {
				read := (*Store).Headers
				if sum {
					read = (*Store).Summaries
				}
				a, err := read(cached, ctx, alice, mb.ID, ask)
				if err != nil {
					t.Fatal(err)
				}
				b, err := read(plain, ctx, alice, mb.ID, ask)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.EqualFunc(a, b, func(x, y []byte) bool { return string(x) == string(y) && (x == nil) == (y == nil) }) {
					t.Errorf("%s: %v (summaries %v): %q, want %q", what, ask, sum, a, b)
				}
			}
		}
	}
	check("before the expunge")
	expungeUIDs(t, plain, "INBOX", 2, 900, top)
	check("after the expunge")
	late := deliver(t, plain, "INBOX", msg("later still"))
	asks = append(asks, []uint32{late, 1, late - 1})
	check("after a delivery")
	if _, err := plain.SetFlags(ctx, alice, "INBOX", []uint32{3}, store.FlagsAdd, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	check("after a STORE")
	// A mailbox too large for a body map: the UIDs asked are read.
	defer func(n int) { maxMapMessages = n }(maxMapMessages)
	maxMapMessages = 10
	cached.hdrCache.close()
	cached.hdrCache = newHeaderCache(headerCacheBytes, headerCacheIdle)
	check("without a body map")
	if _, _, maps := cached.hdrCache.size(); maps != 0 {
		t.Errorf("%d body maps of a mailbox of more than %d messages", maps, maxMapMessages)
	}
	expungeUIDs(t, plain, "INBOX", 17)
	check("without a body map, after an expunge")
	if hs, err := cached.Headers(ctx, alice, mb.ID, []uint32{900}); err != nil || hs[0] != nil {
		t.Errorf("Headers of an expunged message: %q, %v; want none", hs, err)
	}
	if _, err := cached.Headers(ctx, "nobody@example.test", mb.ID, all); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("Headers of an unknown user: %v, want ErrNoSuchUser", err)
	}
}

// TestHeaderCacheBounded: the cache keeps at most its bytes, dropping the
// least recently used first, refuses a value larger than a sixteenth of
// it, empties itself once idle, and keeps nothing once closed.
func TestHeaderCacheBounded(t *testing.T) {
	c := newHeaderCache(16*(100+entryOverhead), 100*time.Millisecond)
	defer c.close()
	v := make([]byte, 100)
	for i := range int64(40) {
		c.put(headerKey{body: i}, v)
		if i == 20 {
			c.get(headerKey{body: 5}) // used: kept
		}
	}
	n, bytes, _ := c.size()
	if n != 16 || bytes > 16*(100+entryOverhead) {
		t.Fatalf("%d entries, %d bytes; want 16 entries within %d", n, bytes, 16*(100+entryOverhead))
	}
	if _, ok := c.get(headerKey{body: 39}); !ok {
		t.Error("the newest entry is gone")
	}
	if _, ok := c.get(headerKey{body: 0}); ok {
		t.Error("the oldest entry is kept")
	}
	if _, ok := c.get(headerKey{body: 5}); ok {
		t.Error("entry 5, used at 20, outlived 19 newer ones")
	}
	if _, ok := c.get(headerKey{body: 30, summary: true}); ok {
		t.Error("a summary found under a header's key")
	}
	c.put(headerKey{body: 100}, make([]byte, 2*(100+entryOverhead)))
	if _, ok := c.get(headerKey{body: 100}); ok {
		t.Error("a value larger than a sixteenth of the cache is kept")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, _, _ := c.size(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not emptied 5 s after its last use (idle 100 ms)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.put(headerKey{body: 1}, v)
	if n, _, _ := c.size(); n != 1 {
		t.Fatalf("after emptied: %d entries after a put, want 1", n)
	}
	c.close()
	c.put(headerKey{body: 2}, v)
	if n, _, _ := c.size(); n != 0 {
		t.Fatalf("closed: %d entries, want 0", n)
	}
}
