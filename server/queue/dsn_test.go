package queue

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDSNRoundTrip(t *testing.T) {
	d := &DSN{
		ReportingMTA: "mx.a.test", From: "MAILER-DAEMON@mx.a.test", To: "alice@a.test",
		Date: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), ArrivalDate: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
		MessageID: "x@mx.a.test",
		Recipients: []DSNRecipient{
			{Addr: "bob@b.test", Action: ActionFailed, Status: "5.1.1", RemoteMTA: "mx.b.test", Diagnostic: "550 5.1.1 No such user\r\nhere"},
			{Addr: "carol@b.test", Action: ActionDelayed, Status: "4.4.1", Diagnostic: "connect: refused", WillRetryUntil: time.Date(2026, 3, 6, 9, 0, 0, 0, time.UTC)},
		},
		OriginalHeader: []byte("From: alice@a.test\r\nSubject: hi\r\n"),
	}
	b := d.Bytes()
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Content-Type: message/delivery-status\r\n",
		"Content-Type: text/rfc822-headers\r\n",
		"Final-Recipient: rfc822; bob@b.test\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.b.test\r\nDiagnostic-Code: smtp; 550 5.1.1 No such user  here\r\n",
		"Subject: Undelivered Mail Returned to Sender\r\n",
		"Auto-Submitted: auto-replied\r\n",
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("DSN lacks %q:\n%s", want, b)
		}
	}
	got, err := ParseDSN(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got.ReportingMTA != d.ReportingMTA || got.To != d.To || got.From != d.From || !got.ArrivalDate.Equal(d.ArrivalDate) || len(got.Recipients) != 2 {
		t.Fatalf("ParseDSN = %+v", got)
	}
	if r := got.Recipients[1]; r.Addr != "carol@b.test" || r.Action != ActionDelayed || !r.WillRetryUntil.Equal(d.Recipients[1].WillRetryUntil) {
		t.Errorf("second recipient = %+v", r)
	}
	if !strings.Contains(string(got.OriginalHeader), "Subject: hi") {
		t.Errorf("original header = %q", got.OriginalHeader)
	}
	if _, err := ParseDSN(strings.NewReader("From: a@b\r\nContent-Type: text/plain\r\n\r\nhi\r\n")); err != ErrNotDSN {
		t.Errorf("ParseDSN(plain message) = %v, want ErrNotDSN", err)
	}
}

// FuzzDSN checks that any recipient data makes a notification that parses
// back to the same (sanitized) values, one header line each.
func FuzzDSN(f *testing.F) {
	f.Add("bob@b.test", "5.1.1", "mx.b.test", "550 5.1.1 No such user", "Subject: x\r\n")
	f.Add("a;b@c", "4.4.7", "", "line1\r\nline2\x00\xff", "--boundary\r\n")
	f.Fuzz(func(t *testing.T, addr, status, mta, diag, orig string) {
		d := &DSN{ReportingMTA: "mx.a.test", From: "MAILER-DAEMON@mx.a.test", To: "alice@a.test",
			Recipients:     []DSNRecipient{{Addr: addr, Action: ActionFailed, Status: status, RemoteMTA: mta, Diagnostic: diag}},
			OriginalHeader: []byte(orig)}
		b := d.Bytes()
		for _, l := range bytes.Split(b, []byte("\r\n")) {
			if len(l) > 998 {
				t.Fatalf("line of %d bytes", len(l))
			}
		}
		got, err := ParseDSN(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("ParseDSN: %v\n%q", err, b)
		}
		if len(got.Recipients) != 1 {
			t.Fatalf("%d recipients parsed\n%q", len(got.Recipients), b)
		}
		r := got.Recipients[0]
		if r.Addr != typedValue(headerValue(addr)) && r.Addr != headerValue(addr) || r.Status != headerValue(status) || r.Diagnostic != headerValue(diag) && headerValue(diag) != "" {
			t.Fatalf("parsed %+v from addr=%q status=%q diag=%q", r, addr, status, diag)
		}
	})
}

// FuzzParseDSN feeds arbitrary messages to the parser.
func FuzzParseDSN(f *testing.F) {
	d := &DSN{ReportingMTA: "mx.a.test", To: "a@b", Recipients: []DSNRecipient{{Addr: "x@y", Action: "failed", Status: "5.0.0"}}}
	f.Add(d.Bytes())
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; b\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseDSN(bytes.NewReader(b))
	})
}
