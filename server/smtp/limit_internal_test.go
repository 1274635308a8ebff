package smtp

import (
	"net"
	"testing"
)

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
func (c addrConn) Close() error         { return nil }

// TestConnLimiterKeys: connections are counted per IPv4 address and per
// IPv6 /64 (IPv4-mapped IPv6 is the IPv4 address), so that the addresses
// of one /64 share one limit.
func TestConnLimiterKeys(t *testing.T) {
	t.Parallel()
	l := newConnLimiter(2)
	acquire := func(ip string) bool {
		_, ok := l.acquire(addrConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1234}})
		return ok
	}
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"2001:db8:1:2::1", true},
		{"2001:db8:1:2::2", true},
		{"2001:db8:1:2:ffff::3", false}, // the same /64: third connection
		{"2001:db8:1:3::1", true},       // another /64
		{"192.0.2.1", true},
		{"::ffff:192.0.2.1", true},
		{"192.0.2.1", false},
		{"192.0.2.2", true},
	} {
		if got := acquire(tc.ip); got != tc.want {
			t.Errorf("connection from %s admitted = %v, want %v", tc.ip, got, tc.want)
		}
	}
	lc, ok := l.acquire(addrConn{remote: &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 1}})
	if !ok {
		t.Fatal("first connection refused")
	}
	lc.Close()
	if len(l.counts) != 4 || l.counts["198.51.100.1"] != 0 {
		t.Errorf("after a close: counts %v", l.counts)
	}
}
