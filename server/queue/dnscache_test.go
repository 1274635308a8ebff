package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
)

// countingProxy is a UDP forwarder in front of Knot that counts the
// questions it sees and the client sockets they come from. Names in
// servfail get SERVFAIL from the proxy itself, names in drop get no answer,
// and answers to names in delay leave after that long.
type countingProxy struct {
	addr     string
	upstream string

	mu       sync.Mutex
	queries  map[string]int // "name/TYPE"
	sources  map[string]bool
	servfail map[string]bool
	drop     map[string]bool
	delay    map[string]time.Duration
}

func startCountingProxy(t *testing.T, upstream string) *countingProxy {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	p := &countingProxy{addr: pc.LocalAddr().String(), upstream: upstream,
		queries: map[string]int{}, sources: map[string]bool{},
		servfail: map[string]bool{}, drop: map[string]bool{}, delay: map[string]time.Duration{}}
	go func() {
		for {
			buf := make([]byte, 65535)
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			go p.serve(pc, from, buf[:n])
		}
	}()
	return p
}

func (p *countingProxy) serve(pc net.PacketConn, from net.Addr, pkt []byte) {
	q := new(mdns.Msg)
	if err := q.Unpack(pkt); err != nil || len(q.Question) != 1 {
		return
	}
	name := strings.ToLower(q.Question[0].Name)
	p.mu.Lock()
	p.queries[name+"/"+mdns.TypeToString[q.Question[0].Qtype]]++
	p.sources[from.String()] = true
	servfail, drop, delay := p.servfail[name], p.drop[name], p.delay[name]
	p.mu.Unlock()
	if drop {
		return
	}
	time.Sleep(delay)
	if servfail {
		r := new(mdns.Msg)
		r.SetRcode(q, mdns.RcodeServerFailure)
		out, _ := r.Pack()
		pc.WriteTo(out, from)
		return
	}
	up, err := net.Dial("udp", p.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	up.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := up.Write(pkt); err != nil {
		return
	}
	buf := make([]byte, 65535)
	n, err := up.Read(buf)
	if err != nil {
		return
	}
	pc.WriteTo(buf[:n], from)
}

func (p *countingProxy) count(name string, qtype uint16) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queries[mdns.Fqdn(name)+"/"+mdns.TypeToString[qtype]]
}

func (p *countingProxy) sourceCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sources)
}

// testClock is a clock that tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cacheWorld is one Knot serving example.org with a few records, behind a
// counting proxy.
func cacheWorld(t *testing.T) (*testenv.Knot, *countingProxy) {
	t.Helper()
	knot := testenv.StartKnot(t, "example.org")
	var add []mdns.RR
	for _, s := range []string{
		`short.example.org. 60 IN TXT "short"`,
		`long.example.org. 86400 IN TXT "long"`,
		`t1.example.org. 300 IN TXT "one"`,
		`t2.example.org. 300 IN TXT "two"`,
		`t3.example.org. 300 IN TXT "three"`,
		`mx.example.org. 600 IN A 127.0.0.9`,
		`mx.example.org. 120 IN A 127.0.0.10`,
		`example.org. 300 IN MX 10 mx.example.org.`,
		`slow.example.org. 300 IN TXT "slow"`,
	} {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		add = append(add, rr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := knot.Update(ctx, "example.org", nil, add); err != nil {
		t.Fatal(err)
	}
	return knot, startCountingProxy(t, knot.Addr)
}

// TestDNSCacheTTL: an answer is asked once and then served from the cache
// until the smallest TTL of its RRset (capped at MaxTTL) has passed;
// negative answers are kept for the SOA's negative TTL (RFC 2308: the zone's
// SOA has TTL 3600 and MINIMUM 300, so 300 s).
func TestDNSCacheTTL(t *testing.T) {
	_, proxy := cacheWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := &testClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	d := &DNS{Servers: []string{proxy.addr}, Timeout: 2 * time.Second, now: clock.now}

	lookupTXT := func(name string) func() (string, error) {
		return func() (string, error) {
			txt, err := d.LookupTXT(ctx, name)
			return strings.Join(txt, ","), err
		}
	}
	tests := []struct {
		name   string
		lookup func() (string, error)
		qname  string
		qtype  uint16
		want   string // answer, or "notfound"
		ttl    time.Duration
	}{
		{"positive TTL 300", lookupTXT("t1.example.org"), "t1.example.org", mdns.TypeTXT, "one", 300 * time.Second},
		{"positive TTL 60", lookupTXT("short.example.org"), "short.example.org", mdns.TypeTXT, "short", 60 * time.Second},
		{"TTL 86400 capped at 1h", lookupTXT("long.example.org"), "long.example.org", mdns.TypeTXT, "long", time.Hour},
		{"smallest TTL of the RRset", func() (string, error) {
			ips, err := d.LookupIPAddr(ctx, "mx.example.org")
			return fmt.Sprint(ips), err
		}, "mx.example.org", mdns.TypeA, "[{127.0.0.9 } {127.0.0.10 }]", 120 * time.Second},
		{"NXDOMAIN for the SOA minimum", lookupTXT("nope.example.org"), "nope.example.org", mdns.TypeTXT, "notfound", 300 * time.Second},
		{"NODATA for the SOA minimum", lookupTXT("mx.example.org"), "mx.example.org", mdns.TypeTXT, "notfound", 300 * time.Second},
		{"MX", func() (string, error) {
			mx, err := d.LookupMX(ctx, "Example.ORG")
			if err != nil {
				return "", err
			}
			return strings.ToLower(fmt.Sprintf("%s %d", mx[0].Host, mx[0].Pref)), nil
		}, "example.org", mdns.TypeMX, "mx.example.org. 10", 300 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(when string, wantQueries int) {
				t.Helper()
				got, err := tc.lookup()
				if tc.want == "notfound" {
					var de *net.DNSError
					if !errors.As(err, &de) || !de.IsNotFound {
						t.Fatalf("%s: lookup = %q, %v; want not found", when, got, err)
					}
				} else if err != nil || !strings.Contains(got, tc.want) {
					t.Fatalf("%s: lookup = %q, %v; want %q", when, got, err, tc.want)
				}
				if n := proxy.count(tc.qname, tc.qtype); n != wantQueries {
					t.Errorf("%s: %d queries for %s %s, want %d", when, n, tc.qname, mdns.TypeToString[tc.qtype], wantQueries)
				}
			}
			check("first lookup", 1)
			check("second lookup", 1)
			clock.advance(tc.ttl - time.Second)
			check("just before the TTL", 1)
			clock.advance(2 * time.Second)
			check("after the TTL", 2)
			check("again", 2)
		})
	}
}

// TestDNSCacheTemporaryErrors: SERVFAIL and timeouts are not cached; with
// the cache off, every lookup is a query.
func TestDNSCacheTemporaryErrors(t *testing.T) {
	_, proxy := cacheWorld(t)
	proxy.mu.Lock()
	proxy.servfail["t1.example.org."] = true
	proxy.drop["t2.example.org."] = true
	proxy.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tests := []struct {
		name      string
		qname     string
		cacheSize int
		timeout   bool
	}{
		{"SERVFAIL", "t1.example.org", 0, false},
		{"timeout", "t2.example.org", 0, true},
		{"cache off", "t3.example.org", -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &DNS{Servers: []string{proxy.addr}, Timeout: 200 * time.Millisecond, CacheSize: tc.cacheSize}
			for i := 1; i <= 2; i++ {
				_, err := d.LookupTXT(ctx, tc.qname)
				var de *net.DNSError
				switch {
				case tc.cacheSize < 0:
					if err != nil {
						t.Fatalf("lookup %d = %v, want an answer", i, err)
					}
				case !errors.As(err, &de) || !de.IsTemporary || de.IsTimeout != tc.timeout:
					t.Fatalf("lookup %d = %#v, want a temporary error (timeout %v)", i, err, tc.timeout)
				}
				if n := proxy.count(tc.qname, mdns.TypeTXT); n != i {
					t.Errorf("after lookup %d: %d queries, want %d", i, n, i)
				}
			}
		})
	}
}

// TestDNSCacheConcurrent: identical questions asked at once share one
// query; a waiter whose context ends gets its own error without disturbing
// the others.
func TestDNSCacheConcurrent(t *testing.T) {
	_, proxy := cacheWorld(t)
	proxy.mu.Lock()
	proxy.delay["slow.example.org."] = 300 * time.Millisecond
	proxy.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &DNS{Servers: []string{proxy.addr}, Timeout: 2 * time.Second}

	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	var wg sync.WaitGroup
	errs := make(chan error, 21)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			txt, err := d.LookupTXT(ctx, "slow.example.org")
			if err == nil && (len(txt) != 1 || txt[0] != "slow") {
				err = fmt.Errorf("answer %q, want slow", txt)
			}
			errs <- err
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := d.LookupTXT(short, "slow.example.org"); err == nil {
			errs <- errors.New("lookup under a 50 ms context succeeded, want its deadline")
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := proxy.count("slow.example.org", mdns.TypeTXT); n != 1 {
		t.Errorf("21 concurrent lookups made %d queries, want 1", n)
	}
}

// TestDNSCacheBoundedAndSocketReuse: the cache keeps at most CacheSize
// answers, dropping the least recently used; sequential queries to one
// server go out of one reused UDP socket.
func TestDNSCacheBoundedAndSocketReuse(t *testing.T) {
	_, proxy := cacheWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &DNS{Servers: []string{proxy.addr}, Timeout: 2 * time.Second, CacheSize: 2}
	steps := []struct {
		name string
		want map[string]int // queries so far per name
	}{
		{"t1", map[string]int{"t1": 1}},
		{"t2", map[string]int{"t1": 1, "t2": 1}},
		{"t1", map[string]int{"t1": 1, "t2": 1}}, // cached, now most recent
		{"t3", map[string]int{"t1": 1, "t2": 1, "t3": 1}},
		{"t1", map[string]int{"t1": 1, "t2": 1, "t3": 1}}, // still cached
		{"t2", map[string]int{"t1": 1, "t2": 2, "t3": 1}}, // evicted by t3
	}
	for i, st := range steps {
		if _, err := d.LookupTXT(ctx, st.name+".example.org"); err != nil {
			t.Fatalf("step %d: lookup %s: %v", i, st.name, err)
		}
		for n, want := range st.want {
			if got := proxy.count(n+".example.org", mdns.TypeTXT); got != want {
				t.Errorf("step %d (%s): %d queries for %s, want %d", i, st.name, got, n, want)
			}
		}
	}
	d.mu.Lock()
	size := d.lru.Len()
	d.mu.Unlock()
	if size != 2 {
		t.Errorf("cache holds %d answers, want 2", size)
	}
	if n := proxy.sourceCount(); n != 1 {
		t.Errorf("sequential queries came from %d UDP sockets, want 1", n)
	}
}
