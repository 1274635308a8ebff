package testenv

import (
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestStartDovecot fills a small Gmail-like mailbox and reads it back over
// both listeners: folder names (non-ASCII included), \Noselect parents,
// special-use attributes, message counts, flags and INTERNALDATEs.
func TestStartDovecot(t *testing.T) {
	d := StartDovecot(t, DovecotUser{"alice@example.com", "alice-source-pw"})
	fx := d.FillGmailLike(t, "alice@example.com", GmailOptions{Messages: 300, Large: []int{1 << 20}})

	c, err := imapclient.DialTLS(d.TLSAddr, &imapclient.Options{TLSConfig: d.ClientTLS()})
	if err != nil {
		t.Fatalf("DialTLS = %v", err)
	}
	defer c.Close()
	if err := c.Login("alice@example.com", "alice-source-pw").Wait(); err != nil {
		t.Fatalf("Login = %v", err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	attrs := map[string][]goimap.MailboxAttr{}
	for _, l := range list {
		attrs[l.Mailbox] = l.Attrs
		if l.Delim != '/' {
			t.Errorf("delimiter of %q = %q, want /", l.Mailbox, l.Delim)
		}
	}
	has := func(name string, a goimap.MailboxAttr) bool {
		for _, x := range attrs[name] {
			if x == a {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		name string
		attr goimap.MailboxAttr
	}{
		{"[Gmail]", goimap.MailboxAttrNoSelect},
		{"Work/Clients", goimap.MailboxAttrNoSelect},
		{GmailSent, goimap.MailboxAttrSent},
		{GmailAllMail, goimap.MailboxAttrAll},
		{GmailSpam, goimap.MailboxAttrJunk},
	} {
		if !has(tc.name, tc.attr) {
			t.Errorf("LIST %q attributes = %v, want %s", tc.name, attrs[tc.name], tc.attr)
		}
	}
	for name, msgs := range fx.Folders {
		if _, ok := attrs[name]; !ok {
			t.Errorf("folder %q not listed", name)
			continue
		}
		sd, err := c.Status(name, &goimap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatalf("Status %q = %v", name, err)
		}
		if int(*sd.NumMessages) != len(msgs) {
			t.Errorf("STATUS %q MESSAGES = %d, want %d", name, *sd.NumMessages, len(msgs))
		}
	}
	if len(fx.Folders[GmailAllMail]) < 200 || len(fx.Folders["INBOX"]) < 50 {
		t.Errorf("fixture too thin: All Mail %d, INBOX %d", len(fx.Folders[GmailAllMail]), len(fx.Folders["INBOX"]))
	}
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(goimap.SeqSetNum(1, 2, 3), &goimap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	byDate := map[time.Time]*FixtureMessage{}
	for _, m := range fx.Folders["INBOX"] {
		byDate[m.Date] = m
	}
	for _, m := range msgs {
		want := byDate[m.InternalDate.UTC()]
		if want == nil {
			t.Errorf("message %d: INTERNALDATE %v not in the fixture", m.SeqNum, m.InternalDate)
			continue
		}
		if m.RFC822Size != want.Size {
			t.Errorf("message %d: RFC822.SIZE = %d, want %d", m.SeqNum, m.RFC822Size, want.Size)
		}
		var flags []goimap.Flag
		for _, f := range m.Flags {
			if f != `\Recent` {
				flags = append(flags, f)
			}
		}
		if len(flags) != len(want.Flags) {
			t.Errorf("message %d: FLAGS = %v, want %v", m.SeqNum, m.Flags, want.Flags)
		}
	}
	// The plaintext listener serves the same store.
	p, err := imapclient.DialInsecure(d.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Login("alice@example.com", "alice-source-pw").Wait(); err != nil {
		t.Fatalf("plaintext Login = %v", err)
	}
	bad, err := imapclient.DialInsecure(d.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Login("alice@example.com", "wrong").Wait(); err == nil {
		t.Error("Login with a wrong password succeeded")
	}
}
