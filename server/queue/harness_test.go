package queue_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/authres"
	"github.com/mailctl/mailctl/server/dkim"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/store"
)

const password = "test-password-1"

// fakeClock is a clock that tests move.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("QUEUE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

var (
	certOnce sync.Once
	certConf *tls.Config
	certPool *x509.CertPool
	hashOnce sync.Once
	pwHash   string
)

// serverTLS is a self-signed certificate for every test host name.
func serverTLS() (*tls.Config, *x509.CertPool) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "mx.a.test"},
			DNSNames:     []string{"mx.a.test", "mx.b.test", "mx.c.test", "mta-sts.b.test", "mta-sts.c.test", "relay.test", "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			IsCA:         true, BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		c, _ := x509.ParseCertificate(der)
		certPool = x509.NewCertPool()
		certPool.AddCert(c)
		certConf = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}}}
	})
	return certConf.Clone(), certPool
}

func hash() string {
	hashOnce.Do(func() {
		h, err := auth.HashPassword(password, auth.Params{Memory: 256, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
		if err != nil {
			panic(err)
		}
		pwHash = h
	})
	return pwHash
}

// dnsWorld is a Knot DNS server holding the test zones.
type dnsWorld struct {
	knot *testenv.Knot
}

func startDNS(t testing.TB, zones ...string) *dnsWorld {
	t.Helper()
	return &dnsWorld{knot: testenv.StartKnot(t, zones...)}
}

// add inserts records (zone file syntax, absolute names) with an RFC 2136
// update signed with the TSIG key.
func (w *dnsWorld) add(t testing.TB, zone string, rrs ...string) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetUpdate(mdns.Fqdn(zone))
	var ins []mdns.RR
	for _, s := range rrs {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatalf("record %q: %v", s, err)
		}
		ins = append(ins, rr)
	}
	m.Insert(ins)
	k := w.knot
	m.SetTsig(k.TSIGName, mdns.HmacSHA256, 300, time.Now().Unix())
	c := &mdns.Client{TsigSecret: map[string]string{k.TSIGName: k.TSIGSecret}, Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, k.Addr)
	if err != nil {
		t.Fatalf("update %s: %v", zone, err)
	}
	if r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("update %s: %s", zone, mdns.RcodeToString[r.Rcode])
	}
}

// txt formats a TXT record, splitting long strings in 255-byte pieces.
func txt(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return name + " 300 IN TXT " + strings.Join(parts, " ")
}

func (w *dnsWorld) resolver() *queue.DNS {
	return &queue.DNS{Servers: []string{w.knot.Addr}, Timeout: 2 * time.Second}
}

// node is one mail server: store, directory, MX and submission services,
// outbound queue and inbound checks.
type node struct {
	domain, host, ip string
	port             int
	store            *store.Store
	dir              *auth.Directory
	queue            *queue.Queue
	checker          *inbound.Checker
	clock            *fakeClock
	mx, sub          *smtp.Server
	subAddr          string
	keys             []dkim.Key
	qopts            queue.Options
	mxOpts           smtp.Options
	cancel           context.CancelFunc
	done             chan struct{}
}

type nodeConfig struct {
	domain, host, ip string
	port             int
	users            []string
	dns              *dnsWorld
	inbound          *inbound.Options // nil: no checks
	queue            func(*queue.Options)
	noQueueRun       bool
}

func startNode(t testing.TB, nc nodeConfig) *node {
	t.Helper()
	ctx := context.Background()
	base := t.TempDir()
	n := &node{domain: nc.domain, host: nc.host, ip: nc.ip, port: nc.port, clock: newClock()}
	log := testLogger(t)
	var err error
	n.store, err = store.Open(ctx, base+"/store", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.store.Close() })
	var users []auth.User
	for _, u := range nc.users {
		users = append(users, auth.User{Address: u, PasswordHash: hash()})
		if err := n.store.EnsureUser(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
	}
	n.dir, err = auth.NewDirectory([]string{nc.domain}, users, nil)
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.NewAuthenticator(users, auth.AuthenticatorOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.keys, err = dkim.Ensure(base+"/dkim", nc.domain, []string{"s1"})
	if err != nil {
		t.Fatal(err)
	}
	if nc.dns != nil {
		var recs []string
		for _, k := range n.keys {
			recs = append(recs, txt(k.Selector+"._domainkey."+nc.domain+".", k.Record))
		}
		nc.dns.add(t, nc.domain, recs...)
	}
	_, pool := serverTLS()
	res := (*queue.DNS)(nil)
	if nc.dns != nil {
		res = nc.dns.resolver()
	}
	n.qopts = queue.Options{
		Dir: base + "/queue", Hostname: nc.host, Resolver: res, Port: nc.port,
		Signer:     dkim.NewSigner(n.keys),
		IsLocal:    func(d string) bool { return strings.EqualFold(d, nc.domain) },
		Deliver:    queue.StoreDeliverer(n.dir, n.store),
		SourceIPv4: net.ParseIP(nc.ip),
		TLSConfig:  &tls.Config{RootCAs: pool},
		Clock:      n.clock, Logger: log.With("node", nc.host),
		DialTimeout: 2 * time.Second, CommandTimeout: 10 * time.Second,
		PollInterval: 50 * time.Millisecond,
	}
	if res == nil {
		n.qopts.Resolver = &queue.DNS{Servers: []string{"127.0.0.1:1"}, Timeout: 100 * time.Millisecond}
	}
	if nc.queue != nil {
		nc.queue(&n.qopts)
	}
	n.queue, err = queue.Open(ctx, n.qopts)
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	n.done = make(chan struct{})
	if !nc.noQueueRun {
		go func() { n.queue.Run(qctx); close(n.done) }()
	} else {
		close(n.done)
	}
	t.Cleanup(func() {
		cancel()
		<-n.done
		n.queue.Close()
	})
	if nc.inbound != nil {
		o := *nc.inbound
		o.Hostname = nc.host
		if o.Resolver == nil {
			o.Resolver = res
		}
		o.Logger = log.With("node", nc.host)
		n.checker, err = inbound.New(o)
		if err != nil {
			t.Fatal(err)
		}
	}
	srvTLS, _ := serverTLS()
	n.mxOpts = smtp.Options{Mode: smtp.ModeMX, Hostname: nc.host, TLSConfig: srvTLS, Store: n.store,
		Directory: n.dir, Queue: n.queue, Logger: log.With("node", nc.host), SpoolDir: base}
	if n.checker != nil {
		n.mxOpts.Inbound = n.checker
	}
	n.startMX(t)
	n.sub, err = smtp.New(smtp.Options{Mode: smtp.ModeSubmission, Hostname: nc.host, TLSConfig: srvTLS, Store: n.store,
		Directory: n.dir, Auth: authn, Queue: n.queue, Logger: log.With("node", nc.host), SpoolDir: base})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", nc.ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	n.subAddr = ln.Addr().String()
	go n.sub.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.sub.Shutdown(ctx)
	})
	return n
}

// startMX (re)starts the MX service on ip:port.
func (n *node) startMX(t testing.TB) {
	t.Helper()
	var err error
	n.mx, err = smtp.New(n.mxOpts)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; i < 50; i++ {
		ln, err = net.Listen("tcp", net.JoinHostPort(n.ip, fmt.Sprint(n.port)))
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	mx := n.mx
	go mx.Serve(ln)
	t.Cleanup(func() { n.stopMX() })
	// Wait until Serve runs (a Shutdown before it would miss the listener).
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "220 " {
		t.Fatalf("MX %s greeting %q: %v", ln.Addr(), buf, err)
	}
	c.Close()
}

func (n *node) stopMX() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.mx.Shutdown(ctx)
}

// submit sends a message through the node's submission service as user.
func (n *node) submit(t *testing.T, user string, to []string, msg string) {
	t.Helper()
	if err := n.trySubmit(user, to, msg); err != nil {
		t.Fatalf("submit as %s: %v", user, err)
	}
}

func (n *node) trySubmit(user string, to []string, msg string) error {
	_, pool := serverTLS()
	c, err := gosmtp.DialStartTLS(n.subAddr, &tls.Config{RootCAs: pool, ServerName: n.host})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		return err
	}
	if err := c.SendMail(user, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// messages returns the bodies in user's mailbox.
func (n *node) messages(t testing.TB, user, mailbox string) []string {
	t.Helper()
	ctx := context.Background()
	_, msgs, err := n.store.Messages(ctx, user, mailbox)
	if err != nil {
		t.Fatalf("messages of %s/%s: %v", user, mailbox, err)
	}
	var out []string
	for _, m := range msgs {
		f, err := n.store.OpenBody(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// waitMessages waits until user's mailbox holds at least n messages.
func (n *node) waitMessages(t testing.TB, user, mailbox string, count int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := n.messages(t, user, mailbox)
		if len(msgs) >= count {
			return msgs
		}
		if time.Now().After(deadline) {
			list, _ := n.queue.List(context.Background())
			t.Fatalf("%s/%s has %d messages after %v, want %d; queue of %s: %+v", user, mailbox, len(msgs), timeout, count, n.host, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port free on both 127.0.0.1 and 127.0.0.2.
func freePort(t testing.TB, ips ...string) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		var others []net.Listener
		for _, ip := range ips[1:] {
			o, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			others = append(others, o)
		}
		l.Close()
		for _, o := range others {
			o.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on all of", ips)
	return 0
}

// header returns the values of the named header field of a message.
func header(msg, name string) []string {
	var out []string
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	head = strings.ReplaceAll(head, "\r\n\t", " ")
	head = strings.ReplaceAll(head, "\r\n ", " ")
	for _, l := range strings.Split(head, "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// authResults returns method -> values of the Authentication-Results field
// with authserv-id id.
func authResults(t testing.TB, msg, id string) map[string][]string {
	t.Helper()
	var found map[string][]string
	for _, v := range header(msg, "Authentication-Results") {
		aid, results, err := authres.Parse(v)
		if err != nil {
			t.Fatalf("parse Authentication-Results %q: %v", v, err)
		}
		if aid != id {
			continue
		}
		if found != nil {
			t.Fatalf("two Authentication-Results fields for %s in\n%s", id, msg)
		}
		found = map[string][]string{}
		for _, r := range results {
			found[r.Method] = append(found[r.Method], r.Value)
		}
	}
	if found == nil {
		t.Fatalf("no Authentication-Results field for %s in\n%s", id, msg)
	}
	return found
}
