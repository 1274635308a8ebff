package dav_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/dav"
	"github.com/mailctl/mailctl/server/procmem"
)

// mappedRss is the resident size of the store file's mappings in this
// process (bbolt's memory map), from /proc/self/smaps.
func mappedRss(t *testing.T, path string) int64 {
	t.Helper()
	maps, err := procmem.Mappings(path)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, m := range maps {
		n += m.Rss
	}
	return n
}

// TestReportLeavesStoreUnmapped: a full calendar-query over 5 000 events
// and a full addressbook-query over 5 000 contacts, on a store just
// opened (a server restarted on its data), leave at most a bounded part of
// the store file resident in the server's memory. bbolt reads through a
// shared memory map, and every page a scan reads stays resident in the
// process (RssFile) until dropped: without the trims the whole scanned
// collections (several MiB) stayed mapped.
func TestReportLeavesStoreUnmapped(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 10 000 objects")
	}
	const n = 5000
	ctx := context.Background()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, dav.FileName)
	st, err := dav.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	st.DB().NoSync = true
	desc := strings.Repeat("agenda, minutes and follow-up; ", 8)
	for i := 0; i < n; i++ {
		ev := strings.Replace(datedEvent(fmt.Sprintf("u%d", i), fmt.Sprintf("event %d", i), i%90), "END:VEVENT", "DESCRIPTION:"+desc+"\r\nEND:VEVENT", 1)
		if _, _, err := st.PutObject(ctx, alice, dav.Calendars, dav.DefaultCollection, fmt.Sprintf("e%05d.ics", i), []byte(ev), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.PutObject(ctx, alice, dav.AddressBooks, dav.DefaultCollection, fmt.Sprintf("c%05d.vcf", i),
			[]byte(card(fmt.Sprintf("u%d", i), fmt.Sprintf("Person %d", i))), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const bound = 2 << 20
	if fi.Size() < 3*bound {
		t.Fatalf("store of %d bytes: too small for the bound to tell", fi.Size())
	}

	// The server restarted on its data.
	st, err = dav.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer(dav.New(st, testAuth, dav.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	before := mappedRss(t, path)
	for _, tc := range []struct{ path, body, match string }{
		{calPath, `<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>`, "BEGIN:VEVENT"},
		{abPath, `<R:addressbook-query xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/><R:address-data/></D:prop><R:filter test="allof"/></R:addressbook-query>`, "BEGIN:VCARD"},
	} {
		req, _ := http.NewRequest("REPORT", srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Depth", "1")
		req.SetBasicAuth(alice, passwords[alice])
		req.Header.Set("Content-Type", "application/xml; charset=utf-8")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		cnt := &countReader{want: []byte(tc.match)}
		_, err = io.Copy(cnt, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusMultiStatus {
			t.Fatalf("%s: %s %v", tc.path, resp.Status, err)
		}
		if cnt.n != n {
			t.Fatalf("%s: %d objects in the answer, want %d", tc.path, cnt.n, n)
		}
		after := mappedRss(t, path)
		t.Logf("%s: store file %.1f MiB, resident in its mapping %.2f MiB before the REPORTs, %.2f MiB after this one",
			tc.path, float64(fi.Size())/(1<<20), float64(before)/(1<<20), float64(after)/(1<<20))
		if after-before > bound {
			t.Errorf("%s: the store's mapping grew by %.2f MiB resident answering %d objects, bound %d MiB",
				tc.path, float64(after-before)/(1<<20), n, bound>>20)
		}
	}
}
