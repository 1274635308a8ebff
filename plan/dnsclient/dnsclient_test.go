package dnsclient_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/plan/dnsclient"
)

// serve answers on a UDP and a TCP listener of one port with h, until the
// test ends; it returns host:port.
func serve(t *testing.T, h mdns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		t.Skipf("TCP port %s taken: %v", addr, err)
	}
	for _, s := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return addr
}

// silent is a UDP server that never answers; it returns host:port and a
// channel that receives once per query.
func silent(t *testing.T) (string, chan struct{}) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan struct{}, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			got <- struct{}{}
		}
	}()
	return pc.LocalAddr().String(), got
}

func mxAnswer(w mdns.ResponseWriter, q *mdns.Msg, truncateUDP bool) {
	r := new(mdns.Msg)
	r.SetReply(q)
	if truncateUDP && w.LocalAddr().Network() == "udp" {
		r.Truncated = true
		w.WriteMsg(r)
		return
	}
	rr, _ := mdns.NewRR(q.Question[0].Name + " 300 IN MX 10 mx1.example.org.")
	r.Answer = append(r.Answer, rr)
	if !q.RecursionDesired {
		r.Authoritative = true
	}
	w.WriteMsg(r)
}

func TestQuery(t *testing.T) {
	addr := serve(t, func(w mdns.ResponseWriter, q *mdns.Msg) { mxAnswer(w, q, false) })
	for _, recurse := range []bool{true, false} {
		c := &dnsclient.Client{Servers: []string{addr}, Recurse: recurse}
		r, err := c.Query(context.Background(), "example.org", mdns.TypeMX)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*mdns.MX).Mx != "mx1.example.org." || r.Authoritative == recurse {
			t.Errorf("Recurse %v: answer %v, authoritative %v", recurse, r.Answer, r.Authoritative)
		}
	}
}

// TestTruncatedRetriesOverTCP: a truncated UDP answer is asked again over
// TCP.
func TestTruncatedRetriesOverTCP(t *testing.T) {
	addr := serve(t, func(w mdns.ResponseWriter, q *mdns.Msg) { mxAnswer(w, q, true) })
	r, err := (&dnsclient.Client{Servers: []string{addr}}).Query(context.Background(), "example.org", mdns.TypeMX)
	if err != nil || r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("Query = %v, %v; want the full answer over TCP", r, err)
	}
}

// TestFailover: a SERVFAIL is an error and the next server is
// asked; a server that does not answer within Timeout too.
func TestFailover(t *testing.T) {
	servfail := serve(t, func(w mdns.ResponseWriter, q *mdns.Msg) {
		r := new(mdns.Msg)
		r.SetRcode(q, mdns.RcodeServerFailure)
		w.WriteMsg(r)
	})
	quiet, _ := silent(t)
	good := serve(t, func(w mdns.ResponseWriter, q *mdns.Msg) { mxAnswer(w, q, false) })
	c := &dnsclient.Client{Servers: []string{servfail, quiet, good}, Timeout: 300 * time.Millisecond}
	if r, err := c.Query(context.Background(), "example.org", mdns.TypeMX); err != nil || len(r.Answer) != 1 {
		t.Fatalf("Query = %v, %v; want the third server's answer", r, err)
	}
	c.Servers = []string{servfail, quiet}
	_, err := c.Query(context.Background(), "example.org", mdns.TypeMX)
	if err == nil || !strings.Contains(err.Error(), "query example.org MX at "+servfail+": rcode SERVFAIL") {
		t.Errorf("Query = %v, want the SERVFAIL named", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Query = %v, want an I/O timeout of the silent server, not the caller's deadline", err)
	}
}

// TestCancel: a cancel interrupts a query in flight to a server that
// never answers, long before the query's timeout.
func TestCancel(t *testing.T) {
	quiet, got := silent(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := (&dnsclient.Client{Servers: []string{quiet, quiet}, Timeout: 30 * time.Second}).Query(ctx, "example.org", mdns.TypeMX)
		done <- err
	}()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no query arrived")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Query = %v, want context.Canceled", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Query returned %v after the cancel", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Query did not return within 10s of the cancel (its timeout is 30s)")
	}
	if len(got) != 0 {
		t.Error("the second server was asked after the cancel")
	}
}

func TestNoServer(t *testing.T) {
	if _, err := (&dnsclient.Client{}).Query(context.Background(), "example.org", mdns.TypeMX); err == nil {
		t.Error("Query without servers: no error")
	}
}
