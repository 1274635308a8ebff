package smtp_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
)

// trickle writes s to conn one byte every gap, until a write fails.
func trickle(conn net.Conn, s string, gap time.Duration) {
	for i := 0; i < len(s); i++ {
		if _, err := conn.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(gap)
	}
}

// repliesUntilClose reads reply lines until the server closes the
// connection (or 10 s pass) and returns them.
func repliesUntilClose(t *testing.T, c *client) []string {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	r := bufio.NewReader(c.conn)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			lines = append(lines, strings.TrimSpace(line))
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after 10 s; replies %q", lines)
			}
			return lines
		}
	}
}

// TestSlowloris: a command line cut by the time-out is not acted on and the
// connection is closed; a DATA body trickled a byte at a time is dropped
// after DataTimeout even though no single read waits long.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	lim := func(o *smtp.Options) {
		o.Limits.Timeout = time.Second
		o.Limits.DataTimeout = 2 * time.Second
	}
	mx := e.start(t, smtp.ModeMX, lim)
	subs := e.start(t, smtp.ModeSubmissions, lim)

	partial := func(t *testing.T, c *client, line string, tls bool) {
		start := time.Now()
		// 40 ms a byte: cut after about 25 bytes, before the line's end.
		go trickle(c.conn, line+"\r\n", 40*time.Millisecond)
		replies := repliesUntilClose(t, c)
		d := time.Since(start)
		// Under TLS nothing more can be said (go-smtp's replies to the cut
		// line are records the client would have to read first).
		if !tls && (len(replies) == 0 || !strings.HasPrefix(replies[len(replies)-1], "421 4.4.2")) {
			t.Errorf("replies %q, want a last 421 4.4.2", replies)
		}
		for _, r := range replies {
			if !strings.HasPrefix(r, "421 ") {
				t.Errorf("partial line %q acted on: reply %q", line, r)
			}
		}
		if d < 900*time.Millisecond || d > 3*time.Second {
			t.Errorf("closed after %v, want about 1 s", d)
		}
	}
	t.Run("command on the MX", func(t *testing.T) {
		t.Parallel()
		c := dial(t, mx, false)
		c.expect("EHLO client.example", 250, "")
		partial(t, c, "MAIL FROM:<someone@remote.example> SIZE=100", false)
	})
	t.Run("RCPT on the MX", func(t *testing.T) {
		t.Parallel()
		c := dial(t, mx, false)
		c.expect("EHLO client.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		partial(t, c, "RCPT TO:<bob@example.test> NOTIFY=NEVER", false)
	})
	t.Run("command over TLS", func(t *testing.T) {
		t.Parallel()
		c := login(t, subs, "alice@example.test", alicePW)
		partial(t, c, "MAIL FROM:<alice@example.test> BODY=8BITMIME", true)
	})
	t.Run("DATA a byte at a time", func(t *testing.T) {
		t.Parallel()
		c := dial(t, mx, false)
		c.expect("EHLO client.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:<carol@example.test>", 250, "")
		c.expect("DATA", 354, "")
		start := time.Now()
		go trickle(c.conn, "Subject: slow\r\n\r\n"+strings.Repeat("x", 100)+"\r\n.\r\n", 200*time.Millisecond)
		replies := repliesUntilClose(t, c)
		d := time.Since(start)
		if len(replies) == 0 || !strings.HasPrefix(replies[0], "421 4.4.2") {
			t.Errorf("replies %q, want 421 4.4.2", replies)
		}
		if d < 1900*time.Millisecond || d > 4*time.Second {
			t.Errorf("closed after %v, want about 2 s (DataTimeout)", d)
		}
	})
	t.Run("DATA idle", func(t *testing.T) {
		t.Parallel()
		c := dial(t, mx, false)
		c.expect("EHLO client.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:<carol@example.test>", 250, "")
		c.expect("DATA", 354, "")
		start := time.Now()
		c.conn.Write([]byte("Subject: idle\r\n\r\nhalf a message\r\nMAIL FROM:<a@b>\r\n"))
		replies := repliesUntilClose(t, c)
		if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
			t.Errorf("closed after %v, want about 1 s", d)
		}
		if len(replies) == 0 || !strings.HasPrefix(replies[0], "421 4.4.2") {
			t.Errorf("replies %q, want 421 4.4.2", replies)
		}
	})
	if n := len(e.inbox(t, "carol@example.test")) + len(e.inbox(t, "bob@example.test")); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
}
