package smtp_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/internal/limits"
	"github.com/mailctl/mailctl/server/smtp"
)

// rawData sends DATA and then raw exactly as given (no dot-stuffing, no
// line-ending fixes; raw must end with the final "\r\n.\r\n"), and returns
// the final reply.
func (c *client) rawData(raw string) (int, string) {
	c.t.Helper()
	c.expect("DATA", 354, "")
	if _, err := c.tp.W.WriteString(raw); err != nil {
		c.t.Fatalf("write data: %v", err)
	}
	if err := c.tp.W.Flush(); err != nil {
		c.t.Fatalf("write data: %v", err)
	}
	return c.read()
}

// login opens an authenticated submission session (implicit TLS).
func login(t *testing.T, addr, user, pw string) *client {
	c := dial(t, addr, true)
	c.expect("EHLO client.example", 250, "")
	c.expect("AUTH PLAIN "+plainIR(user, pw), 235, "")
	return c
}

func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	subs := e.start(t, smtp.ModeSubmissions, nil)
	// Header bytes: "From: alice@example.test\r\n" (26) + the lines + the
	// empty line (2).
	kpad := "X-Pad: " + strings.Repeat("p", 991) + "\r\n" // 1000 bytes
	tests := []struct {
		name   string
		header string
		code   int
		enh    string
	}{
		{"lines at the limit", strings.Repeat("X-A: b\r\n", limits.MaxHeaderLines-1), 250, "2.0.0"},
		{"one line too many", strings.Repeat("X-A: b\r\n", limits.MaxHeaderLines), 552, "5.3.4"},
		{"400 000 short lines", strings.Repeat("X-A: b\r\n", 400000), 552, "5.3.4"},
		{"bytes at the limit", strings.Repeat(kpad, 1048) + "X-B: " + strings.Repeat("b", limits.MaxHeaderBytes-1048*1000-26-5-4) + "\r\n", 250, "2.0.0"},
		{"bytes over the limit", strings.Repeat(kpad, 1048) + "X-B: " + strings.Repeat("b", limits.MaxHeaderBytes-1048*1000-26-5-3) + "\r\n", 552, "5.3.4"},
		{"folded lines count", "X-A: b\r\n" + strings.Repeat(" b\r\n", limits.MaxHeaderLines), 552, "5.3.4"},
		{"no empty line, 2 MiB", strings.Repeat("X-C: "+strings.Repeat("c", 30000)+"\r\n", 70), 552, "5.3.4"},
	}
	for _, port := range []string{"mx", "submission"} {
		for _, tc := range tests {
			t.Run(port+"/"+tc.name, func(t *testing.T) {
				var c *client
				if port == "mx" {
					c = dial(t, mx, false)
					c.expect("EHLO client.example", 250, "")
				} else {
					c = login(t, subs, "alice@example.test", alicePW)
				}
				before := len(e.inbox(t, "bob@example.test"))
				c.expect("MAIL FROM:<alice@example.test>", 250, "")
				c.expect("RCPT TO:<bob@example.test>", 250, "")
				// Folded lines must follow a field.
				msg := "From: alice@example.test\r\n" + tc.header + "\r\nbody\r\n"
				if strings.HasPrefix(tc.name, "no empty line") {
					msg = "From: alice@example.test\r\n" + tc.header
				}
				if code, reply := c.data(msg); code != tc.code || !strings.HasPrefix(reply, tc.enh) {
					t.Fatalf("DATA -> %d %s, want %d %s", code, reply, tc.code, tc.enh)
				}
				got := len(e.inbox(t, "bob@example.test")) - before
				if want := map[bool]int{true: 1, false: 0}[tc.code == 250]; got != want {
					t.Errorf("bob got %d messages, want %d", got, want)
				}
				// The session goes on.
				c.expect("MAIL FROM:<alice@example.test>", 250, "")
			})
		}
	}
}

func TestSmuggling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	subs := e.start(t, smtp.ModeSubmissions, nil)
	// After the fake end of data, a second transaction a next hop that
	// ends lines at a lone CR or LF would run. ("\r\n.\rMAIL" needs no
	// test: go-smtp drops the ".\r" as net/textproto does.)
	second := "MAIL FROM:<ceo@example.test>\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\nFrom: ceo@example.test\r\n\r\npay now\r\n"
	head := "From: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
	variants := map[string]string{
		"CR.CR":   head + "x\r.\r" + second,
		"CR.CRLF": head + "x\r.\r\n" + second,
		"LF.LF":   head + "x\n.\n" + second,
		"LF.CRLF": head + "x\n.\r\n" + second,
		"CRLF.LF": head + "x\r\n.\n" + second,
	}
	for name, body := range variants {
		t.Run(name, func(t *testing.T) {
			// Authenticated submission to a remote recipient.
			c := login(t, subs, "alice@example.test", alicePW)
			c.expect("MAIL FROM:<alice@example.test>", 250, "")
			c.expect("RCPT TO:<friend@remote.example>", 250, "")
			if code, reply := c.rawData(body + "\r\n.\r\n"); code != 550 || !strings.HasPrefix(reply, "5.6.0") {
				t.Errorf("submission: DATA -> %d %s, want 550 5.6.0", code, reply)
			}
			// Mail from outside forwarded by an alias.
			m := dial(t, mx, false)
			m.expect("EHLO client.example", 250, "")
			m.expect("MAIL FROM:<x@remote.example>", 250, "")
			m.expect("RCPT TO:<fwd@example.test>", 250, "")
			if code, reply := m.rawData(body + "\r\n.\r\n"); code != 550 || !strings.HasPrefix(reply, "5.6.0") {
				t.Errorf("forwarded: DATA -> %d %s, want 550 5.6.0", code, reply)
			}
		})
	}
	if q := e.queue.all(); len(q) != 0 {
		t.Errorf("%d messages queued for relay, want none: %q", len(q), q)
	}
	t.Run("local delivery on the MX keeps the message", func(t *testing.T) {
		m := dial(t, mx, false)
		m.expect("EHLO client.example", 250, "")
		m.expect("MAIL FROM:<x@remote.example>", 250, "")
		m.expect("RCPT TO:<bob@example.test>", 250, "")
		if code, reply := m.rawData(variants["CR.CRLF"] + "\r\n.\r\n"); code != 250 {
			t.Errorf("MX to a local user: DATA -> %d %s, want 250", code, reply)
		}
	})
	t.Run("clean message relayed", func(t *testing.T) {
		c := login(t, subs, "alice@example.test", alicePW)
		c.expect("MAIL FROM:<alice@example.test>", 250, "")
		c.expect("RCPT TO:<friend@remote.example>", 250, "")
		if code, reply := c.rawData(head + "..line with a dot\r\n.\r\n"); code != 250 {
			t.Fatalf("DATA -> %d %s, want 250", code, reply)
		}
		q := e.queue.all()
		if len(q) != 1 || !strings.HasSuffix(q[0].body, "\r\n\r\nhello\r\n.line with a dot\r\n") {
			t.Errorf("queued %q, want the message", q)
		}
	})
}

// TestFromHeaderBypass: bob may not sign mail as alice by hiding her
// address where the check does not look but receivers do.
func TestFromHeaderBypass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	subs := e.start(t, smtp.ModeSubmissions, nil)
	padding := ""
	for i := range 270 {
		padding += fmt.Sprintf("X-Pad-%d: %s\r\n", i, strings.Repeat("p", 990))
	}
	tests := []struct {
		name   string
		header string
		code   int
		enh    string
	}{
		{"own From", "From: <bob@example.test>\r\n", 250, "2.0.0"},
		{"alice's From", "From: <alice@example.test>\r\n", 550, "5.7.1"},
		{"second From past 256 KiB", "From: <bob@example.test>\r\n" + padding + "From: <alice@example.test>\r\n", 550, "5.6.0"},
		{"blank before colon", "From: <bob@example.test>\r\nFrom : <alice@example.test>\r\n", 550, "5.6.0"},
		{"only From with blank before colon", "From : <alice@example.test>\r\n", 550, "5.6.0"},
		{"bare CR", "From: <bob@example.test>\r\nX-A: a\rFrom: <alice@example.test>\r\n", 550, "5.6.0"},
		{"bare LF", "From: <bob@example.test>\r\nX-A: a\nFrom: <alice@example.test>\r\n", 550, "5.6.0"},
		{"line without colon", "From: <bob@example.test>\r\nno colon here\r\n", 550, "5.6.0"},
		{"line without colon hiding From", "X-A: a\r\nnot a field\r\nFrom: <alice@example.test>\r\n", 550, "5.6.0"},
		{"tab before colon", "From\t: <alice@example.test>\r\nFrom: <bob@example.test>\r\n", 550, "5.6.0"},
	}
	c := login(t, subs, "bob@example.test", bobPW)
	for _, tc := range tests {
		c.expect("MAIL FROM:<bob@example.test>", 250, "")
		c.expect("RCPT TO:<alice@example.test>", 250, "")
		if code, reply := c.rawData(tc.header + "Subject: x\r\n\r\nbody\r\n.\r\n"); code != tc.code || !strings.HasPrefix(reply, tc.enh) {
			t.Errorf("%s: DATA -> %d %s, want %d %s", tc.name, code, reply, tc.code, tc.enh)
		}
	}
	if n := len(e.inbox(t, "alice@example.test")); n != 1 {
		t.Errorf("alice has %d messages, want only bob's own", n)
	}
}

func TestLongLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	subs := e.start(t, smtp.ModeSubmissions, nil)
	for _, n := range []int{2000, 10000, limits.MaxLineBytes - 2} {
		c := dial(t, mx, false)
		c.expect("EHLO client.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:<bob@example.test>", 250, "")
		if code, reply := c.data("Subject: long\r\n\r\n" + strings.Repeat("x", n) + "\r\n"); code != 250 {
			t.Errorf("MX, line of %d bytes -> %d %s, want 250", n, code, reply)
		}
	}
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	c.expect("RCPT TO:<bob@example.test>", 250, "")
	if code, reply := c.data("Subject: long\r\n\r\n" + strings.Repeat("x", limits.MaxLineBytes+10) + "\r\n"); code != 500 || !strings.HasPrefix(reply, "5.4.0") {
		t.Errorf("MX, line over %d bytes -> %d %s, want 500 5.4.0", limits.MaxLineBytes, code, reply)
	}
	if n := len(e.inbox(t, "bob@example.test")); n != 3 {
		t.Errorf("bob has %d messages, want 3", n)
	}
	// What leaves keeps to RFC 5322's 998.
	s := login(t, subs, "alice@example.test", alicePW)
	for _, tc := range []struct {
		rcpt string
		n    int
		code int
	}{
		{"friend@remote.example", 998, 250},
		{"friend@remote.example", 999, 550},
		{"bob@example.test", 5000, 250},
	} {
		s.expect("MAIL FROM:<alice@example.test>", 250, "")
		s.expect("RCPT TO:<"+tc.rcpt+">", 250, "")
		if code, reply := s.data("From: alice@example.test\r\n\r\n" + strings.Repeat("y", tc.n) + "\r\n"); code != tc.code {
			t.Errorf("submission to %s, line of %d bytes -> %d %s, want %d", tc.rcpt, tc.n, code, reply, tc.code)
		}
	}
	// Mail from outside to an alias that forwards is folded for relay.
	m := dial(t, mx, false)
	m.expect("EHLO client.example", 250, "")
	m.expect("MAIL FROM:<x@remote.example>", 250, "")
	m.expect("RCPT TO:<fwd@example.test>", 250, "")
	long := strings.Repeat("0123456789", 250)
	if code, reply := m.data("Subject: long\r\n\r\n" + long + "\r\nend\r\n"); code != 250 {
		t.Errorf("MX to a forwarding alias, line of 2500 bytes -> %d %s, want 250", code, reply)
	}
	q := e.queue.all()
	if len(q) != 2 {
		t.Fatalf("%d messages queued, want 2 (the 998-byte line, the forwarded one)", len(q))
	}
	fwd := q[1].body
	for _, l := range strings.Split(fwd, "\r\n") {
		if len(l) > limits.MaxOutgoingLineBytes {
			t.Errorf("forwarded message has a line of %d bytes", len(l))
		}
	}
	if !strings.HasSuffix(strings.ReplaceAll(fwd, "\r\n ", ""), "\r\n\r\n"+long+"\r\nend\r\n") {
		t.Errorf("forwarded message, unfolded, is not the original: %q", fwd)
	}
}

// TestBarePostmaster: RFC 5321 section 4.5.1 says a server MUST accept
// "RCPT TO:<Postmaster>" without a domain, in any case, and deliver it to
// its postmaster: here the postmaster of the host name's domain
// (mail.example.test -> postmaster@example.test, an alias of alice), in
// plaintext and after STARTTLS.
func TestBarePostmaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	for i, rcpt := range []string{"<Postmaster>", "<postmaster>", "<POSTMASTER>"} {
		c := dial(t, mx, false)
		c.expect("EHLO client.example", 250, "")
		if i == 2 {
			c.startTLS()
			c.expect("EHLO client.example", 250, "")
		}
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:"+rcpt, 250, "")
		if code, reply := c.data(fmt.Sprintf("Subject: to the postmaster %d\r\n\r\nhello\r\n", i)); code != 250 {
			t.Errorf("DATA to %s -> %d %s, want 250", rcpt, code, reply)
		}
	}
	got := e.inbox(t, "alice@example.test")
	if len(got) != 3 {
		t.Fatalf("alice (postmaster@example.test) has %d messages, want 3", len(got))
	}
	for i, m := range got {
		if !strings.Contains(m, fmt.Sprintf("Subject: to the postmaster %d", i)) {
			t.Errorf("message %d of alice:\n%s", i, m)
		}
	}
	// Still no domain-less address other than Postmaster.
	c := dial(t, mx, false)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<x@remote.example>", 250, "")
	if code, _ := c.cmd("RCPT TO:<alice>"); code/100 != 5 {
		t.Errorf("RCPT TO:<alice> -> %d, want 5xx", code)
	}
}
