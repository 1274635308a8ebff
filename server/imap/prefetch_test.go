package imap_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

// batchingStore is an embedded store that also reads bodies in batches
// (store.BodyBatcher), as pgstore does: whole in memory, but for every
// skip-th message, left to OpenBody. It counts the batches read and the
// bodies of batches not yet closed.
type batchingStore struct {
	*store.Store
	skip    int
	calls   atomic.Int64
	open    atomic.Int64 // bodies returned by OpenBodies, not closed
	maxOpen atomic.Int64
	delay   time.Duration // of each OpenBodies, as a round trip
}

func (b *batchingStore) OpenBodies(ctx context.Context, msgs []store.Message) ([]store.Body, error) {
	b.calls.Add(1)
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := make([]store.Body, len(msgs))
	for i, m := range msgs {
		if b.skip > 0 && int(m.UID)%b.skip == 0 {
			continue
		}
		f, err := b.Store.OpenBody(ctx, m)
		if err != nil {
			continue
		}
		data, err := io.ReadAll(io.NewSectionReader(f, 0, m.Size))
		f.Close()
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out[i] = &countedBody{Reader: bytes.NewReader(data), b: b}
		if n := b.open.Add(1); n > b.maxOpen.Load() {
			b.maxOpen.Store(n) // only the prefetch goroutine opens
		}
	}
	return out, nil
}

func closeAll(bodies []store.Body) {
	for _, b := range bodies {
		if b != nil {
			b.Close()
		}
	}
}

type countedBody struct {
	*bytes.Reader
	b    *batchingStore
	once sync.Once
}

func (c *countedBody) Close() error {
	c.once.Do(func() { c.b.open.Add(-1) })
	return nil
}

// serveStore runs an IMAP server on st and returns its address.
func serveStore(t *testing.T, st store.Backend) string {
	t.Helper()
	cert, _ := selfSigned(t)
	srv := imap.New(st, &passwords{users: map[string]string{alice: alicePW}}, imap.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	return ln.Addr().String()
}

// rawAnswer sends the commands on a new connection to addr after LOGIN
// and SELECT and returns what the server answered to them, up to the
// tagged response of the last.
func rawAnswer(t *testing.T, addr string, cmds ...string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	readTo := func(tag string) []byte {
		var out []byte
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				t.Fatalf("reading the answer to %s: %v", tag, err)
			}
			out = append(out, line...)
			if bytes.HasPrefix(line, []byte(tag+" ")) {
				return out
			}
			if l := bytes.TrimRight(line, "\r\n"); bytes.HasSuffix(l, []byte("}")) {
				var n int
				if at := bytes.LastIndexByte(l, '{'); at >= 0 {
					fmt.Sscanf(string(l[at+1:len(l)-1]), "%d", &n)
				}
				lit := make([]byte, n)
				if _, err := io.ReadFull(br, lit); err != nil {
					t.Fatal(err)
				}
				out = append(out, lit...)
			}
		}
	}
	readTo("*")
	fmt.Fprintf(c, "L LOGIN %s %s\r\nS SELECT INBOX\r\n", alice, alicePW)
	readTo("L")
	readTo("S")
	var out []byte
	for i, cmd := range cmds {
		tag := fmt.Sprintf("F%d", i)
		fmt.Fprintf(c, "%s %s\r\n", tag, cmd)
		out = append(out, readTo(tag)...)
	}
	return out
}

// TestFetchPrefetchSameBytes: on a backend that reads bodies in batches
// (pgstore), FETCH answers byte for byte what it answers on the embedded
// store, over messages of every size (some larger than a batch's
// messages, some left to OpenBody by the batch), in ranges that start and
// end anywhere, with body sections, BODYSTRUCTURE and BINARY.
func TestFetchPrefetchSameBytes(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	const n = 700
	for i := range n {
		size := rng.IntN(20 << 10)
		switch rng.IntN(100) {
		case 0:
			size = 1<<20 + rng.IntN(64<<10) // larger than a batch takes
		case 1, 2:
			size = 300<<10 + rng.IntN(300<<10)
		}
		body := fmt.Sprintf("Subject: message %d\r\nContent-Type: text/plain\r\n\r\n", i)
		line := fmt.Sprintf("line of message %d, seed %d\r\n", i, seed)
		body += strings.Repeat(line, size/len(line)+1)
		if _, err := st.Deliver(ctx, alice, "INBOX", strings.NewReader(body), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	batching := &batchingStore{Store: st, skip: 7}
	plainAddr, batchAddr := serveStore(t, st), serveStore(t, batching)
	lo := 1 + rng.IntN(50)
	mid := lo + rng.IntN(400)
	cmds := []string{
		"FETCH 1:* (BODY.PEEK[])",
		fmt.Sprintf("FETCH %d:%d (UID RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT]<10.200>)", lo, mid),
		fmt.Sprintf("UID FETCH %d,%d:* (BODYSTRUCTURE BINARY.PEEK[1] BODY.PEEK[HEADER])", lo, mid),
		"FETCH 3,5,9,200:260,699 (BODY.PEEK[] FLAGS)",
		"FETCH 1:* (BODY[])", // sets \Seen: FLAGS in the answer
	}
	rawAnswer(t, plainAddr) // takes \Recent, which would differ
	want := rawAnswer(t, plainAddr, cmds...)
	// The embedded store took the \Seen of the last command: take it back
	// for the second server, which answers the same store.
	if _, err := st.SetFlags(ctx, alice, "INBOX", allUIDs(t, st), store.FlagsRemove, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	got := rawAnswer(t, batchAddr, cmds...)
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("seed %d: the answers differ at byte %d of %d and %d: got %q, want %q", seed, i, len(got), len(want),
			got[max(0, i-80):min(len(got), i+80)], want[max(0, i-80):min(len(want), i+80)])
	}
	if batching.calls.Load() == 0 {
		t.Fatalf("seed %d: the bodies were not read in batches", seed)
	}
	waitClosed(t, batching, seed)
}

func allUIDs(t *testing.T, st *store.Store) []uint32 {
	t.Helper()
	_, msgs, err := st.Messages(context.Background(), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	uids := make([]uint32, len(msgs))
	for i, m := range msgs {
		uids[i] = m.UID
	}
	return uids
}

// waitClosed fails unless every body read in batches is closed within
// five seconds.
func waitClosed(t *testing.T, b *batchingStore, seed uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: %d bodies read ahead are still open after the FETCH", seed, b.open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFetchPrefetchBounded: a FETCH on a backend that reads bodies in
// batches reads at most one batch ahead of what it writes: with a client
// that reads nothing, it stops reading bodies once the socket is full,
// holding at most two batches; when the client hangs up, the bodies read
// ahead are closed and no more are read.
func TestFetchPrefetchBounded(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	line := strings.Repeat("0123456789", 7) + "\r\n"
	body := "Subject: bulk\r\n\r\n" + strings.Repeat(line, (16<<10)/len(line))
	for range n {
		if _, err := st.Deliver(ctx, alice, "INBOX", strings.NewReader(body), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	batching := &batchingStore{Store: st, delay: time.Millisecond}
	addr := serveStore(t, batching)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "L LOGIN %s %s\r\nS SELECT INBOX\r\n", alice, alicePW)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "S ") {
			break
		}
	}
	// 48 MB of answer: far more than the sockets hold.
	fmt.Fprintf(c, "F FETCH 1:* (BODY.PEEK[])\r\n")
	// Wait until the server stops reading bodies: it waits on the client.
	last := int64(-1)
	for stable := 0; stable < 5; {
		time.Sleep(100 * time.Millisecond)
		if now := batching.calls.Load(); now == last {
			stable++
		} else {
			last, stable = now, 0
		}
	}
	bodies := int64(n) * int64(len(body))
	if limit := 2 * int64(imap.PrefetchBodies); batching.maxOpen.Load() > limit {
		t.Errorf("%d bodies read ahead and open at once, want at most two batches (%d)", batching.maxOpen.Load(), limit)
	}
	if read := last * int64(imap.PrefetchBytes); read >= bodies {
		t.Errorf("%d batches read with a client that reads nothing: the whole mailbox", last)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for batching.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bodies read ahead still open after the client hung up", batching.open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	after := batching.calls.Load()
	time.Sleep(200 * time.Millisecond)
	if more := batching.calls.Load(); more != after {
		t.Errorf("%d more batches read after the client hung up", more-after)
	}
}
