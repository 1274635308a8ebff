package smtp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/store"
)

const (
	hostname = "mail.example.test"
	alicePW  = "lab-alice-password"
	bobPW    = "lab-bob-password"
)

var (
	certOnce sync.Once
	certTLS  *tls.Config
	hashOnce sync.Once
	hashes   map[string]string
)

// serverTLS returns a self-signed certificate for hostname and 127.0.0.1.
func serverTLS(t testing.TB) *tls.Config {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: hostname},
			DNSNames:     []string{hostname},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		certTLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	})
	return certTLS.Clone()
}

// clientTLS trusts serverTLS's certificate.
func clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	c, err := x509.ParseCertificate(serverTLS(t).Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(c)
	return &tls.Config{RootCAs: pool, ServerName: hostname}
}

// send delivers a message with the go-smtp client over STARTTLS, verifying the certificate.
func send(t *testing.T, addr, from string, to []string, msg string) error {
	c, err := gosmtp.DialStartTLS(addr, clientTLS(t))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func testHashes() map[string]string {
	hashOnce.Do(func() {
		p := auth.Params{Memory: 256, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
		hashes = map[string]string{}
		for _, pw := range []string{alicePW, bobPW} {
			h, err := auth.HashPassword(pw, p)
			if err != nil {
				panic(err)
			}
			hashes[pw] = h
		}
	})
	return hashes
}

// memQueue is an outbound queue that holds messages in memory.
type memQueue struct {
	mu   sync.Mutex
	msgs []queued
	fail error
}

type queued struct {
	from string
	to   []string
	body string
}

func (q *memQueue) Enqueue(ctx context.Context, from string, to []string, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return q.fail
	}
	q.msgs = append(q.msgs, queued{from, to, string(b)})
	return nil
}

func (q *memQueue) all() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.msgs...)
}

// env is a complete SMTP back end: a real store, directory and authenticator.
type env struct {
	st    *store.Store
	dir   *auth.Directory
	auth  *auth.Authenticator
	queue *memQueue
}

func newEnv(t testing.TB, authOpts auth.AuthenticatorOptions) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := testHashes()
	users := []auth.User{
		{Address: "alice@example.test", PasswordHash: h[alicePW], Aliases: []string{"contact@example.test"}},
		{Address: "bob@example.test", PasswordHash: h[bobPW]},
		{Address: "carol@example.test", PasswordHash: h[bobPW], QuotaBytes: 10},
	}
	for _, u := range users {
		if err := st.EnsureUser(ctx, u.Address, u.QuotaBytes); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := auth.NewDirectory([]string{"example.test", "example.org"}, users, []auth.Alias{
		{Address: "postmaster@example.test", To: []string{"alice@example.test"}},
		{Address: "team@example.test", To: []string{"alice@example.test", "bob@example.test"}},
		{Address: "fwd@example.test", To: []string{"friend@remote.example"}},
		{Address: "@example.org", To: []string{"bob@example.test"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if authOpts.Logger == nil {
		authOpts.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := auth.NewAuthenticator(users, authOpts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, dir: dir, auth: a, queue: &memQueue{}}
}

// start runs a server of mode on 127.0.0.1:0 and returns its address.
func (e *env) start(t testing.TB, mode smtp.Mode, edit func(o *smtp.Options)) string {
	t.Helper()
	opts := smtp.Options{
		Mode:      mode,
		Hostname:  hostname,
		TLSConfig: serverTLS(t),
		Store:     e.st,
		Directory: e.dir,
		Auth:      e.auth,
		Queue:     e.queue,
		Limits:    smtp.Limits{MaxConnsPerIP: 100, Timeout: 10 * time.Second},
		Logger:    slog.New(slog.DiscardHandler),
		SpoolDir:  t.TempDir(),
	}
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if edit != nil {
		edit(&opts)
	}
	srv, err := smtp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve() = %v after Shutdown, want nil", err)
		}
	})
	return ln.Addr().String()
}

// inbox returns the bodies of the messages in user's INBOX.
func (e *env) inbox(t *testing.T, user string) []string {
	t.Helper()
	ctx := context.Background()
	_, msgs, err := e.st.Messages(ctx, user, store.Inbox)
	if err != nil {
		t.Fatalf("Messages(%s) = %v", user, err)
	}
	var out []string
	for _, m := range msgs {
		f, err := e.st.OpenBody(ctx, m)
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

// client is a raw SMTP client, to send exactly what a test wants.
type client struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func dial(t *testing.T, addr string, implicitTLS bool) *client {
	t.Helper()
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", addr, clientTLS(t))
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn, tp: textproto.NewConn(conn)}
	t.Cleanup(func() { c.tp.Close() })
	if code, msg := c.read(); code != 220 || !strings.HasPrefix(msg, hostname) {
		t.Fatalf("banner = %d %q, want 220 %s ...", code, msg, hostname)
	}
	return c
}

func (c *client) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		var perr textproto.ProtocolError
		if !errors.As(err, &perr) && code == 0 {
			c.t.Fatalf("read reply: %v", err)
		}
	}
	return code, msg
}

// cmd sends one command line and returns the reply.
func (c *client) cmd(line string) (int, string) {
	c.t.Helper()
	if err := c.tp.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
	return c.read()
}

// expect sends line and fails unless the reply has code and contains want.
func (c *client) expect(line string, code int, want string) string {
	c.t.Helper()
	got, msg := c.cmd(line)
	if got != code || !strings.Contains(msg, want) {
		c.t.Fatalf("%s -> %d %q, want %d containing %q", line, got, msg, code, want)
	}
	return msg
}

func (c *client) startTLS() {
	c.t.Helper()
	c.expect("STARTTLS", 220, "")
	tc := tls.Client(c.conn, clientTLS(c.t))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.tp = textproto.NewConn(tc)
}

// data sends DATA, the message and the final dot; it returns the final reply.
func (c *client) data(msg string) (int, string) {
	c.t.Helper()
	c.expect("DATA", 354, "")
	w := c.tp.DotWriter()
	io.WriteString(w, msg)
	if err := w.Close(); err != nil {
		c.t.Fatalf("write data: %v", err)
	}
	return c.read()
}

func plainIR(user, pw string) string {
	var b bytes.Buffer
	b.WriteString("\x00" + user + "\x00" + pw)
	return b64(b.String())
}
