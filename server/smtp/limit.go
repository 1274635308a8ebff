package smtp

import (
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
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

// limitConn is every connection the server accepts (beneath TLS). Besides
// releasing its slot on Close, it makes a read time-out final. go-smtp
// reads commands with bufio.Reader.ReadLine, which returns the part of a
// line read before the deadline as if it were whole (keeping the error for
// the next call), acts on it, then sets a new deadline and reads on. So
// once a read has timed out:
//   - every later Read and SetReadDeadline fails, and go-smtp closes the
//     connection at its next read, with 421 4.4.2;
//   - the session refuses whatever a cut line asked (session.timedOut);
//   - if a line was cut (the last byte read was not LF), the replies go-smtp
//     writes to it are discarded, until the failing SetReadDeadline that
//     precedes the 421; under TLS, where bytes here are records, every
//     later write is discarded and the client sees the connection close.
type limitConn struct {
	net.Conn
	ip   string
	l    *connLimiter
	once sync.Once

	timedOut atomic.Bool
	muted    atomic.Bool
	tls      atomic.Bool // TLS runs over this connection
	// midLine: the last byte read was not LF (plaintext only; reads are
	// from one goroutine at a time).
	midLine bool
	// data, while a message body is read, replaces go-smtp's deadline.
	data atomic.Pointer[dataDeadline]
}

// dataDeadline bounds the time a DATA (or BDAT) body may take: each read
// must come within idle of the previous one, and the whole body within
// total, or longer for a large one as long as it arrived at minRate bytes
// per second on average. A client trickling a byte at a time is dropped
// after total. It is applied to each read of the connection, since
// go-smtp's DATA reader waits for a full buffer within one Read.
type dataDeadline struct {
	idle, total time.Duration
	minRate     int64
	start       time.Time
	n           atomic.Int64
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if d := c.data.Load(); d != nil {
		now := time.Now()
		end := d.start.Add(max(d.total, time.Duration(d.n.Load()/d.minRate)*time.Second))
		deadline := now.Add(d.idle)
		if end.Before(deadline) {
			deadline = end
		}
		c.Conn.SetReadDeadline(deadline)
	}
	n, err := c.Conn.Read(p)
	if d := c.data.Load(); d != nil {
		d.n.Add(int64(n))
	}
	if n > 0 {
		c.midLine = p[n-1] != '\n'
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		if c.tls.Load() || c.midLine {
			c.muted.Store(true)
		}
		c.timedOut.Store(true)
	}
	return n, err
}

func (c *limitConn) Write(p []byte) (int, error) {
	if c.muted.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *limitConn) SetReadDeadline(t time.Time) error {
	if c.timedOut.Load() {
		if !c.tls.Load() {
			c.muted.Store(false) // for go-smtp's 421
		}
		return os.ErrDeadlineExceeded
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitConn) SetDeadline(t time.Time) error {
	if c.timedOut.Load() {
		return os.ErrDeadlineExceeded
	}
	return c.Conn.SetDeadline(t)
}

// limitConnOf returns the limitConn under c (a limitConn or TLS over one).
func limitConnOf(c net.Conn) *limitConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*limitConn)
	return lc
}

// markTLS records that c carries TLS (c: a limitConn or TLS over one).
func markTLS(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		if lc, ok := tc.NetConn().(*limitConn); ok {
			lc.tls.Store(true)
		}
	}
}

// connTimedOut reports whether a read on c (a limitConn, or TLS over one)
// has timed out.
func connTimedOut(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitConn)
	return ok && lc.timedOut.Load()
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
			if l.silent {
				lc.tls.Store(true)
			}
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
