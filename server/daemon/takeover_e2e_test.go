package daemon_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
)

// TestNodeKilledQueueTakenOver (issue 20): node A of a shared store takes
// a submitted message to send it through the relay; the relay answers
// nothing while A is SIGKILLed in the middle of the attempt. Node B, started
// after A had taken the message, sends it once A's lease (store.queue_lease,
// 3 s here) expired, without waiting for the scheduler's next poll: the
// relay receives it exactly once, and B's queue is empty afterwards.
func TestNodeKilledQueueTakenOver(t *testing.T) {
	relay := newHoldingRelay(t)
	urlFile, _ := pgDatabase(t)
	edit := func(c *config.Config) {
		c.Store.QueueLease = config.Duration(3 * time.Second)
		c.Relay = &config.Relay{Address: relay.addr, Domains: []string{"elsewhere.test"}, CAFile: relay.caFile}
	}
	a := startNodeWith(t, "a", urlFile, edit)
	out, err := swaks(t, "--server", a.addr("submission"), "--tls", "--auth", "PLAIN",
		"--auth-user", "alice@example.test", "--auth-password", "alice-pw",
		"--from", "alice@example.test", "--to", "carol@elsewhere.test",
		"--header", "Subject: taken over", "--body", "sent by whichever node is alive")
	if err != nil {
		t.Fatalf("submit on A: %v\n%s", err, out)
	}
	select {
	case <-relay.held:
	case <-time.After(30 * time.Second):
		t.Fatal("node A did not connect to the relay within 30 s")
	}
	b := startNodeWith(t, "b", urlFile, edit)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.wait(10 * time.Second)
	killed := time.Now()
	relay.serve()

	select {
	case got := <-relay.received:
		if !strings.Contains(got, "Subject: taken over") {
			t.Errorf("the relay received %q, want the submitted message", got)
		}
		t.Logf("sent by node B %v after node A was killed", time.Since(killed).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		// A's lease is 3 s; the scheduler's poll (30 s) must not be what
		// hands the message over.
		t.Fatal("the message of the killed node A was not sent by node B within 20 s (its lease is 3 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs, err := daemon.QueueList(ctx, b.socket)
		if err != nil {
			t.Fatalf("queue list on B: %v", err)
		}
		if len(msgs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's queue still holds %+v after the delivery", msgs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case got := <-relay.received:
		t.Errorf("the relay received the message a second time: %q", got)
	case <-time.After(4 * time.Second): // longer than a lease
	}
	b.signal(syscall.SIGTERM)
	if err := b.wait(40 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// holdingRelay is an SMTP relay (go-smtp, STARTTLS with a test CA) that
// first holds every connection without a greeting, then, once serve was
// called, answers and reports each message received.
type holdingRelay struct {
	addr, caFile string
	held         chan struct{} // closed at the first held connection
	received     chan string

	mu      sync.Mutex
	serving bool
	conns   chan net.Conn
	holds   []net.Conn
}

func newHoldingRelay(t *testing.T) *holdingRelay {
	t.Helper()
	ca := testenv.NewCA(t)
	leaf := ca.Leaf(t, "127.0.0.1")
	caFile, _, _ := ca.WriteFiles(t, t.TempDir(), leaf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &holdingRelay{addr: ln.Addr().String(), caFile: caFile, held: make(chan struct{}),
		received: make(chan string, 10), conns: make(chan net.Conn)}
	srv := smtp.NewServer(&relayBackend{r: r})
	srv.Domain = "relay.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf}}
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	cl := &chanListener{conns: r.conns, addr: ln.Addr(), done: make(chan struct{})}
	go func() { _ = srv.Serve(cl) }()
	go func() {
		var once sync.Once
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			serving := r.serving
			if !serving {
				r.holds = append(r.holds, c)
			}
			r.mu.Unlock()
			if serving {
				select {
				case r.conns <- c:
				case <-cl.done:
					c.Close()
					return
				}
				continue
			}
			once.Do(func() { close(r.held) })
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		r.mu.Lock()
		for _, c := range r.holds {
			c.Close()
		}
		r.mu.Unlock()
	})
	return r
}

// serve makes the relay answer the connections made from now on.
func (r *holdingRelay) serve() {
	r.mu.Lock()
	r.serving = true
	r.mu.Unlock()
}

// chanListener hands go-smtp the connections the relay lets through.
type chanListener struct {
	conns chan net.Conn
	addr  net.Addr
	once  sync.Once
	done  chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

type relayBackend struct{ r *holdingRelay }

func (b *relayBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &relaySession{r: b.r}, nil
}

type relaySession struct{ r *holdingRelay }

func (s *relaySession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *relaySession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *relaySession) Reset()                               {}
func (s *relaySession) Logout() error                        { return nil }

func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.received <- string(b)
	return nil
}
