package queue

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Resolver is the DNS the queue needs; *DNS and *net.Resolver implement it.
// A name that does not exist (or has no record of the type) is reported as a
// *net.DNSError with IsNotFound set; a temporary problem with IsTemporary.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// DNS is a stub resolver that sends queries (RFC 1035) with
// github.com/miekg/dns to configured recursive servers, or to an
// authoritative server in tests. Its methods have the shape of
// net.Resolver's, so it serves the queue, SPF (blitiri.com.ar/go/spf's
// DNSResolver), DKIM and DMARC lookups alike.
//
// Answers are cached by (name, type): positive ones for the smallest TTL of
// the answer section (at most MaxTTL), negative ones (NXDOMAIN and NODATA)
// for the negative TTL of the authority section's SOA, min(SOA TTL, SOA
// MINIMUM) (RFC 2308 section 5, at most MaxNegativeTTL); a negative answer
// without SOA, and temporary failures (SERVFAIL, timeouts, refused ports),
// are not cached. Identical questions asked at the same time share one
// query. UDP sockets are kept per server and reused (replies are matched by
// ID, so a late reply to an abandoned query is ignored).
//
// The zero value asks nobody; set Servers (or use NewDNS). A DNS must not be
// copied after first use.
type DNS struct {
	// Servers are "host:port" addresses, tried in order; "tcp://host:port"
	// asks that server over TCP only (RFC 7766), e.g. through a tunnel
	// that carries no UDP.
	Servers []string
	// Timeout per query; default 5s.
	Timeout time.Duration
	// CacheSize bounds the number of cached answers, the least recently
	// used going first; 0 means DefaultCacheSize, a negative value turns
	// the cache off.
	CacheSize int
	// MaxTTL caps how long a positive answer is kept (default 1h);
	// MaxNegativeTTL caps negative answers (default 5 min).
	MaxTTL, MaxNegativeTTL time.Duration

	now func() time.Time // time.Now; tests move the clock

	mu    sync.Mutex
	cache map[cacheKey]*list.Element // of *cacheEntry
	lru   list.List                  // front: most recently used
	group singleflight.Group
	pools map[string]chan *mdns.Conn // idle UDP sockets per server
}

// DefaultCacheSize is the number of answers a DNS keeps when CacheSize is 0.
const DefaultCacheSize = 4096

// udpIdle is how many idle UDP sockets a DNS keeps per server.
const udpIdle = 8

type cacheKey struct {
	name  string // lower-case, fully qualified
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	rrs     []mdns.RR     // nil for a negative answer
	neg     *net.DNSError // the not-found error of a negative answer
	expires time.Time
}

// NewDNS returns a resolver asking servers ("host:port"); with none, the
// nameservers of /etc/resolv.conf, or 127.0.0.1:53 when it names none (as
// the C library does).
func NewDNS(servers ...string) (*DNS, error) {
	if len(servers) == 0 {
		cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("read resolver config: %w", err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			// As the C library does: no nameserver line means the local one.
			servers = []string{"127.0.0.1:53"}
		}
	}
	return &DNS{Servers: servers}, nil
}

func (d *DNS) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// exchange answers name and qtype from the cache or by one query shared
// with the callers asking the same at the same time.
func (d *DNS) exchange(ctx context.Context, name string, qtype uint16) ([]mdns.RR, error) {
	if d.CacheSize < 0 {
		rrs, _, err := d.query(ctx, name, qtype)
		return rrs, err
	}
	key := cacheKey{strings.ToLower(mdns.Fqdn(name)), qtype}
	if rrs, err, ok := d.cached(key, name); ok {
		return rrs, err
	}
	type result struct {
		rrs []mdns.RR
		err error
	}
	// The shared query runs without the first caller's cancellation (each
	// query has its own timeout); every caller waits under its own ctx.
	qctx := context.WithoutCancel(ctx)
	ch := d.group.DoChan(fmt.Sprintf("%s/%d", key.name, qtype), func() (any, error) {
		rrs, ttl, err := d.query(qctx, name, qtype)
		if ttl > 0 {
			d.store(key, rrs, err, ttl)
		}
		return result{rrs, err}, nil
	})
	select {
	case r := <-ch:
		res := r.Val.(result)
		return res.rrs, res.err
	case <-ctx.Done():
		return nil, &net.DNSError{Err: ctx.Err().Error(), Name: name, IsTemporary: true,
			IsTimeout: errors.Is(ctx.Err(), context.DeadlineExceeded)}
	}
}

// cached returns the unexpired answer for key, if any.
func (d *DNS) cached(key cacheKey, name string) ([]mdns.RR, error, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.cache[key]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*cacheEntry)
	if !d.clock().Before(e.expires) {
		d.lru.Remove(el)
		delete(d.cache, key)
		return nil, nil, false
	}
	d.lru.MoveToFront(el)
	if e.neg != nil {
		ne := *e.neg
		ne.Name = name
		return nil, &ne, true
	}
	return e.rrs, nil, true
}

// store keeps an answer (rrs, or a not-found err) for ttl.
func (d *DNS) store(key cacheKey, rrs []mdns.RR, err error, ttl time.Duration) {
	e := &cacheEntry{key: key, rrs: rrs, expires: d.clock().Add(ttl)}
	if err != nil {
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			return
		}
		e.neg = de
	}
	size := d.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cache == nil {
		d.cache = make(map[cacheKey]*list.Element)
	}
	if old, ok := d.cache[key]; ok {
		d.lru.Remove(old)
	}
	d.cache[key] = d.lru.PushFront(e)
	for d.lru.Len() > size {
		last := d.lru.Back()
		d.lru.Remove(last)
		delete(d.cache, last.Value.(*cacheEntry).key)
	}
}

// query asks the servers in turn. ttl > 0 says how long the result (an
// answer or a not-found error) may be cached.
func (d *DNS) query(ctx context.Context, name string, qtype uint16) (out []mdns.RR, ttl time.Duration, err error) {
	qname := mdns.Fqdn(name)
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	maxTTL, maxNeg := d.MaxTTL, d.MaxNegativeTTL
	if maxTTL <= 0 {
		maxTTL = time.Hour
	}
	if maxNeg <= 0 {
		maxNeg = 5 * time.Minute
	}
	derr := &net.DNSError{Name: name}
	for _, srv := range d.Servers {
		m := new(mdns.Msg)
		m.SetQuestion(qname, qtype) // a fresh ID per query
		m.SetEdns0(4096, false)
		r, err := d.ask(ctx, m, srv, timeout)
		if err != nil {
			derr.Err, derr.Server, derr.IsTemporary = err.Error(), serverAddr(srv), true
			var ne net.Error
			derr.IsTimeout = errors.As(err, &ne) && ne.Timeout()
			continue
		}
		srv = serverAddr(srv)
		switch r.Rcode {
		case mdns.RcodeSuccess:
		case mdns.RcodeNameError:
			return nil, negativeTTL(r, maxNeg), &net.DNSError{Err: "no such host", Name: name, Server: srv, IsNotFound: true}
		default:
			derr.Err, derr.Server, derr.IsTemporary = "server misbehaving: "+mdns.RcodeToString[r.Rcode], srv, true
			continue
		}
		var minTTL uint32
		for i, rr := range r.Answer {
			if t := rr.Header().Ttl; i == 0 || t < minTTL {
				minTTL = t
			}
			if rr.Header().Rrtype == qtype {
				out = append(out, rr)
			}
		}
		if len(out) == 0 {
			return nil, negativeTTL(r, maxNeg), &net.DNSError{Err: "no such host", Name: name, Server: srv, IsNotFound: true}
		}
		return out, min(time.Duration(minTTL)*time.Second, maxTTL), nil
	}
	if derr.Err == "" {
		derr.Err = "no DNS server configured"
	}
	return nil, 0, derr
}

// negativeTTL is how long a negative answer may be kept (RFC 2308 section
// 5): the smaller of its SOA's TTL and MINIMUM field, capped; 0 without SOA.
func negativeTTL(r *mdns.Msg, limit time.Duration) time.Duration {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, limit)
		}
	}
	return 0
}

func serverAddr(srv string) string {
	addr, _ := strings.CutPrefix(srv, "tcp://")
	return addr
}

// ask sends m to srv: over a reused UDP socket, then TCP if the answer is
// truncated; over TCP only for a "tcp://" server.
func (d *DNS) ask(ctx context.Context, m *mdns.Msg, srv string, timeout time.Duration) (*mdns.Msg, error) {
	if addr, ok := strings.CutPrefix(srv, "tcp://"); ok {
		c := &mdns.Client{Net: "tcp", Timeout: timeout}
		r, _, err := c.ExchangeContext(ctx, m, addr)
		return r, err
	}
	c := &mdns.Client{Timeout: timeout}
	pool := d.pool(srv)
	var conn *mdns.Conn
	select {
	case conn = <-pool:
	default:
		var err error
		if conn, err = c.DialContext(ctx, srv); err != nil {
			return nil, err
		}
	}
	r, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	select {
	case pool <- conn:
	default:
		conn.Close()
	}
	if r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, srv)
	}
	return r, err
}

func (d *DNS) pool(srv string) chan *mdns.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pools[srv]
	if !ok {
		if d.pools == nil {
			d.pools = make(map[string]chan *mdns.Conn)
		}
		p = make(chan *mdns.Conn, udpIdle)
		d.pools[srv] = p
	}
	return p
}

// LookupMX returns the MX records of name, sorted by preference. A null MX
// (RFC 7505) has Host ".".
func (d *DNS) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := d.exchange(ctx, name, mdns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	sortMX(out)
	return out, nil
}

// LookupIPAddr returns the AAAA and A addresses of host.
func (d *DNS) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IPAddr{{IP: ip}}, nil
	}
	var out []net.IPAddr
	var firstErr error
	for _, t := range []uint16{mdns.TypeAAAA, mdns.TypeA} {
		rrs, err := d.exchange(ctx, host, t)
		if err != nil {
			var de *net.DNSError
			if firstErr == nil || (errors.As(firstErr, &de) && de.IsNotFound) {
				firstErr = err
			}
			continue
		}
		for _, rr := range rrs {
			switch r := rr.(type) {
			case *mdns.AAAA:
				out = append(out, net.IPAddr{IP: r.AAAA})
			case *mdns.A:
				out = append(out, net.IPAddr{IP: r.A})
			}
		}
	}
	if len(out) == 0 {
		return nil, firstErr
	}
	return out, nil
}

// LookupHost returns the addresses of host as strings.
func (d *DNS) LookupHost(ctx context.Context, host string) ([]string, error) {
	ips, err := d.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.IP.String()
	}
	return out, nil
}

// LookupTXT returns the TXT records of name, each one's strings joined.
func (d *DNS) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := d.exchange(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*mdns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupAddr returns the PTR names of an IP address.
func (d *DNS) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := mdns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := d.exchange(ctx, rev, mdns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*mdns.PTR).Ptr)
	}
	return out, nil
}

func sortMX(mx []*net.MX) {
	for i := 1; i < len(mx); i++ {
		for j := i; j > 0 && mx[j].Pref < mx[j-1].Pref; j-- {
			mx[j], mx[j-1] = mx[j-1], mx[j]
		}
	}
}

// notFound reports whether err says that a name or record does not exist.
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
