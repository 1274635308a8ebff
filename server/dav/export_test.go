package dav_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-vcard"

	"github.com/mailctl/mailctl/server/dav"
)

const tzEvent = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Paris:20260110T100000\r\nSUMMARY:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// TestExportTar: a user's calendars and address books come out as one
// .ics per calendar (events merged, each time zone once) and one .vcf
// per address book, which go-ical and go-vcard read back whole.
func TestExportTar(t *testing.T) { testExportTar(t, newServer) }

func testExportTar(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	ctx := context.Background()
	col := "/dav/alice@example.org/calendars/default/"
	for _, ev := range []struct{ uid, sum string }{{"e1", "One"}, {"e2", "Two"}} {
		body := strings.Replace(strings.Replace(tzEvent, "%s", ev.uid, 1), "%s", ev.sum, 1)
		if resp, _ := s.do(t, "alice@example.org", "PUT", col+ev.uid+".ics", body, map[string]string{"Content-Type": "text/calendar"}); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %s", ev.uid, resp.Status)
		}
	}
	for _, c := range []string{"c1", "c2", "c3"} {
		if resp, _ := s.do(t, "alice@example.org", "PUT", "/dav/alice@example.org/contacts/default/"+c+".vcf", card(c, "Name "+c), map[string]string{"Content-Type": "text/vcard"}); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %s", c, resp.Status)
		}
	}
	if err := s.st.CreateCollection(ctx, "alice@example.org", dav.Collection{Kind: dav.Calendars, Name: "empty"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := dav.ExportTar(ctx, s.st, "alice@example.org", &buf); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	if len(files) != 3 {
		t.Fatalf("export files = %v, want calendars/default.ics, calendars/empty.ics, contacts/default.vcf", files)
	}
	cal, err := ical.NewDecoder(strings.NewReader(files["calendars/default.ics"])).Decode()
	if err != nil {
		t.Fatalf("default.ics: %v\n%s", err, files["calendars/default.ics"])
	}
	if n := len(cal.Events()); n != 2 {
		t.Errorf("default.ics has %d events, want 2", n)
	}
	if n := strings.Count(files["calendars/default.ics"], "BEGIN:VTIMEZONE"); n != 1 {
		t.Errorf("default.ics has %d VTIMEZONE, want the shared one once", n)
	}
	if !strings.HasPrefix(files["calendars/empty.ics"], "BEGIN:VCALENDAR") {
		t.Errorf("empty.ics = %q", files["calendars/empty.ics"])
	}
	dec := vcard.NewDecoder(strings.NewReader(files["contacts/default.vcf"]))
	n := 0
	for {
		c, err := dec.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(c.PreferredValue(vcard.FieldFormattedName), "Name c") {
			t.Errorf("card FN = %q", c.PreferredValue(vcard.FieldFormattedName))
		}
		n++
	}
	if n != 3 {
		t.Errorf("default.vcf has %d cards, want 3", n)
	}
}
