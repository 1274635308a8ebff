package smtp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
)

func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	sub := e.start(t, smtp.ModeSubmission, nil)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("Subject: mx %d\r\n\r\nbody %d\r\n", i, i)
			if err := send(t, mx, "sender@remote.example", []string{"alice@example.test", "team@example.test"}, msg); err != nil {
				errs <- fmt.Errorf("mx session %d: %w", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			c, err := gosmtp.DialStartTLS(sub, clientTLS(t))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := fmt.Sprintf("From: Alice <alice@example.test>\r\nSubject: sub %d\r\n\r\nbody %d\r\n", i, i)
			err = c.Auth(sasl.NewPlainClient("", "alice@example.test", alicePW))
			if err == nil {
				err = c.SendMail("alice@example.test", []string{"bob@example.test"}, strings.NewReader(msg))
			}
			if err != nil {
				errs <- fmt.Errorf("submission session %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d MX + %d submission sessions in %v", n, n, time.Since(start))
	// alice gets each MX message once although addressed directly and via team@.
	if got := len(e.inbox(t, "alice@example.test")); got != n {
		t.Errorf("alice has %d messages, want %d (one per MX message, deduplicated)", got, n)
	}
	box := e.inbox(t, "bob@example.test")
	if len(box) != 2*n {
		t.Errorf("bob has %d messages, want %d", len(box), 2*n)
	}
	seen := map[string]bool{}
	for _, m := range box {
		i := strings.Index(m, "Subject: ")
		seen[strings.SplitN(m[i:], "\r\n", 2)[0]] = true
	}
	if len(seen) != 2*n {
		t.Errorf("bob has %d distinct subjects, want %d", len(seen), 2*n)
	}
}

func TestAuthOnlyAfterTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	sub := e.start(t, smtp.ModeSubmission, nil)
	c := dial(t, sub, false)
	ehlo := c.expect("EHLO client.example", 250, "STARTTLS")
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH advertised before TLS: %q", ehlo)
	}
	if code, msg := c.cmd("AUTH PLAIN " + plainIR("alice@example.test", alicePW)); code/100 != 5 || !strings.Contains(msg, "5.7.") {
		t.Errorf("AUTH before TLS -> %d %s, want a 5xx 5.7.x refusal", code, msg)
	}
	c.expect("MAIL FROM:<alice@example.test>", 530, "5.7.0")
	c.startTLS()
	ehlo = c.expect("EHLO client.example", 250, "AUTH PLAIN LOGIN")
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("STARTTLS advertised twice: %q", ehlo)
	}
	c.expect("MAIL FROM:<alice@example.test>", 530, "5.7.0")
	c.expect("AUTH PLAIN "+plainIR("alice@example.test", alicePW), 235, "")
	c.expect("MAIL FROM:<alice@example.test>", 250, "")
}

func TestSenderRights(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	subs := e.start(t, smtp.ModeSubmissions, nil)
	tests := []struct {
		from string
		code int
		enh  string
	}{
		{"<alice@example.test>", 250, ""},
		{"<ALICE@EXAMPLE.TEST>", 250, ""},
		{"<contact@example.test>", 250, ""},
		{"<postmaster@example.test>", 250, ""},
		{"<team@example.test>", 250, ""},
		{"<bob@example.test>", 553, "5.7.1"},
		{"<anyone@example.org>", 553, "5.7.1"}, // catch-all delivers to bob, is nobody's identity
		{"<alice@remote.example>", 553, "5.7.1"},
		{"<alice+tag@example.test>", 553, "5.7.1"},
		{"<>", 553, "5.1.7"},
		{"<alice%bob@example.test>", 553, "5.1.7"},
		{"<alice@example.test@remote.example>", 553, "5.1.7"},
	}
	c := dial(t, subs, true)
	c.expect("EHLO client.example", 250, "AUTH PLAIN LOGIN")
	c.expect("AUTH LOGIN", 334, b64("Username:"))
	c.expect(b64("Alice@Example.test"), 334, b64("Password:"))
	c.expect(b64(alicePW), 235, "")
	for _, tc := range tests {
		code, msg := c.cmd("MAIL FROM:" + tc.from)
		if code != tc.code || !strings.HasPrefix(msg, tc.enh) {
			t.Errorf("MAIL FROM:%s -> %d %s, want %d %s", tc.from, code, msg, tc.code, tc.enh)
		}
		c.expect("RSET", 250, "")
	}
}

func TestFromHeaderRights(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	subs := e.start(t, smtp.ModeSubmissions, nil)
	tests := []struct {
		header string
		code   int
		enh    string
	}{
		{"From: alice@example.test\r\n", 250, "2.0.0"},
		{"From: \"Alice M.\" <ALICE@example.test>\r\n", 250, "2.0.0"},
		{"From: =?utf-8?q?Al=C3=AFce?= <contact@example.test>\r\n", 250, "2.0.0"},
		{"From: Alice\r\n <postmaster@example.test>\r\n", 250, "2.0.0"},
		{"From: alice@example.test, contact@example.test\r\n", 250, "2.0.0"},
		{"From: bob@example.test\r\n", 550, "5.7.1"},
		{"From: Alice <alice@example.test>, bob@example.test\r\n", 550, "5.7.1"},
		{"From: \"alice@example.test\" <bob@example.test>\r\n", 550, "5.7.1"},
		{"From: alice@example.test\r\nFrom: bob@example.test\r\n", 550, "5.6.0"},
		{"Sender: alice@example.test\r\n", 550, "5.6.0"},
		{"From: not an address\r\n", 550, "5.6.0"},
	}
	c := dial(t, subs, true)
	c.expect("EHLO client.example", 250, "")
	c.expect("AUTH PLAIN "+plainIR("alice@example.test", alicePW), 235, "")
	for _, tc := range tests {
		c.expect("MAIL FROM:<alice@example.test>", 250, "")
		c.expect("RCPT TO:<bob@example.test>", 250, "")
		code, msg := c.data(tc.header + "Subject: from test\r\n\r\nx\r\n")
		if code != tc.code || !strings.HasPrefix(msg, tc.enh) {
			t.Errorf("DATA with %q -> %d %s, want %d %s", tc.header, code, msg, tc.code, tc.enh)
		}
	}
	if n := len(e.inbox(t, "bob@example.test")); n != 5 {
		t.Errorf("bob has %d messages, want the 5 accepted", n)
	}
}

func TestAuthThrottle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{MaxFailures: 2})
	subs := e.start(t, smtp.ModeSubmissions, nil)
	c := dial(t, subs, true)
	c.expect("EHLO client.example", 250, "")
	c.expect("AUTH PLAIN "+plainIR("alice@example.test", "guess1"), 535, "5.7.8")
	c.expect("AUTH PLAIN "+plainIR("nobody@example.test", "guess2"), 535, "5.7.8")
	c.expect("AUTH PLAIN "+plainIR("alice@example.test", alicePW), 454, "4.7.0")
	// A new connection from the same address is throttled too.
	c2 := dial(t, subs, true)
	c2.expect("EHLO client.example", 250, "")
	c2.expect("AUTH PLAIN "+plainIR("bob@example.test", bobPW), 454, "4.7.0")
	// PLAIN with an authorization identity of someone else is refused.
	e2 := newEnv(t, auth.AuthenticatorOptions{})
	subs2 := e2.start(t, smtp.ModeSubmissions, nil)
	c3 := dial(t, subs2, true)
	c3.expect("EHLO client.example", 250, "")
	c3.expect("AUTH PLAIN "+b64("bob@example.test\x00alice@example.test\x00"+alicePW), 535, "5.7.8")
}

func TestLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	addr := e.start(t, smtp.ModeMX, func(o *smtp.Options) {
		o.Limits = smtp.Limits{MaxMessageBytes: 2000, MaxRecipients: 2, Timeout: 2 * time.Second}
	})
	t.Run("SIZE advertised and MAIL SIZE refused", func(t *testing.T) {
		c := dial(t, addr, false)
		c.expect("EHLO client.example", 250, "SIZE 2000")
		c.expect("MAIL FROM:<x@remote.example> SIZE=2001", 552, "5.3.4")
		c.expect("MAIL FROM:<x@remote.example> SIZE=1999", 250, "")
	})
	t.Run("size enforced while reading", func(t *testing.T) {
		c := dial(t, addr, false)
		c.expect("EHLO client.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:<bob@example.test>", 250, "")
		if code, msg := c.data("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 50)); code != 552 || !strings.HasPrefix(msg, "5.3.4") {
			t.Fatalf("oversize DATA -> %d %s, want 552 5.3.4", code, msg)
		}
		// The session goes on.
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
	})
	t.Run("recipient limit", func(t *testing.T) {
		c := dial(t, addr, false)
		c.expect("EHLO client.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:<alice@example.test>", 250, "")
		c.expect("RCPT TO:<bob@example.test>", 250, "")
		c.expect("RCPT TO:<team@example.test>", 452, "4.5.3")
	})
	t.Run("connections per IP", func(t *testing.T) {
		addr := e.start(t, smtp.ModeMX, func(o *smtp.Options) { o.Limits.MaxConnsPerIP = 3 })
		var conns []*client
		for i := 0; i < 3; i++ {
			conns = append(conns, dial(t, addr, false))
		}
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(raw)
		if !strings.HasPrefix(string(b), "421 4.7.0 ") {
			t.Errorf("4th connection got %q, want 421 4.7.0", b)
		}
		conns[0].expect("QUIT", 221, "")
		// The slot is released once the server closed the connection.
		deadline := time.Now().Add(3 * time.Second)
		for {
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			line := make([]byte, 3)
			io.ReadFull(raw, line)
			raw.Close()
			if string(line) == "220" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after QUIT, a new connection still gets %q", line)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		c := dial(t, addr, false)
		c.expect("EHLO client.example", 250, "")
		start := time.Now()
		code, msg := c.read() // wait for the server to give up
		if code != 421 || !strings.HasPrefix(msg, "4.4.2") {
			t.Fatalf("idle client got %d %s, want 421 4.4.2", code, msg)
		}
		if d := time.Since(start); d < 1500*time.Millisecond || d > 5*time.Second {
			t.Errorf("idle timeout after %v, want about 2s", d)
		}
	})
}

func TestQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<carol@example.test>", 250, "") // quota 10 bytes, still empty
	if code, msg := c.data("Subject: too big for carol\r\n\r\nhello\r\n"); code != 552 || !strings.HasPrefix(msg, "5.2.2") {
		t.Fatalf("DATA to a full mailbox -> %d %s, want 552 5.2.2", code, msg)
	}
	if n := len(e.inbox(t, "carol@example.test")); n != 0 {
		t.Errorf("carol has %d messages, want 0", n)
	}
}

// overQuotaStore reports every user as full, to check the RCPT-time check.
type overQuotaStore struct{ smtp.Deliverer }

func (overQuotaStore) Usage(ctx context.Context, user string) (int64, int, error) {
	return 100, 1, nil
}
func (overQuotaStore) Quota(ctx context.Context, user string) (int64, error) { return 100, nil }

func TestQuotaAtRcpt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, func(o *smtp.Options) { o.Store = overQuotaStore{e.st} })
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<alice@example.test>", 552, "5.2.2")
}

func TestMailLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<alice@example.test>", 250, "")
	hops := strings.Repeat("Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n", 100)
	if code, msg := c.data(hops + "Subject: loop\r\n\r\nx\r\n"); code != 554 || !strings.HasPrefix(msg, "5.4.6") {
		t.Fatalf("DATA with 100 Received -> %d %s, want 554 5.4.6", code, msg)
	}
}

func TestSubmissionCompletesHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	subs := e.start(t, smtp.ModeSubmissions, nil)
	c := dial(t, subs, true)
	c.expect("EHLO client.example", 250, "")
	c.expect("AUTH PLAIN "+plainIR("bob@example.test", bobPW), 235, "")
	c.expect("MAIL FROM:<bob@example.test>", 250, "")
	c.expect("RCPT TO:<alice@example.test>", 250, "")
	c.expect("RCPT TO:<bob@example.test>", 250, "")
	if code, msg := c.data("From: bob@example.test\r\nSubject: no date\r\n\r\nhi\r\n"); code != 250 {
		t.Fatalf("DATA -> %d %s", code, msg)
	}
	m := e.inbox(t, "alice@example.test")[0]
	hdr := m[:strings.Index(m, "\r\n\r\n")]
	if !strings.Contains(hdr, "\r\nDate: ") || !strings.Contains(hdr, "\r\nMessage-ID: <") || strings.Contains(hdr, "\tfor <") {
		t.Errorf("header = %q, want Date and Message-ID added and no for clause (2 recipients)", hdr)
	}
}

func TestLargeMessageSpool(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	line := strings.Repeat("abcdefghij", 7) + "\r\n"
	body := "Subject: large\r\n\r\n" + strings.Repeat(line, 3<<20/len(line)) // 3 MiB, spooled to a file
	if err := send(t, mx, "x@remote.example", []string{"team@example.test"}, body); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		box := e.inbox(t, u)
		if len(box) != 1 || !strings.HasSuffix(box[0], body) {
			t.Fatalf("%s: %d messages, want 1 ending with the 3 MiB body", u, len(box))
		}
	}
}

// failingStore fails deliveries to one user.
type failingStore struct {
	smtp.Deliverer
	user string
}

func (f failingStore) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error) {
	if user == f.user {
		io.Copy(io.Discard, body)
		return 0, fmt.Errorf("disk on fire")
	}
	return f.Deliverer.Deliver(ctx, user, mailbox, body, flags, date)
}

func TestDeliveryFailureIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, func(o *smtp.Options) { o.Store = failingStore{e.st, "bob@example.test"} })
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<team@example.test>", 250, "")
	if code, msg := c.data("Subject: x\r\n\r\nx\r\n"); code != 451 || !strings.HasPrefix(msg, "4.3.0") {
		t.Fatalf("DATA with a failing delivery -> %d %s, want 451 4.3.0", code, msg)
	}
	e.queue.fail = fmt.Errorf("queue full")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<fwd@example.test>", 250, "")
	if code, msg := c.data("Subject: x\r\n\r\nx\r\n"); code != 451 || !strings.HasPrefix(msg, "4.3.0") {
		t.Fatalf("DATA with a failing queue -> %d %s, want 451 4.3.0", code, msg)
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	srv, err := smtp.New(smtp.Options{Mode: smtp.ModeMX, Hostname: hostname, Store: e.st, Directory: e.dir,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	idle := dial(t, ln.Addr().String(), false)
	idle.expect("EHLO client.example", 250, "")
	noEHLO := dial(t, ln.Addr().String(), false)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with idle clients, want it to close them at once", d)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	for _, c := range []*client{idle, noEHLO} {
		if _, err := c.tp.ReadLine(); err == nil {
			t.Errorf("idle connection still open after Shutdown")
		}
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Errorf("listener still accepts after Shutdown")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	for name, o := range map[string]smtp.Options{
		"no hostname":            {Store: e.st, Directory: e.dir},
		"no store":               {Hostname: hostname, Directory: e.dir},
		"submission without TLS": {Mode: smtp.ModeSubmission, Hostname: hostname, Store: e.st, Directory: e.dir, Auth: e.auth},
		"submissions no auth":    {Mode: smtp.ModeSubmissions, Hostname: hostname, Store: e.st, Directory: e.dir, TLSConfig: serverTLS(t)},
		"bad mode":               {Mode: 7, Hostname: hostname, Store: e.st, Directory: e.dir, Auth: e.auth, TLSConfig: serverTLS(t)},
	} {
		if _, err := smtp.New(o); err == nil {
			t.Errorf("New(%s) = nil error", name)
		}
	}
}

func TestChunking(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, func(o *smtp.Options) { o.Limits.MaxMessageBytes = 100 })
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "CHUNKING")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<alice@example.test>", 250, "")
	part1, part2 := "Subject: bdat\r\n", "\r\nchunked body\r\n"
	fmt.Fprintf(c.conn, "BDAT %d\r\n%s", len(part1), part1)
	if code, msg := c.read(); code != 250 {
		t.Fatalf("BDAT -> %d %s", code, msg)
	}
	fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(part2), part2)
	if code, msg := c.read(); code != 250 {
		t.Fatalf("BDAT LAST -> %d %s", code, msg)
	}
	box := e.inbox(t, "alice@example.test")
	if len(box) != 1 || !strings.HasSuffix(box[0], part1+part2) {
		t.Fatalf("alice: %q, want one message ending with the chunks", box)
	}
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<alice@example.test>", 250, "")
	big := strings.Repeat("y", 101)
	fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(big), big)
	if code, msg := c.read(); code != 552 || !strings.HasPrefix(msg, "5.3.4") {
		t.Fatalf("oversize BDAT -> %d %s, want 552 5.3.4", code, msg)
	}
}

func TestDirectoryReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<dave@example.test>", 550, "5.1.1")
	c.expect("RCPT TO:<x@example.net>", 554, "5.7.1")
	// Reload: a new user in a new domain, while the server runs.
	ctx := context.Background()
	if err := e.st.EnsureUser(ctx, "dave@example.net", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.dir.Update([]string{"example.test", "example.net"}, []auth.User{{Address: "alice@example.test"}, {Address: "dave@example.net"}}, nil); err != nil {
		t.Fatal(err)
	}
	c.expect("RCPT TO:<dave@example.net>", 250, "")
	c.expect("RCPT TO:<bob@example.test>", 550, "5.1.1") // removed by the reload
	if code, msg := c.data("Subject: after reload\r\n\r\nx\r\n"); code != 250 {
		t.Fatalf("DATA -> %d %s", code, msg)
	}
	if n := len(e.inbox(t, "dave@example.net")); n != 1 {
		t.Errorf("dave has %d messages, want 1", n)
	}
}

// TestShutdownBeforeServe stops a server whose Serve goroutine has not run
// yet: the listener must be closed, not served by a closing server.
func TestShutdownBeforeServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	srv, err := smtp.New(smtp.Options{Mode: smtp.ModeMX, Hostname: hostname, Store: e.st, Directory: e.dir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln); err != nil {
		t.Fatalf("Serve after Shutdown = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("listener still accepts after Shutdown")
	}
}
