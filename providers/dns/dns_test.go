package dns_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
	_ "github.com/mailctl/mailctl/providers/dns/zonefile"
)

func TestFindZone(t *testing.T) {
	t.Parallel()
	zones := []string{"example.org", "sub.example.org.", "example.net", "ample.org"}
	for _, tc := range []struct{ domain, want string }{
		{"example.org", "example.org"},
		{"Mail.Example.org.", "example.org"},
		{"a.sub.example.org", "sub.example.org."},
		{"sub.example.org", "sub.example.org."},
		{"xsub.example.org", "example.org"},
		{"example.com", ""},
		{"org", ""},
	} {
		if got := dns.FindZone(tc.domain, zones); got != tc.want {
			t.Errorf("FindZone(%q) = %q, want %q", tc.domain, got, tc.want)
		}
	}
}

// TestZoneIndexScales: finding the zone of each of 20 000 domains in a
// list of 20 000 zones looks up each domain's labels, not the whole list
// (which took N x N comparisons: seconds at 5000 domains).
func TestZoneIndexScales(t *testing.T) {
	t.Parallel()
	const n = 20000
	zones := make([]string, n)
	for i := range zones {
		zones[i] = fmt.Sprintf("d%d.example.", i)
	}
	x := dns.NewZoneIndex(zones)
	start := time.Now()
	for i := range n {
		if got, want := x.Find(fmt.Sprintf("mail.D%d.example", i)), zones[i]; got != want {
			t.Fatalf("Find(mail.D%d.example) = %q, want %q", i, got, want)
		}
	}
	// N x N string comparisons take minutes; label lookups milliseconds.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("%d look-ups took %v", n, d)
	}
	if got := x.Find("example"); got != "" {
		t.Errorf("Find(example) = %q, want none", got)
	}
}

func TestPlainTXT(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 300)
	for _, tc := range []struct{ in, want string }{
		{`v=spf1 -all`, `v=spf1 -all`},
		{`"v=spf1 -all"`, `v=spf1 -all`},
		{`"abc" "def"`, `abcdef`},
		{`"a\"b\\c" "\065"`, `a"b\cA`},
		{`"unterminated`, `"unterminated`},
		{dns.QuoteTXT(long), long},
		{dns.QuoteTXT(`x"y\z`), `x"y\z`},
	} {
		if got := dns.PlainTXT(tc.in); got != tc.want {
			t.Errorf("PlainTXT(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if parts := dns.SplitTXT(long); len(parts) != 2 || len(parts[0]) != 255 {
		t.Errorf("SplitTXT(300 bytes) = %d parts, want 255 + 45", len(parts))
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want libdns.RR }{
		{libdns.RR{Name: "MX1.example.org.", Type: "a", Data: "192.0.2.1", TTL: 3600 * time.Second},
			libdns.RR{Name: "mx1", Type: "A", Data: "192.0.2.1", TTL: time.Hour}},
		{libdns.RR{Name: "", Type: "MX", Data: "10 mx1", TTL: time.Hour},
			libdns.RR{Name: "@", Type: "MX", Data: "10 mx1.example.org.", TTL: time.Hour}},
		{libdns.RR{Name: "@", Type: "SPF", Data: `v=spf1 -all`, TTL: time.Hour},
			libdns.RR{Name: "@", Type: "TXT", Data: "v=spf1 -all", TTL: time.Hour}},
		{libdns.RR{Name: "@", Type: "TXT", Data: `"quoted" plain `, TTL: time.Hour},
			libdns.RR{Name: "@", Type: "TXT", Data: `"quoted" plain `, TTL: time.Hour}},
		{libdns.RR{Name: "_imaps._tcp", Type: "SRV", Data: "0 1 993 mx1.example.org.", TTL: time.Hour},
			libdns.RR{Name: "_imaps._tcp", Type: "SRV", Data: "0 1 993 mx1.example.org.", TTL: time.Hour}},
		{libdns.RR{Name: "x", Type: "AAAA", Data: "2001:DB8::0010", TTL: time.Hour},
			libdns.RR{Name: "x", Type: "AAAA", Data: "2001:db8::10", TTL: time.Hour}},
	} {
		if got := dns.Canonical(tc.in, "example.org"); got != tc.want {
			t.Errorf("Canonical(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	k, ok := dns.Lookup("zonefile")
	if !ok || !k.Capabilities.DNS {
		t.Fatalf("Lookup(zonefile) = %+v, %v", k, ok)
	}
	found := false
	for _, n := range dns.Kinds() {
		found = found || n == "zonefile"
	}
	if !found {
		t.Fatalf("Kinds() = %v, want zonefile in it", dns.Kinds())
	}
	if _, err := dns.New("nope", dns.Config{}); !errors.Is(err, dns.ErrUnknownKind) {
		t.Fatalf("New(nope) = %v, want ErrUnknownKind", err)
	}
	_, err := dns.New("zonefile", dns.Config{Attrs: map[string]string{"dir": "x", "colour": "red"}})
	if !errors.Is(err, dns.ErrConfig) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("New with unknown attribute = %v, want ErrConfig naming it", err)
	}
}

func TestHTTPClientRetries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := calls.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		switch n {
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.Write(body)
		}
	}))
	defer srv.Close()
	c := dns.NewHTTPClient(dns.HTTPOptions{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	req, _ := http.NewRequestWithContext(context.Background(), "PUT", srv.URL, strings.NewReader("payload"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "payload" || calls.Load() != 3 {
		t.Fatalf("got %d %q after %d calls, want 200 payload after 3", resp.StatusCode, body, calls.Load())
	}

	// Gives up after Attempts and returns the last answer.
	calls.Store(0)
	down.Store(true)
	resp, err = c.Do(mustReq(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || calls.Load() != 4 {
		t.Fatalf("got %d after %d calls, want 503 after 4", resp.StatusCode, calls.Load())
	}
}

func mustReq(t *testing.T, url string) *http.Request {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestAPIErrorMessages(t *testing.T) {
	t.Parallel()
	e := &dns.APIError{Provider: "cloudflare", Op: "list records of zone example.org", Status: 403, Credential: "api_token", Permission: "Zone.DNS:Read"}
	if !errors.Is(e, dns.ErrAuth) || !strings.Contains(e.Error(), "api_token lacks a permission") || !strings.Contains(e.Error(), "Zone.DNS:Read") {
		t.Fatalf("APIError 403 = %q", e)
	}
}

func TestCapabilitiesCheck(t *testing.T) {
	t.Parallel()
	caps := dns.Capabilities{DNS: true, MinTTL: time.Minute}
	for _, tc := range []struct {
		rr libdns.RR
		ok bool
	}{
		{libdns.RR{Name: "@", Type: "MX", Data: "10 mx.example.org."}, true},
		{libdns.RR{Name: "_imaps._tcp", Type: "SRV", Data: "0 1 993 mx.example.org."}, false},
		{libdns.RR{Name: "@", Type: "CNAME", Data: "x.example.net."}, false},
		{libdns.RR{Name: "www", Type: "CNAME", Data: "x.example.net."}, true},
		{libdns.RR{Name: "@", Type: "NS", Data: "ns1.example.net."}, false},
	} {
		if err := caps.Check(tc.rr); (err == nil) != tc.ok || (err != nil && !errors.Is(err, dns.ErrUnsupported)) {
			t.Errorf("Check(%v) = %v, want ok=%v", tc.rr, err, tc.ok)
		}
	}
	if got := caps.RaiseTTL(libdns.RR{TTL: time.Second}).TTL; got != time.Minute {
		t.Errorf("RaiseTTL(1s) = %v, want 1m", got)
	}
}

// TestHTTPClientRetriesOnlyIdempotent: a POST answered 5xx or failing in
// transport may have been acted on, so it is not sent again (an OVH record
// create whose answer was lost would make a duplicate); one refused with
// 429, or marked Idempotent, is.
func TestHTTPClientRetriesOnlyIdempotent(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(int(status.Load()))
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	c := dns.NewHTTPClient(dns.HTTPOptions{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	for _, tc := range []struct {
		status     int
		idempotent bool
		wantCalls  int32
		wantStatus int
	}{
		{http.StatusBadGateway, false, 1, http.StatusBadGateway},
		{http.StatusInternalServerError, false, 1, http.StatusInternalServerError},
		{http.StatusTooManyRequests, false, 2, http.StatusOK},
		{http.StatusBadGateway, true, 2, http.StatusOK},
	} {
		calls.Store(0)
		status.Store(int32(tc.status))
		ctx := context.Background()
		if tc.idempotent {
			ctx = dns.Idempotent(ctx)
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader("create"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || calls.Load() != tc.wantCalls {
			t.Errorf("POST first answered %d (idempotent %v): got %d after %d calls, want %d after %d",
				tc.status, tc.idempotent, resp.StatusCode, calls.Load(), tc.wantStatus, tc.wantCalls)
		}
	}
}

// TestHTTPClientTimeout: an endpoint that accepts the connection and never
// answers fails the call within the whole-request timeout, with an error
// saying so, instead of hanging.
func TestHTTPClientTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // accepted, never answered
		}
	}()
	c := dns.NewHTTPClient(dns.HTTPOptions{Timeout: time.Second, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	start := time.Now()
	_, err = c.Get("http://" + ln.Addr().String() + "/zones")
	elapsed := time.Since(start)
	var te *dns.TimeoutError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "no answer within 1s") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GET of a silent endpoint = %v, want a TimeoutError", err)
	}
	if te.Tries < 2 {
		t.Errorf("tries = %d, want the hung GET tried again within the timeout", te.Tries)
	}
	if elapsed > 3*time.Second {
		t.Errorf("took %v, want about the 1s timeout", elapsed)
	}

	// A cancelled context ends the call at once, and is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/zones", nil)
	start = time.Now()
	_, err = c.Do(req)
	if !errors.Is(err, context.Canceled) || errors.As(err, &te) || time.Since(start) > 900*time.Millisecond {
		t.Errorf("cancelled GET = %v after %v, want context.Canceled at once", err, time.Since(start))
	}
}

func TestParseTimeout(t *testing.T) {
	t.Parallel()
	if d, err := dns.ParseTimeout("", 30*time.Second); d != 30*time.Second || err != nil {
		t.Errorf("ParseTimeout(\"\") = %v, %v", d, err)
	}
	if d, err := dns.ParseTimeout("45s", 30*time.Second); d != 45*time.Second || err != nil {
		t.Errorf("ParseTimeout(45s) = %v, %v", d, err)
	}
	for _, bad := range []string{"30", "0s", "1h", "soon"} {
		if _, err := dns.ParseTimeout(bad, 0); !errors.Is(err, dns.ErrConfig) {
			t.Errorf("ParseTimeout(%q) = %v, want ErrConfig", bad, err)
		}
	}
}
