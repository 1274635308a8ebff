package smtp_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
)

// TestOpenRelay runs the classic open-relay tricks against the MX, with an
// outbound queue configured (so a refusal is the policy, not a missing
// queue), and checks that nothing is queued and nothing is delivered but the
// legitimate cases.
func TestOpenRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	tricks := []struct {
		name, from, rcpt string
		code             int
		enh              string
	}{
		{"plain relay", "<spammer@remote.example>", "<victim@remote.example>", 554, "5.7.1"},
		{"relay with local sender", "<alice@example.test>", "<victim@remote.example>", 554, "5.7.1"},
		{"relay with null sender", "<>", "<victim@remote.example>", 554, "5.7.1"},
		{"relay with postmaster sender", "<postmaster@example.test>", "<victim@remote.example>", 554, "5.7.1"},
		{"percent hack", "<x@remote.example>", "<victim%remote.example@example.test>", 553, "5.1.3"},
		{"percent hack quoted", "<x@remote.example>", `<"victim%remote.example"@example.test>`, 553, "5.1.3"},
		{"quoted local part with @", "<x@remote.example>", `<"victim@remote.example"@example.test>`, 553, "5.1.3"},
		{"two domains", "<x@remote.example>", "<victim@remote.example@example.test>", 553, "5.1.3"},
		{"two domains, local first", "<x@remote.example>", "<alice@example.test@remote.example>", 553, "5.1.3"},
		{"source route to remote", "<x@remote.example>", "<@example.test:victim@remote.example>", 554, "5.7.1"},
		{"source route chain to remote", "<x@remote.example>", "<@example.test,@mail.example.test:victim@remote.example>", 554, "5.7.1"},
		{"bang path", "<x@remote.example>", "<remote.example!victim@example.test>", 553, "5.1.3"},
		{"bang path with percent", "<x@remote.example>", "<remote.example!victim%other.example@example.test>", 553, "5.1.3"},
		{"IPv4 literal", "<x@remote.example>", "<victim@[127.0.0.1]>", 553, "5.1.3"},
		{"IPv6 literal", "<x@remote.example>", "<victim@[IPv6:::1]>", 553, "5.1.3"},
		{"bare IP domain", "<x@remote.example>", "<victim@127.0.0.1>", 553, "5.1.3"},
		{"trailing dot local domain", "<x@remote.example>", "<alice@example.test.>", 553, "5.1.3"},
		{"trailing dot remote domain", "<x@remote.example>", "<victim@remote.example.>", 553, "5.1.3"},
		{"local domain as prefix", "<x@remote.example>", "<victim@example.test.remote.example>", 554, "5.7.1"},
		{"subdomain of local domain", "<x@remote.example>", "<victim@sub.example.test>", 554, "5.7.1"},
		{"localhost", "<x@remote.example>", "<victim@localhost>", 553, "5.1.3"},
		{"Cyrillic look-alike domain", "<x@remote.example>", "<alice@exаmple.test>", 553, "5.6.7"}, // no SMTPUTF8; with it: TestSMTPUTF8MX
		{"non-ASCII local part", "<x@remote.example>", "<ålice@example.test>", 553, "5.6.7"},
		{"unknown local user", "<x@remote.example>", "<nobody@example.test>", 550, "5.1.1"},
		{"upper-case remote domain", "<x@remote.example>", "<victim@REMOTE.EXAMPLE>", 554, "5.7.1"},
	}
	for _, tc := range tricks {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, mx, false)
			c.expect("EHLO client.remote.example", 250, "")
			c.expect("MAIL FROM:"+tc.from, 250, "")
			code, msg := c.cmd("RCPT TO:" + tc.rcpt)
			if code != tc.code || !strings.HasPrefix(msg, tc.enh) {
				t.Fatalf("RCPT TO:%s -> %d %s, want %d %s", tc.rcpt, code, msg, tc.code, tc.enh)
			}
			// With no accepted recipient there is no transaction to complete.
			c.expect("DATA", 502, "")
		})
	}
	t.Run("AUTH on the MX does not unlock relaying", func(t *testing.T) {
		c := dial(t, mx, false)
		ehlo := c.expect("EHLO client.remote.example", 250, "")
		if strings.Contains(ehlo, "AUTH") {
			t.Errorf("MX advertises AUTH: %q", ehlo)
		}
		c.startTLS()
		ehlo = c.expect("EHLO client.remote.example", 250, "")
		if strings.Contains(ehlo, "AUTH") {
			t.Errorf("MX advertises AUTH after STARTTLS: %q", ehlo)
		}
		if code, _ := c.cmd("AUTH PLAIN " + plainIR("alice@example.test", alicePW)); code < 500 {
			t.Errorf("AUTH on the MX -> %d, want a 5xx refusal", code)
		}
		c.expect("MAIL FROM:<alice@example.test>", 250, "")
		c.expect("RCPT TO:<victim@remote.example>", 554, "5.7.1")
	})
	t.Run("a refused recipient among good ones", func(t *testing.T) {
		c := dial(t, mx, false)
		c.expect("EHLO client.remote.example", 250, "")
		c.expect("MAIL FROM:<x@remote.example>", 250, "")
		c.expect("RCPT TO:<alice@example.test>", 250, "")
		c.expect("RCPT TO:<victim@remote.example>", 554, "5.7.1")
		c.expect("RCPT TO:<victim%remote.example@example.test>", 553, "5.1.3")
		if code, msg := c.data("Subject: mixed\r\n\r\nbody\r\n"); code != 250 {
			t.Fatalf("DATA -> %d %s, want 250", code, msg)
		}
	})
	if q := e.queue.all(); len(q) != 0 {
		t.Fatalf("the MX queued %d messages for remote recipients: %+v", len(q), q)
	}
	if n := len(e.inbox(t, "alice@example.test")); n != 1 {
		t.Errorf("alice has %d messages, want only the mixed one", n)
	}
	if n := len(e.inbox(t, "bob@example.test")); n != 0 {
		t.Errorf("bob has %d messages, want 0", n)
	}
}

// TestLegitimateRecipients checks what the MX must accept, and where each
// lands.
func TestLegitimateRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.AuthenticatorOptions{})
	mx := e.start(t, smtp.ModeMX, nil)
	tests := []struct {
		rcpt   string
		users  []string
		queued string
	}{
		{"<alice@example.test>", []string{"alice@example.test"}, ""},
		{"<ALICE@Example.TEST>", []string{"alice@example.test"}, ""},
		{"<alice+lists@example.test>", []string{"alice@example.test"}, ""},
		{"<contact@example.test>", []string{"alice@example.test"}, ""},
		{"<postmaster@example.test>", []string{"alice@example.test"}, ""},
		{"<team@example.test>", []string{"alice@example.test", "bob@example.test"}, ""},
		{"<anyone@example.org>", []string{"bob@example.test"}, ""},
		{`<"alice"@example.test>`, []string{"alice@example.test"}, ""},
		{"<@relay.remote.example:bob@example.test>", []string{"bob@example.test"}, ""}, // route ignored (RFC 5321 3.6.1)
		{"<fwd@example.test>", nil, "friend@remote.example"},                           // alias forwarding outside
	}
	counts := map[string]int{}
	queued := 0
	for _, tc := range tests {
		t.Run(tc.rcpt, func(t *testing.T) {
			c := dial(t, mx, false)
			c.expect("EHLO client.remote.example", 250, "")
			c.expect("MAIL FROM:<sender@remote.example>", 250, "")
			c.expect("RCPT TO:"+tc.rcpt, 250, "")
			if code, msg := c.data("Subject: " + tc.rcpt + "\r\n\r\nhello\r\n"); code != 250 {
				t.Fatalf("DATA -> %d %s, want 250", code, msg)
			}
			c.expect("QUIT", 221, "")
			for _, u := range tc.users {
				counts[u]++
				box := e.inbox(t, u)
				if len(box) != counts[u] || !strings.Contains(box[len(box)-1], "Subject: "+tc.rcpt) {
					t.Errorf("%s: %d messages (want %d), last one not ours", u, len(box), counts[u])
				}
			}
			if tc.queued != "" {
				queued++
				q := e.queue.all()
				if len(q) != queued || strings.Join(q[len(q)-1].to, ",") != tc.queued || q[len(q)-1].from != "sender@remote.example" {
					t.Errorf("queue = %+v, want the message for %s", q, tc.queued)
				}
			}
		})
	}
}
