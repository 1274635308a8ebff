package smtp

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mailctl/mailctl/server/auth"
)

// connLimiter counts open connections per client address (auth.ClientKey:
// an IPv4 address or an IPv6 /64, since one customer gets a /64 and could
// otherwise open a connection from each of its addresses) and remembers
// them so that Shutdown can close the idle ones.
type connLimiter struct {
	max int

	mu     sync.Mutex
	counts map[string]int
	conns  map[*limitConn]struct{}
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: max, counts: map[string]int{}, conns: map[*limitConn]struct{}{}}
}

func (l *connLimiter) acquire(c net.Conn) (*limitConn, bool) {
	ip := auth.ClientKey(c.RemoteAddr())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[ip] >= l.max {
		return nil, false
	}
	l.counts[ip]++
	lc := &limitConn{Conn: c, ip: ip, l: l}
	l.conns[lc] = struct{}{}
	return lc, true
}

func (l *connLimiter) release(lc *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[lc.ip]--; l.counts[lc.ip] <= 0 {
		delete(l.counts, lc.ip)
	}
	delete(l.conns, lc)
}

// closeExcept closes every connection whose remote address is not in keep.
func (l *connLimiter) closeExcept(keep map[string]bool) {
	l.mu.Lock()
	var victims []*limitConn
	for c := range l.conns {
		if !keep[c.RemoteAddr().String()] {
			victims = append(victims, c)
		}
	}
	l.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

type limitConn struct {
	net.Conn
	ip   string
	l    *connLimiter
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// limitListener refuses connections beyond the per-IP limit: with a 421
// reply (RFC 5321 section 3.8), or silently when the service speaks TLS
// first.
type limitListener struct {
	net.Listener
	limiter  *connLimiter
	log      *slog.Logger
	hostname string
	silent   bool
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc, ok := l.limiter.acquire(c); ok {
			return lc, nil
		}
		l.log.Warn("connection refused: too many from this address", "ip", hostOf(c.RemoteAddr()), "max", l.limiter.max)
		go l.refuse(c)
	}
}

func (l *limitListener) refuse(c net.Conn) {
	defer c.Close()
	if l.silent {
		return
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("421 4.7.0 " + l.hostname + " Too many connections from your address, try later\r\n"))
}
