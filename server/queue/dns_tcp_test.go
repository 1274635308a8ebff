package queue

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
)

// TestDNSOverTCPOnly: a "tcp://" server is asked over TCP only, so a
// resolver reached through a TCP tunnel (an SSH port forward) works,
// where the same address over UDP does not answer.
func TestDNSOverTCPOnly(t *testing.T) {
	knot := testenv.StartKnot(t, "example.org")
	// A TCP-only forwarder to Knot, like `ssh -R`: nothing listens on UDP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Forward(t, ln, knot.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	d := &DNS{Servers: []string{"tcp://" + ln.Addr().String()}, Timeout: 5 * time.Second}
	addrs, err := d.LookupIPAddr(ctx, "ns1.example.org")
	if err != nil || len(addrs) != 1 || addrs[0].IP.String() != "127.0.0.1" {
		t.Fatalf("lookup over tcp:// = %v, %v; want 127.0.0.1", addrs, err)
	}
	udp := &DNS{Servers: []string{ln.Addr().String()}, Timeout: time.Second}
	if _, err := udp.LookupIPAddr(ctx, "ns1.example.org"); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("lookup over UDP of a TCP-only address = %v, want an error naming the server", err)
	}
}
