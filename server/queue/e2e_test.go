package queue_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
)

// twoServers starts Knot with zones a.test, b.test, c.test and the reverse
// zone of 127.0.0.0/24, and two nodes: mx.a.test on 127.0.0.1 and mx.b.test
// on 127.0.0.2, on the same port, each the MX of its domain with SPF, DKIM
// and DMARC records published.
func twoServers(t testing.TB, inb *inbound.Options, qopt func(*queue.Options)) (*dnsWorld, *node, *node) {
	t.Helper()
	w := startDNS(t, "a.test", "b.test", "c.test", "0.0.127.in-addr.arpa")
	port := freePort(t, "127.0.0.1", "127.0.0.2")
	w.add(t, "a.test",
		"a.test. 300 IN MX 10 mx.a.test.",
		"mx.a.test. 300 IN A 127.0.0.1",
		txt("a.test.", "v=spf1 ip4:127.0.0.1 -all"),
		txt("mx.a.test.", "v=spf1 a -all"),
		txt("_dmarc.a.test.", "v=DMARC1; p=reject; adkim=s; aspf=s"),
	)
	w.add(t, "b.test",
		"b.test. 300 IN MX 10 mx.b.test.",
		"mx.b.test. 300 IN A 127.0.0.2",
		txt("b.test.", "v=spf1 ip4:127.0.0.2 -all"),
		txt("_dmarc.b.test.", "v=DMARC1; p=reject"),
	)
	w.add(t, "c.test",
		txt("c.test.", "v=spf1 -all"),
		txt("_dmarc.c.test.", "v=DMARC1; p=quarantine"),
	)
	w.add(t, "0.0.127.in-addr.arpa",
		"1.0.0.127.in-addr.arpa. 300 IN PTR mx.a.test.",
		"2.0.0.127.in-addr.arpa. 300 IN PTR mx.b.test.",
	)
	a := startNode(t, nodeConfig{domain: "a.test", host: "mx.a.test", ip: "127.0.0.1", port: port,
		users: []string{"alice@a.test"}, dns: w, inbound: inb, queue: qopt})
	b := startNode(t, nodeConfig{domain: "b.test", host: "mx.b.test", ip: "127.0.0.2", port: port,
		users: []string{"bob@b.test"}, dns: w, inbound: inb, queue: qopt})
	return w, a, b
}

func msg(from, to, subject string) string {
	return fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <%d@test>\r\n\r\nHello.\r\n.leading dot\r\n", from, to, subject, time.Now().UnixNano())
}

func TestTwoServers(t *testing.T) {
	_, a, b := twoServers(t, &inbound.Options{}, nil)
	ctx := context.Background()

	t.Run("delivered with dkim spf dmarc pass", func(t *testing.T) {
		a.submit(t, "alice@a.test", []string{"bob@b.test"}, msg("Alice <alice@a.test>", "bob@b.test", "hello"))
		got := b.waitMessages(t, "bob@b.test", "INBOX", 1, 10*time.Second)
		m := got[0]
		ar := authResults(t, m, "mx.b.test")
		for method, want := range map[string]string{"spf": "pass", "dmarc": "pass", "iprev": "pass"} {
			if !slices.Equal(ar[method], []string{want}) {
				t.Errorf("%s = %v, want [%s]\n%s", method, ar[method], want, m)
			}
		}
		if !slices.Equal(ar["dkim"], []string{"pass", "pass"}) {
			t.Errorf("dkim = %v, want two passes (ed25519 and rsa)\n%s", ar["dkim"], m)
		}
		if n := len(header(m, "DKIM-Signature")); n != 2 {
			t.Errorf("%d DKIM-Signature fields, want 2", n)
		}
		if !strings.Contains(m, "\r\n.leading dot\r\n") {
			t.Errorf("dot-stuffing broke the body:\n%s", m)
		}
		waitQueueEmpty(t, a)
	})

	t.Run("forged From rejected by p=reject", func(t *testing.T) {
		err := sendFrom(t, "127.0.0.3", b, "spammer@evil.test", "bob@b.test", msg("CEO <alice@a.test>", "bob@b.test", "wire money"))
		var se *gosmtp.SMTPError
		if !errorsAs(err, &se) || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "DMARC") {
			t.Fatalf("send forged From = %v, want 550 5.7.1 naming DMARC", err)
		}
	})

	t.Run("forged From quarantined by p=quarantine", func(t *testing.T) {
		before := len(b.messages(t, "bob@b.test", "INBOX"))
		body := "Authentication-Results: mx.b.test; dkim=pass header.d=c.test; dmarc=pass\r\n" +
			"Authentication-Results: other.example; spf=pass\r\n" + msg("boss@c.test", "bob@b.test", "urgent")
		if err := sendFrom(t, "127.0.0.3", b, "boss@c.test", "bob@b.test", body); err != nil {
			t.Fatalf("send: %v", err)
		}
		junk := b.waitMessages(t, "bob@b.test", "Junk", 1, 5*time.Second)
		ar := authResults(t, junk[0], "mx.b.test") // fails on two fields for mx.b.test
		if !slices.Equal(ar["dmarc"], []string{"fail"}) || !slices.Equal(ar["spf"], []string{"fail"}) || !slices.Equal(ar["iprev"], []string{"fail"}) {
			t.Errorf("results = %v, want dmarc, spf and iprev fail", ar)
		}
		if !strings.Contains(junk[0], "Authentication-Results: other.example; spf=pass") {
			t.Errorf("another server's Authentication-Results was removed")
		}
		if after := len(b.messages(t, "bob@b.test", "INBOX")); after != before {
			t.Errorf("INBOX went from %d to %d messages", before, after)
		}
	})

	t.Run("permanent failure bounces", func(t *testing.T) {
		before := len(a.messages(t, "alice@a.test", "INBOX"))
		a.submit(t, "alice@a.test", []string{"nobody@b.test", "bob@b.test"}, msg("alice@a.test", "nobody@b.test, bob@b.test", "to nobody"))
		got := a.waitMessages(t, "alice@a.test", "INBOX", before+1, 10*time.Second)
		d, err := queue.ParseDSN(strings.NewReader(got[len(got)-1]))
		if err != nil {
			t.Fatalf("parse DSN: %v\n%s", err, got[len(got)-1])
		}
		if d.ReportingMTA != "mx.a.test" || len(d.Recipients) != 1 {
			t.Fatalf("DSN = %+v", d)
		}
		r := d.Recipients[0]
		if r.Addr != "nobody@b.test" || r.Action != queue.ActionFailed || r.Status != "5.1.1" || r.RemoteMTA != "mx.b.test" || !strings.HasPrefix(r.Diagnostic, "550 5.1.1 ") {
			t.Errorf("DSN recipient = %+v", r)
		}
		if !strings.Contains(string(d.OriginalHeader), "Subject: to nobody") {
			t.Errorf("DSN original header = %q", d.OriginalHeader)
		}
		b.waitMessages(t, "bob@b.test", "INBOX", 2, 5*time.Second)
		waitQueueEmpty(t, a)
	})

	t.Run("down server retried", func(t *testing.T) {
		b.stopMX()
		before := len(b.messages(t, "bob@b.test", "INBOX"))
		a.submit(t, "alice@a.test", []string{"bob@b.test"}, msg("alice@a.test", "bob@b.test", "while down"))
		list := waitAttempts(t, a, 1)
		if list[0].Rcpts[0].State != queue.StatePending || !strings.Contains(list[0].Rcpts[0].Diagnostic, "connect") {
			t.Fatalf("after a failed attempt: %+v", list[0])
		}
		next := list[0].Next.Sub(a.clock.Now())
		if next != 5*time.Minute {
			t.Errorf("next attempt in %v, want 5m", next)
		}
		b.startMX(t)
		a.clock.Advance(4 * time.Minute)
		a.queue.Kick()
		time.Sleep(200 * time.Millisecond)
		if n := len(b.messages(t, "bob@b.test", "INBOX")); n != before {
			t.Fatalf("delivered before the retry time")
		}
		a.clock.Advance(time.Minute + time.Second)
		a.queue.Kick()
		b.waitMessages(t, "bob@b.test", "INBOX", before+1, 10*time.Second)
		waitQueueEmpty(t, a)
	})

	t.Run("list retry remove", func(t *testing.T) {
		b.stopMX()
		defer b.startMX(t)
		a.submit(t, "alice@a.test", []string{"bob@b.test"}, msg("alice@a.test", "bob@b.test", "to be removed"))
		list := waitAttempts(t, a, 1)
		if err := a.queue.Retry(ctx, list[0].ID); err != nil {
			t.Fatal(err)
		}
		list = waitAttempts(t, a, 2)
		if err := a.queue.Remove(ctx, list[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := a.queue.Remove(ctx, list[0].ID); !errorsIs(err, queue.ErrNotFound) {
			t.Errorf("second Remove = %v, want ErrNotFound", err)
		}
		waitQueueEmpty(t, a)
	})
}

// sendFrom sends a message to n's MX from the source address ip.
func sendFrom(t *testing.T, ip string, n *node, from, to, body string) error {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", net.JoinHostPort(n.ip, fmt.Sprint(n.port)))
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.evil.test"); err != nil {
		return err
	}
	if err := c.SendMail(from, []string{to}, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

// waitAttempts waits until the first queued record has had n attempts.
func waitAttempts(t *testing.T, n *node, attempts int) []queue.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := n.queue.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > 0 && list[0].Attempts >= attempts {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue of %s after 10s: %+v, want %d attempts", n.host, list, attempts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitQueueEmpty(t *testing.T, n *node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.queue.Len() > 0 {
		if time.Now().After(deadline) {
			list, _ := n.queue.List(context.Background())
			t.Fatalf("queue of %s not empty: %+v", n.host, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
