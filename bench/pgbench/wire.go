package pgbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// TurnCounter is a TCP proxy on 127.0.0.1 in front of one server address
// that counts the round trips of every connection through it: a round trip
// begins each time a client sends after the server has sent something
// since the client's previous send (the first send of a connection counts
// too). Bytes are copied unchanged.
type TurnCounter struct {
	ln     net.Listener
	target string
	turns  atomic.Int64
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewTurnCounter listens on a free loopback port and forwards every
// connection to target ("host:port").
func NewTurnCounter(target string) (*TurnCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("round-trip counter: listen: %w", err)
	}
	t := &TurnCounter{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// Addr is the proxy's "127.0.0.1:PORT".
func (t *TurnCounter) Addr() string { return t.ln.Addr().String() }

// Turns is the number of round trips counted so far, over all connections.
func (t *TurnCounter) Turns() int64 { return t.turns.Load() }

// Close stops listening, cuts every proxied connection and waits for the
// copiers to end.
func (t *TurnCounter) Close() error {
	err := t.ln.Close()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}

func (t *TurnCounter) track(c net.Conn, add bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !add {
		delete(t.conns, c)
		return true
	}
	if t.conns == nil {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *TurnCounter) accept() {
	defer t.wg.Done()
	for {
		client, err := t.ln.Accept()
		if err != nil {
			t.mu.Lock()
			t.conns = nil // closed: refuse to track more
			t.mu.Unlock()
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serve(client)
		}()
	}
}

func (t *TurnCounter) serve(client net.Conn) {
	defer client.Close()
	var d net.Dialer
	server, err := d.DialContext(context.Background(), "tcp", t.target)
	if err != nil {
		return
	}
	defer server.Close()
	if !t.track(client, true) || !t.track(server, true) {
		return
	}
	defer t.track(client, false)
	defer t.track(server, false)
	var serverSpoke atomic.Bool
	serverSpoke.Store(true) // the client's first message begins a round trip
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyNotify(client, server, func() { serverSpoke.Store(true) })
		client.Close()
	}()
	copyNotify(server, client, func() {
		if serverSpoke.Swap(false) {
			t.turns.Add(1)
		}
	})
	server.Close()
	<-done
}

// copyNotify copies src to dst, calling seen before writing each chunk
// read (so that a reply cannot overtake the count of its request).
func copyNotify(dst io.Writer, src io.Reader, seen func()) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			seen()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // io.EOF or a cut connection: either way, done
			return
		}
	}
}
