package queue_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/queue"
)

// asciiPeer is an SMTP server that does not offer SMTPUTF8 (go-smtp with
// EnableSMTPUTF8 off), recording what it is sent.
type asciiPeer struct {
	mu    sync.Mutex
	mails []string // reverse paths of MAIL commands
	data  []string
}

func (p *asciiPeer) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &asciiSession{p: p}, nil }

type asciiSession struct{ p *asciiPeer }

func (s *asciiSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.mails = append(s.p.mails, from)
	return nil
}
func (s *asciiSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s *asciiSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.data = append(s.p.data, string(b))
	return err
}
func (s *asciiSession) Reset()        {}
func (s *asciiSession) Logout() error { return nil }

func (p *asciiPeer) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mails), len(p.data)
}

const eaiBody = "From: Alice <alice@a.test>\r\nTo: Δοκιμή <δοκιμή@%s>\r\nSubject: Καλημέρα\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <%d@a.test>\r\n\r\nΓειά σου.\r\n"

// TestSMTPUTF8Outbound sends messages that need SMTPUTF8 to a next hop
// that offers it (the other node's MX, delivered) and to one that does not
// (refused without sending MAIL: 5.6.7 DSN, RFC 6533 form).
func TestSMTPUTF8Outbound(t *testing.T) {
	w, a, b := pair(t, []string{"c.test"}, nil)
	ctx := context.Background()
	for _, n := range []*node{a, b} {
		users := []string{"alice@" + n.domain, "δοκιμή@" + n.domain}
		for _, u := range users {
			if err := n.store.EnsureUser(ctx, u, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.dir.Update([]string{n.domain}, authUsers(users...), nil); err != nil {
			t.Fatal(err)
		}
	}
	// c.test's MX lacks SMTPUTF8.
	peer := &asciiPeer{}
	srv := gosmtp.NewServer(peer)
	srv.Domain = "mx.c.test"
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.3", fmt.Sprint(a.port)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	w.add(t, "c.test", "c.test. 300 IN MX 10 mx.c.test.", "mx.c.test. 300 IN A 127.0.0.3")

	t.Run("next hop with SMTPUTF8 gets it", func(t *testing.T) {
		body := fmt.Sprintf(eaiBody, "b.test", time.Now().UnixNano())
		a.submit(t, "alice@a.test", []string{"δοκιμή@b.test"}, body)
		got := b.waitMessages(t, "δοκιμή@b.test", "INBOX", 1, 10*time.Second)
		if !strings.Contains(got[0], "by mx.b.test with UTF8SMTPS") || !strings.HasSuffix(got[0], "\r\n"+body) {
			t.Errorf("message at b not received with UTF8SMTPS or not intact:\n%s", got[0])
		}
		waitQueueEmpty(t, a)
	})
	t.Run("next hop without SMTPUTF8: no downgrade, 5.6.7 DSN", func(t *testing.T) {
		body := fmt.Sprintf(eaiBody, "c.test", time.Now().UnixNano())
		a.submit(t, "alice@a.test", []string{"δοκιμή@c.test"}, body)
		d := lastDSN(t, a, "alice@a.test", 1)
		if len(d.Recipients) != 1 || d.Recipients[0].Status != "5.6.7" || d.Recipients[0].Action != queue.ActionFailed ||
			d.Recipients[0].Addr != "δοκιμή@c.test" || !strings.Contains(d.Recipients[0].Diagnostic, "SMTPUTF8") {
			t.Errorf("DSN recipients = %+v, want δοκιμή@c.test failed 5.6.7 (SMTPUTF8)", d.Recipients)
		}
		raw := a.messages(t, "alice@a.test", "INBOX")[0]
		for _, want := range []string{"report-type=global-delivery-status", "Content-Type: message/global-delivery-status",
			"Final-Recipient: utf-8; δοκιμή@c.test", "Content-Type: message/global-headers", "Subject: Καλημέρα"} {
			if !strings.Contains(raw, want) {
				t.Errorf("DSN lacks %q:\n%s", want, raw)
			}
		}
		if mails, _ := peer.counts(); mails != 0 {
			t.Errorf("peer without SMTPUTF8 got %d MAIL commands, want none", mails)
		}
		waitQueueEmpty(t, a)
	})
	t.Run("the DSN to an international sender is itself delivered", func(t *testing.T) {
		body := fmt.Sprintf(eaiBody, "c.test", time.Now().UnixNano())
		body = strings.Replace(body, "From: Alice <alice@a.test>", "From: <δοκιμή@a.test>", 1)
		if err := a.queue.EnqueueSMTPUTF8(ctx, "δοκιμή@a.test", []string{"x@c.test"}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		d := lastDSN(t, a, "δοκιμή@a.test", 1)
		if d.To != "δοκιμή@a.test" || len(d.Recipients) != 1 || d.Recipients[0].Status != "5.6.7" {
			t.Errorf("DSN = To %q, %+v; want to δοκιμή@a.test, 5.6.7", d.To, d.Recipients)
		}
		waitQueueEmpty(t, a)
	})
	t.Run("an ASCII message still goes to that next hop", func(t *testing.T) {
		enqueue(t, a, "alice@a.test", "bob@c.test")
		waitQueueEmpty(t, a)
		if mails, datas := peer.counts(); mails != 1 || datas != 1 {
			t.Errorf("peer got %d MAIL, %d DATA; want 1, 1", mails, datas)
		}
	})
}
