package queue_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/queue"
)

func authUsers(addrs ...string) []auth.User {
	var out []auth.User
	for _, a := range addrs {
		out = append(out, auth.User{Address: a, PasswordHash: hash()})
	}
	return out
}

// pair starts Knot and two nodes without inbound checks: a.test on
// 127.0.0.1 and b.test on 127.0.0.2; records are up to the test.
func pair(t testing.TB, zones []string, qopt func(*queue.Options)) (*dnsWorld, *node, *node) {
	t.Helper()
	w := startDNS(t, append([]string{"a.test", "b.test"}, zones...)...)
	port := freePort(t, "127.0.0.1", "127.0.0.2", "::1")
	w.add(t, "a.test", "a.test. 300 IN MX 10 mx.a.test.", "mx.a.test. 300 IN A 127.0.0.1")
	w.add(t, "b.test", "b.test. 300 IN MX 10 mx.b.test.", "mx.b.test. 300 IN A 127.0.0.2")
	a := startNode(t, nodeConfig{domain: "a.test", host: "mx.a.test", ip: "127.0.0.1", port: port,
		users: []string{"alice@a.test"}, dns: w, queue: qopt})
	b := startNode(t, nodeConfig{domain: "b.test", host: "mx.b.test", ip: "127.0.0.2", port: port,
		users: []string{"bob@b.test"}, dns: w})
	return w, a, b
}

func enqueue(t *testing.T, n *node, from string, to ...string) {
	t.Helper()
	if err := n.queue.Enqueue(context.Background(), from, to, strings.NewReader(msg(from, strings.Join(to, ", "), "queued"))); err != nil {
		t.Fatal(err)
	}
}

func lastDSN(t *testing.T, n *node, user string, count int) *queue.DSN {
	t.Helper()
	msgs := n.waitMessages(t, user, "INBOX", count, 10*time.Second)
	d, err := queue.ParseDSN(strings.NewReader(msgs[count-1]))
	if err != nil {
		t.Fatalf("parse DSN: %v\n%s", err, msgs[count-1])
	}
	return d
}

func TestDestinationRefusesMail(t *testing.T) {
	w, a, _ := pair(t, []string{"n.test", "x.test"}, nil)
	w.add(t, "n.test", "n.test. 300 IN MX 0 .")
	w.add(t, "x.test", txt("nomx.x.test.", "no mail here"))
	tests := []struct {
		rcpt, status string
	}{
		{"x@n.test", "5.1.10"},             // null MX, RFC 7505
		{"x@nomx.x.test", "5.1.2"},         // no MX and no address
		{"x@doesnotexist.x.test", "5.1.2"}, // NXDOMAIN
	}
	for i, tc := range tests {
		t.Run(tc.rcpt, func(t *testing.T) {
			enqueue(t, a, "alice@a.test", tc.rcpt)
			d := lastDSN(t, a, "alice@a.test", i+1)
			if len(d.Recipients) != 1 || d.Recipients[0].Status != tc.status || d.Recipients[0].Action != queue.ActionFailed {
				t.Errorf("DSN recipients = %+v, want %s failed", d.Recipients, tc.status)
			}
			waitQueueEmpty(t, a)
		})
	}
}

func TestImplicitMX(t *testing.T) {
	w, a, b := pair(t, nil, nil)
	// b.test loses its MX: its A record is the implicit MX (RFC 5321 5.1).
	w.add(t, "a.test", "bare.a.test. 300 IN A 127.0.0.2")
	if err := b.store.EnsureUser(context.Background(), "carol@bare.a.test", 0); err != nil {
		t.Fatal(err)
	}
	if err := b.dir.Update([]string{"b.test", "bare.a.test"}, authUsers("bob@b.test", "carol@bare.a.test"), nil); err != nil {
		t.Fatal(err)
	}
	enqueue(t, a, "alice@a.test", "carol@bare.a.test")
	b.waitMessages(t, "carol@bare.a.test", "INBOX", 1, 10*time.Second)
}

func TestDelayNoticeAndExpiry(t *testing.T) {
	_, a, b := pair(t, nil, nil)
	b.stopMX()
	enqueue(t, a, "alice@a.test", "bob@b.test")
	start := a.clock.Now()
	attempts := 0
	for {
		// Wait for the next attempt (or the end), then jump to the retry time.
		var list []queue.Message
		deadline := time.Now().Add(10 * time.Second)
		for {
			var err error
			list, err = a.queue.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			list = slices.DeleteFunc(list, func(m queue.Message) bool { return m.IsDSN })
			if len(list) == 0 || list[0].Attempts > attempts {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no attempt %d within 10s: %+v", attempts+1, list)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(list) == 0 {
			break
		}
		attempts = list[0].Attempts
		a.clock.Advance(list[0].Next.Sub(a.clock.Now()))
		a.queue.Kick()
		if attempts > 100 {
			t.Fatal("more than 100 attempts")
		}
	}
	attempts++ // the last one, which expired the message
	waitQueueEmpty(t, a)
	elapsed := a.clock.Now().Sub(start)
	if elapsed < 5*24*time.Hour || elapsed > 5*24*time.Hour+4*time.Hour {
		t.Errorf("gave up after %v, want 5 days (max back-off 4h)", elapsed)
	}
	if attempts < 30 || attempts > 45 {
		t.Errorf("%d attempts in 5 days, want exponential back-off from 5m capped at 4h (~35)", attempts)
	}
	msgs := a.waitMessages(t, "alice@a.test", "INBOX", 2, 10*time.Second)
	delay, err := queue.ParseDSN(strings.NewReader(msgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	if r := delay.Recipients[0]; r.Action != queue.ActionDelayed || r.WillRetryUntil.IsZero() || !strings.Contains(r.Diagnostic, "connect") {
		t.Errorf("first notice = %+v, want delayed with Will-Retry-Until", r)
	}
	final, err := queue.ParseDSN(strings.NewReader(msgs[1]))
	if err != nil {
		t.Fatal(err)
	}
	if r := final.Recipients[0]; r.Action != queue.ActionFailed || r.Status != "4.4.7" {
		t.Errorf("final notice = %+v, want failed 4.4.7", r)
	}
}

func TestWarmupCap(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		at   time.Duration
		want int
	}{
		{0, 50}, {6 * day, 50}, {7 * day, 100}, {14 * day, 200}, {35 * day, 1600}, {42 * day, -1}, {400 * day, -1},
	}
	for _, tc := range tests {
		if got := queue.WarmupCap(start, start.Add(tc.at), 6); got != tc.want {
			t.Errorf("WarmupCap(day %d) = %d, want %d", int(tc.at/day), got, tc.want)
		}
	}
	if got := queue.WarmupCap(start, start, 0); got != -1 {
		t.Errorf("WarmupCap without ramp = %d, want -1", got)
	}
}

func TestWarmupDefersOverflow(t *testing.T) {
	_, a, b := pair(t, nil, func(o *queue.Options) { o.Warmup = queue.Warmup{Weeks: 6} })
	for i := 0; i < queue.WarmupFirstCap+2; i++ {
		enqueue(t, a, "alice@a.test", "bob@b.test")
	}
	b.waitMessages(t, "bob@b.test", "INBOX", queue.WarmupFirstCap, 30*time.Second)
	now := a.clock.Now()
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	deadline := time.Now().Add(10 * time.Second)
	var list []queue.Message
	for {
		list, _ = a.queue.List(context.Background())
		if len(list) == 2 && list[0].Next.Equal(midnight) && list[1].Next.Equal(midnight) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d records, want the 2 over the cap deferred to %v", len(list), midnight)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range list {
		if !m.Next.Equal(midnight) || m.Attempts != 0 {
			t.Errorf("deferred record %+v, want next %v and no attempt counted", m, midnight)
		}
	}
	sent, limit, _ := a.queue.WarmupStatus(now)
	if sent != queue.WarmupFirstCap || limit != queue.WarmupFirstCap {
		t.Errorf("WarmupStatus = %d/%d", sent, limit)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(b.messages(t, "bob@b.test", "INBOX")); n != queue.WarmupFirstCap {
		t.Fatalf("%d delivered on day one, want %d", n, queue.WarmupFirstCap)
	}
	a.clock.Advance(midnight.Sub(now))
	a.queue.Kick()
	b.waitMessages(t, "bob@b.test", "INBOX", queue.WarmupFirstCap+2, 10*time.Second)
	waitQueueEmpty(t, a)
}

// TestAddressPreference checks IPv6-first delivery with a bound source
// address, the IPv4 preference, and the fallback to IPv4.
func TestAddressPreference(t *testing.T) {
	tests := []struct {
		name       string
		preferIPv4 bool
		listen6    bool
		want       string
	}{
		{"ipv6 first", false, true, "[::1]"},
		{"ipv4 preferred", true, true, "[127.0.0.1]"},
		{"fallback to ipv4", false, false, "[127.0.0.1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, a, b := pair(t, nil, func(o *queue.Options) {
				o.PreferIPv4 = tc.preferIPv4
				o.SourceIPv6 = net.ParseIP("::1")
			})
			w.add(t, "b.test", "mx.b.test. 300 IN AAAA ::1")
			if tc.listen6 {
				ln, err := net.Listen("tcp", net.JoinHostPort("::1", fmt.Sprint(b.port)))
				if err != nil {
					t.Fatal(err)
				}
				go b.mx.Serve(ln)
			}
			enqueue(t, a, "alice@a.test", "bob@b.test")
			got := b.waitMessages(t, "bob@b.test", "INBOX", 1, 10*time.Second)
			rec := header(got[0], "Received")
			if len(rec) == 0 || !strings.Contains(rec[0], "("+tc.want+")") {
				t.Errorf("Received = %q, want from %s", rec, tc.want)
			}
		})
	}
}

// TestMTASTS enforces policies fetched over HTTPS: a matching MX with a
// valid certificate gets the message; an MX outside the policy does not.
func TestMTASTS(t *testing.T) {
	srvTLS, pool := serverTLS()
	policies := map[string]string{
		"mta-sts.b.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.b.test\r\nmax_age: 86400\r\n",
		"mta-sts.c.test": "version: STSv1\r\nmode: enforce\r\nmx: *.elsewhere.test\r\nmax_age: 86400\r\n",
	}
	var mu sync.Mutex
	fetched := map[string]int{}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := policies[r.Host]
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		fetched[r.Host]++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, p)
	}))
	hs.TLS = srvTLS
	hs.StartTLS()
	defer hs.Close()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, hs.Listener.Addr().String())
		},
	}}
	w, a, b := pair(t, []string{"c.test"}, func(o *queue.Options) { o.HTTPClient = client })
	w.add(t, "b.test", txt("_mta-sts.b.test.", "v=STSv1; id=20260302"))
	w.add(t, "c.test", "c.test. 300 IN MX 10 mx.b.test.", txt("_mta-sts.c.test.", "v=STSv1; id=1"))

	enqueue(t, a, "alice@a.test", "bob@b.test")
	b.waitMessages(t, "bob@b.test", "INBOX", 1, 10*time.Second)
	enqueue(t, a, "alice@a.test", "bob@b.test")
	b.waitMessages(t, "bob@b.test", "INBOX", 2, 10*time.Second)

	enqueue(t, a, "alice@a.test", "carol@c.test")
	list := waitAttempts(t, a, 1)
	if r := list[0].Rcpts[0]; r.State != queue.StatePending || r.Status != "4.7.5" || !strings.Contains(r.Diagnostic, "MTA-STS") {
		t.Errorf("recipient = %+v, want deferred: no MX matches the policy", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if fetched["mta-sts.b.test"] != 1 || fetched["mta-sts.c.test"] != 1 {
		t.Errorf("policy fetches = %v, want one each (cached by id and max_age)", fetched)
	}
	mu.Unlock()

	// A sender that does not trust mx.b.test's certificate must not
	// deliver to it under an enforce policy, not even in clear text.
	untrusting := startNode(t, nodeConfig{domain: "c.test", host: "mx.c.test", ip: "127.0.0.3", port: b.port,
		users: []string{"carol@c.test"}, dns: w, queue: func(o *queue.Options) {
			o.HTTPClient = client
			o.TLSConfig = &tls.Config{RootCAs: x509.NewCertPool()}
		}})
	enqueue(t, untrusting, "carol@c.test", "bob@b.test")
	list = waitAttempts(t, untrusting, 1)
	if r := list[0].Rcpts[0]; r.State != queue.StatePending || r.Status != "4.7.5" || !strings.Contains(r.Diagnostic, "certificate") {
		t.Errorf("recipient = %+v, want deferred: certificate not trusted", r)
	}
	if n := len(b.messages(t, "bob@b.test", "INBOX")); n != 2 {
		t.Errorf("bob has %d messages, want 2", n)
	}
	mu.Lock()
}

// TestConnectionReuse counts the connections that ten deliveries to the
// same MX open, through a counting TCP proxy: one, reused with RSET.
func TestConnectionReuse(t *testing.T) {
	w := startDNS(t, "a.test", "b.test")
	port := freePort(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	w.add(t, "b.test", "b.test. 300 IN MX 10 mx.b.test.", "mx.b.test. 300 IN A 127.0.0.3")
	a := startNode(t, nodeConfig{domain: "a.test", host: "mx.a.test", ip: "127.0.0.1", port: port, users: []string{"alice@a.test"}, dns: w})
	b := startNode(t, nodeConfig{domain: "b.test", host: "mx.b.test", ip: "127.0.0.2", port: port, users: []string{"bob@b.test"}, dns: w})
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.3", fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	conns := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.2", fmt.Sprint(port)))
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	for i := 1; i <= 10; i++ {
		enqueue(t, a, "alice@a.test", "bob@b.test")
		b.waitMessages(t, "bob@b.test", "INBOX", i, 10*time.Second)
		waitQueueEmpty(t, a)
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("10 sequential deliveries opened %d connections, want 1", conns)
	}
}
