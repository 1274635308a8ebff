package smtp_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
)

// eaiQueue records whether each message was queued with SMTPUTF8.
type eaiQueue struct {
	mu   sync.Mutex
	msgs []eaiQueued
}

type eaiQueued struct {
	from string
	to   []string
	body string
	utf8 bool
}

func (q *eaiQueue) add(from string, to []string, body io.Reader, utf8 bool) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, eaiQueued{from, to, string(b), utf8})
	return nil
}

func (q *eaiQueue) Enqueue(ctx context.Context, from string, to []string, body io.Reader) error {
	return q.add(from, to, body, false)
}

func (q *eaiQueue) EnqueueSMTPUTF8(ctx context.Context, from string, to []string, body io.Reader) error {
	return q.add(from, to, body, true)
}

func (q *eaiQueue) all() []eaiQueued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]eaiQueued(nil), q.msgs...)
}

// eaiEnv adds users with international addresses to the test directory:
// anna in bücher.example (configured with its A-label) and δοκιμή in
// παράδειγμα.δοκιμή (configured with U-labels).
func eaiEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, auth.AuthenticatorOptions{})
	h := testHashes()
	users := []auth.User{
		{Address: "alice@example.test", PasswordHash: h[alicePW], Aliases: []string{"contact@example.test", "alice@παράδειγμα.δοκιμή"}},
		{Address: "bob@example.test", PasswordHash: h[bobPW]},
		{Address: "anna@xn--bcher-kva.example", PasswordHash: h[bobPW]},
		{Address: "δοκιμή@παράδειγμα.δοκιμή", PasswordHash: h[bobPW]},
	}
	for _, u := range []string{"anna@xn--bcher-kva.example", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"} {
		if err := e.st.EnsureUser(context.Background(), u, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.dir.Update([]string{"example.test", "xn--bcher-kva.example", "παράδειγμα.δοκιμή"}, users, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.auth.Update(users); err != nil {
		t.Fatal(err)
	}
	return e
}

const eaiMessage = "From: Δοκιμή <δοκιμή@παράδειγμα.δοκιμή>\r\n" +
	"To: Anna <anna@bücher.example>\r\n" +
	"Subject: Καλημέρα, ünïcödé\r\n" +
	"Message-ID: <1@παράδειγμα.δοκιμή>\r\n" +
	"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Γειά σου κόσμε.\r\n"

func TestSMTPUTF8MX(t *testing.T) {
	t.Parallel()
	e := eaiEnv(t)
	mx := e.start(t, smtp.ModeMX, nil)

	t.Run("EHLO advertises SMTPUTF8 and 8BITMIME", func(t *testing.T) {
		c := dial(t, mx, false)
		ehlo := c.expect("EHLO client.remote.example", 250, "")
		for _, ext := range []string{"SMTPUTF8", "8BITMIME"} {
			if !strings.Contains(ehlo, "\n"+ext) {
				t.Errorf("EHLO reply lacks %s:\n%s", ext, ehlo)
			}
		}
	})
	t.Run("international sender and recipients are delivered intact", func(t *testing.T) {
		c := dial(t, mx, false)
		c.expect("EHLO client.remote.example", 250, "")
		c.expect("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8 BODY=8BITMIME", 250, "")
		c.expect("RCPT TO:<ANNA@BÜCHER.example>", 250, "")
		c.expect("RCPT TO:<Δοκιμή@παράδειγμα.δοκιμή>", 250, "")
		// A-labels name the same mailbox.
		c.expect("RCPT TO:<anna@xn--bcher-kva.example>", 250, "")
		if code, msg := c.data(eaiMessage); code != 250 {
			t.Fatalf("DATA -> %d %s", code, msg)
		}
		for _, u := range []string{"anna@xn--bcher-kva.example", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"} {
			box := e.inbox(t, u)
			if len(box) != 1 {
				t.Fatalf("%s has %d messages, want 1", u, len(box))
			}
			m := box[0]
			if !strings.HasPrefix(m, "Received: from client.remote.example ([127.0.0.1])\r\n\tby mail.example.test with UTF8SMTP id") {
				t.Errorf("Received field does not say UTF8SMTP:\n%s", m)
			}
			if !strings.HasSuffix(m, "\r\n"+eaiMessage) {
				t.Errorf("%s: message not stored intact:\n%s", u, m)
			}
		}
	})
	t.Run("a Unicode look-alike of a local user is not that user", func(t *testing.T) {
		c := dial(t, mx, false)
		c.expect("EHLO client.remote.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example> SMTPUTF8", 250, "")
		c.expect("RCPT TO:<аlice@example.test>", 550, "5.1.1") // Cyrillic а
		c.expect("RCPT TO:<alice@exаmple.test>", 554, "5.7.1") // another domain
		c.expect("RCPT TO:<a\u200dlice@example.test>", 553, "5.1.3")
	})
	t.Run("without SMTPUTF8 a non-ASCII address gets 553 5.6.7", func(t *testing.T) {
		c := dial(t, mx, false)
		c.expect("EHLO client.remote.example", 250, "")
		c.expect("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή>", 553, "5.6.7")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:<anna@bücher.example>", 553, "5.6.7")
		c.expect("RCPT TO:<δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp>", 553, "5.6.7")
		c.expect("RCPT TO:<anna@xn--bcher-kva.example>", 250, "") // A-labels are ASCII
	})
}

func TestSMTPUTF8Submission(t *testing.T) {
	t.Parallel()
	e := eaiEnv(t)
	q := &eaiQueue{}
	sub := e.start(t, smtp.ModeSubmissions, func(o *smtp.Options) { o.Queue = q })
	login := func(t *testing.T) *client {
		c := dial(t, sub, true)
		c.expect("EHLO client.example.test", 250, "SMTPUTF8")
		c.expect("AUTH PLAIN "+plainIR("alice@example.test", alicePW), 235, "")
		return c
	}
	msg := strings.Replace(eaiMessage, "From: Δοκιμή <δοκιμή@παράδειγμα.δοκιμή>", "From: Alice <alice@παράδειγμα.δοκιμή>", 1)

	t.Run("international recipient is queued with SMTPUTF8", func(t *testing.T) {
		c := login(t)
		c.expect("MAIL FROM:<alice@παράδειγμα.δοκιμή> SMTPUTF8", 250, "")
		c.expect("RCPT TO:<χρήστης@εξωτερικό.example>", 250, "")
		if code, m := c.data(msg); code != 250 {
			t.Fatalf("DATA -> %d %s", code, m)
		}
		got := q.all()
		if len(got) != 1 || !got[0].utf8 || got[0].from != "alice@xn--hxajbheg2az3al.xn--jxalpdlp" ||
			len(got[0].to) != 1 || got[0].to[0] != "χρήστης@xn--qxaamertt3b6a.example" {
			t.Fatalf("queued %+v, want one SMTPUTF8 message from alice's A-label address to χρήστης@xn--qxaamertt3b6a.example", got)
		}
		if !strings.Contains(got[0].body, "with UTF8SMTPSA id") || !strings.HasSuffix(got[0].body, "\r\n"+msg) {
			t.Errorf("queued body lacks UTF8SMTPSA or is not intact:\n%s", got[0].body)
		}
	})
	t.Run("an ASCII message sent with SMTPUTF8 needs no SMTPUTF8 downstream", func(t *testing.T) {
		c := login(t)
		c.expect("MAIL FROM:<alice@example.test> SMTPUTF8", 250, "")
		c.expect("RCPT TO:<friend@remote.example>", 250, "")
		if code, m := c.data("From: alice@example.test\r\nSubject: plain\r\n\r\nhi\r\n"); code != 250 {
			t.Fatalf("DATA -> %d %s", code, m)
		}
		got := q.all()
		if len(got) != 2 || got[1].utf8 {
			t.Fatalf("queued %+v, want a second message without SMTPUTF8", got)
		}
	})
	t.Run("a user logs in with either spelling of an international address", func(t *testing.T) {
		for _, login := range []string{"Anna@Bücher.example", "anna@xn--bcher-kva.example", "ΔΟΚΙΜΉ@παράδειγμα.δοκιμή"} {
			c := dial(t, sub, true)
			c.expect("EHLO client.example.test", 250, "")
			c.expect("AUTH PLAIN "+plainIR(login, bobPW), 235, "")
			from := "anna@bücher.example"
			if strings.HasPrefix(login, "Δ") {
				from = "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"
			}
			c.expect("MAIL FROM:<"+from+"> SMTPUTF8", 250, "")
		}
	})
	t.Run("a queue that cannot keep SMTPUTF8 refuses before storing anything", func(t *testing.T) {
		sub2 := e.start(t, smtp.ModeSubmissions, nil) // memQueue: Enqueue only
		c := dial(t, sub2, true)
		c.expect("EHLO client.example.test", 250, "")
		c.expect("AUTH PLAIN "+plainIR("alice@example.test", alicePW), 235, "")
		c.expect("MAIL FROM:<alice@example.test> SMTPUTF8", 250, "")
		c.expect("RCPT TO:<anna@bücher.example>", 250, "")
		c.expect("RCPT TO:<χρήστης@εξωτερικό.example>", 250, "")
		if code, m := c.data(msg); code != 554 || !strings.HasPrefix(m, "5.6.7") {
			t.Fatalf("DATA -> %d %s, want 554 5.6.7", code, m)
		}
		if n := len(e.inbox(t, "anna@xn--bcher-kva.example")); n != 0 {
			t.Errorf("anna got %d messages of a refused transaction", n)
		}
	})
}
