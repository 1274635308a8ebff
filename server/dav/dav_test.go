package dav_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/mailctl/mailctl/server/dav"
)

func parseEvent(t *testing.T, s string) *ical.Calendar {
	t.Helper()
	cal, err := ical.NewDecoder(strings.NewReader(s)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	return cal
}

func syncPaths(t *testing.T, c *carddav.Client, col, token string) (updated, deleted []string, next string) {
	t.Helper()
	resp, err := c.SyncCollection(context.Background(), col, &carddav.SyncQuery{SyncToken: token})
	if err != nil {
		t.Fatalf("sync-collection %s since %q: %v", col, token, err)
	}
	for _, o := range resp.Updated {
		updated = append(updated, o.Path)
	}
	slices.Sort(updated)
	slices.Sort(resp.Deleted)
	return updated, resp.Deleted, resp.SyncToken
}

// TestCalDAVClient drives the server with go-webdav's CalDAV client:
// discovery, create, get, a conditional update, delete, and
// sync-collection after each change.
func TestCalDAVClient(t *testing.T) { testCalDAVClient(t, newServer) }

func testCalDAVClient(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	ctx := context.Background()
	c := s.calClient(t, "alice@example.org")
	principal, err := c.FindCurrentUserPrincipal(ctx)
	if err != nil || principal != "/dav/alice@example.org/" {
		t.Fatalf("current-user-principal = %q, %v", principal, err)
	}
	home, err := c.FindCalendarHomeSet(ctx, principal)
	if err != nil || home != "/dav/alice@example.org/calendars/" {
		t.Fatalf("calendar-home-set = %q, %v", home, err)
	}
	cals, err := c.FindCalendars(ctx, home)
	if err != nil || len(cals) != 1 || cals[0].Path != home+"default/" {
		t.Fatalf("calendars = %+v, %v; want the default calendar", cals, err)
	}
	col := cals[0].Path

	// sync-collection goes through the CardDAV client's method: it is the
	// same WebDAV REPORT on any collection.
	sc := s.cardClient(t, "alice@example.org")
	up, del, tok0 := syncPaths(t, sc, col, "")
	if len(up) != 0 || len(del) != 0 || tok0 == "" {
		t.Fatalf("initial sync = %v %v %q, want empty with a token", up, del, tok0)
	}

	p1, p2 := col+"one.ics", col+"two.ics"
	o1, err := c.PutCalendarObject(ctx, p1, parseEvent(t, event("one", "First")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutCalendarObject(ctx, p2, parseEvent(t, event("two", "Second"))); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetCalendarObject(ctx, p1)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := got.Data.Children[0].Props.Text(ical.PropSummary); s != "First" || got.ETag != o1.ETag {
		t.Fatalf("GET %s: summary %q etag %q, want First and %q", p1, s, got.ETag, o1.ETag)
	}
	up, _, tok1 := syncPaths(t, sc, col, tok0)
	if !slices.Equal(up, []string{p1, p2}) {
		t.Fatalf("sync after two PUTs = %v", up)
	}
	// A name that needs percent-encoding comes back as the same path.
	spaced := col + "with space.ics"
	if _, err := c.PutCalendarObject(ctx, spaced, parseEvent(t, event("spaced", "Spaced"))); err != nil {
		t.Fatal(err)
	}
	up, _, tok1 = syncPaths(t, sc, col, tok1)
	if !slices.Equal(up, []string{spaced}) {
		t.Fatalf("sync after PUT of %q = %q", spaced, up)
	}
	if _, raw := s.do(t, "alice@example.org", "REPORT", col, `<sync-collection xmlns="DAV:"><sync-token/><sync-level>1</sync-level><prop><getetag/></prop></sync-collection>`,
		map[string]string{"Content-Type": "application/xml"}); !strings.Contains(raw, "<D:href>"+col+"with%20space.ics</D:href>") {
		t.Fatalf("sync-collection href of %q is not percent-encoded:\n%s", spaced, raw)
	}
	if err := c.RemoveAll(ctx, spaced); err != nil {
		t.Fatal(err)
	}
	_, del, tok1 = syncPaths(t, sc, col, tok1)
	if !slices.Equal(del, []string{spaced}) {
		t.Fatalf("sync after DELETE of %q: deleted %q", spaced, del)
	}

	// Update with a stale If-Match: 412, nothing changed.
	resp, _ := s.do(t, "alice@example.org", "PUT", p1, event("one", "Stale"),
		map[string]string{"Content-Type": "text/calendar", "If-Match": `"0000"`})
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("PUT with wrong If-Match: %s, want 412", resp.Status)
	}
	resp, _ = s.do(t, "alice@example.org", "PUT", p1, event("one", "Renamed"),
		map[string]string{"Content-Type": "text/calendar", "If-Match": `"` + o1.ETag + `"`})
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT with right If-Match: %s", resp.Status)
	}
	got, err = c.GetCalendarObject(ctx, p1)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := got.Data.Children[0].Props.Text(ical.PropSummary); s != "Renamed" || got.ETag == o1.ETag {
		t.Fatalf("after update: summary %q etag %q", s, got.ETag)
	}
	// If-None-Match: * refuses to overwrite.
	resp, _ = s.do(t, "alice@example.org", "PUT", p1, event("one", "Again"),
		map[string]string{"Content-Type": "text/calendar", "If-None-Match": "*"})
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("PUT If-None-Match * over an existing object: %s, want 412", resp.Status)
	}
	// DELETE with a stale If-Match: 412; then a plain delete.
	resp, _ = s.do(t, "alice@example.org", "DELETE", p2, "", map[string]string{"If-Match": `"0000"`})
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("DELETE with wrong If-Match: %s, want 412", resp.Status)
	}
	if err := c.RemoveAll(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCalendarObject(ctx, p2); err == nil {
		t.Fatalf("GET %s after DELETE succeeded", p2)
	}
	up, del, tok2 := syncPaths(t, sc, col, tok1)
	if !slices.Equal(up, []string{p1}) || !slices.Equal(del, []string{p2}) {
		t.Fatalf("sync after update+delete = updated %v deleted %v, want [%s] [%s]", up, del, p1, p2)
	}
	up, del, _ = syncPaths(t, sc, col, tok2)
	if len(up)+len(del) != 0 {
		t.Fatalf("sync with the current token = %v %v, want nothing", up, del)
	}
	// A full sync lists only what exists.
	up, del, _ = syncPaths(t, sc, col, "")
	if !slices.Equal(up, []string{p1}) || len(del) != 0 {
		t.Fatalf("full sync = %v %v", up, del)
	}

	// calendar-query through go-webdav's server side, answered by the backend.
	objs, err := c.QueryCalendar(ctx, col, &caldavQuery)
	if err != nil || len(objs) != 1 || objs[0].Path != p1 {
		t.Fatalf("calendar-query = %v, %v", objs, err)
	}
}

func TestCardDAVClient(t *testing.T) { testCardDAVClient(t, newServer) }

func testCardDAVClient(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	ctx := context.Background()
	c := s.cardClient(t, "bob@example.org")
	principal, err := c.FindCurrentUserPrincipal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	home, err := c.FindAddressBookHomeSet(ctx, principal)
	if err != nil || home != "/dav/bob@example.org/contacts/" {
		t.Fatalf("addressbook-home-set = %q, %v", home, err)
	}
	abs, err := c.FindAddressBooks(ctx, home)
	if err != nil || len(abs) != 1 {
		t.Fatalf("address books = %+v, %v", abs, err)
	}
	col := abs[0].Path
	_, _, tok0 := syncPaths(t, c, col, "")
	card1, err := vcard.NewDecoder(strings.NewReader(card("c1", "Carol"))).Decode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutAddressObject(ctx, col+"c1.vcf", card1); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetAddressObject(ctx, col+"c1.vcf")
	if err != nil || got.Card.PreferredValue(vcard.FieldFormattedName) != "Carol" {
		t.Fatalf("GET vCard = %+v, %v", got, err)
	}
	up, _, tok1 := syncPaths(t, c, col, tok0)
	if !slices.Equal(up, []string{col + "c1.vcf"}) {
		t.Fatalf("sync = %v", up)
	}
	if err := c.RemoveAll(ctx, col+"c1.vcf"); err != nil {
		t.Fatal(err)
	}
	_, del, _ := syncPaths(t, c, col, tok1)
	if !slices.Equal(del, []string{col + "c1.vcf"}) {
		t.Fatalf("deleted = %v", del)
	}
	// A new address book by MKCOL.
	if err := c.Mkdir(ctx, home+"work/"); err != nil {
		t.Fatalf("MKCOL address book: %v", err)
	}
	abs, err = c.FindAddressBooks(ctx, home)
	if err != nil || len(abs) != 2 {
		t.Fatalf("after MKCOL: %+v, %v", abs, err)
	}
}

// TestOtherUsersCollections: bob cannot read, write, list or sync alice's
// calendar, and a wrong password gets nothing.
func TestOtherUsersCollections(t *testing.T) { testOtherUsersCollections(t, newServer) }

func testOtherUsersCollections(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	alice := "/dav/alice@example.org/calendars/default/"
	resp, _ := s.do(t, "alice@example.org", "PUT", alice+"a.ics", event("a", "Private"), map[string]string{"Content-Type": "text/calendar"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("alice PUT: %s", resp.Status)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", alice + "a.ics", ""},
		{"PUT", alice + "b.ics", event("b", "Intruder")},
		{"DELETE", alice + "a.ics", ""},
		{"PROPFIND", alice, ""},
		{"PROPFIND", "/dav/alice@example.org/", ""},
		{"REPORT", alice, `<sync-collection xmlns="DAV:"><sync-token/><sync-level>1</sync-level><prop><getetag/></prop></sync-collection>`},
	} {
		resp, body := s.do(t, "bob@example.org", r.method, r.path, r.body, map[string]string{"Content-Type": "text/calendar", "Depth": "1"})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("bob %s %s: %s, want 403", r.method, r.path, resp.Status)
		}
		if strings.Contains(body, "Private") {
			t.Errorf("bob %s %s saw alice's event", r.method, r.path)
		}
	}
	req, _ := http.NewRequest("GET", s.URL+alice+"a.ics", nil)
	req.SetBasicAuth("alice@example.org", "wrong")
	wr, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	wr.Body.Close()
	if wr.StatusCode != http.StatusUnauthorized || wr.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("wrong password: %s %q, want 401 with a challenge", wr.Status, wr.Header.Get("WWW-Authenticate"))
	}
	// A locked-out address gets 429 and when to retry, not a password
	// prompt.
	resp, body := s.do(t, "locked@example.org", "GET", alice+"a.ics", "", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "120" || !strings.Contains(body, "try again in 2 minutes") {
		t.Errorf("locked out: %s Retry-After %q %q, want 429 and 120", resp.Status, resp.Header.Get("Retry-After"), body)
	}
	resp, body = s.do(t, "alice@example.org", "GET", alice+"a.ics", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Private") {
		t.Errorf("alice GET after bob's attempts: %s %q", resp.Status, body)
	}
}

func TestPutLimits(t *testing.T) { testPutLimits(t, newServer) }

func testPutLimits(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{MaxObjectBytes: 4096})
	col := "/dav/alice@example.org/calendars/default/"
	big := event("big", strings.Repeat("x", 70)+strings.Repeat("\r\n y", 2000))
	resp, _ := s.do(t, "alice@example.org", "PUT", col+"big.ics", big, map[string]string{"Content-Type": "text/calendar"})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT of %d bytes with a 4096 limit: %s, want 413", len(big), resp.Status)
	}
	resp, _ = s.do(t, "alice@example.org", "GET", col+"big.ics", "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after refused PUT: %s, want 404", resp.Status)
	}
	resp, body := s.do(t, "alice@example.org", "PUT", col+"bad.ics", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n", map[string]string{"Content-Type": "text/calendar"})
	if resp.StatusCode != http.StatusBadRequest || strings.Count(strings.TrimSpace(body), "\n") > 0 {
		t.Fatalf("PUT of a calendar without an event: %s %q, want 400 and one line", resp.Status, body)
	}
}

var caldavQuery = caldav.CalendarQuery{
	CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
	CompFilter:  caldav.CompFilter{Name: "VCALENDAR", Comps: []caldav.CompFilter{{Name: "VEVENT"}}},
}

// TestMkcalendar: MKCALENDAR (RFC 4791 5.3.1) makes a calendar with its
// display name, which discovery then lists; a second one of the same name
// is refused, and none can be made outside the calendar home set.
func TestMkcalendar(t *testing.T) { testMkcalendar(t, newServer) }

func testMkcalendar(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	home := "/dav/alice@example.org/calendars/"
	body := `<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Work</D:displayname></D:prop></D:set></C:mkcalendar>`
	if resp, b := s.do(t, "alice@example.org", "MKCALENDAR", home+"work/", body, map[string]string{"Content-Type": "application/xml"}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("MKCALENDAR: %s %s", resp.Status, b)
	}
	cals, err := s.calClient(t, "alice@example.org").FindCalendars(context.Background(), home)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cals {
		names = append(names, c.Path+"="+c.Name)
	}
	if !slices.Equal(names, []string{home + "default/=Calendar", home + "work/=Work"}) {
		t.Errorf("calendars after MKCALENDAR = %q", names)
	}
	if resp, _ := s.do(t, "alice@example.org", "MKCALENDAR", home+"work/", "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("second MKCALENDAR of work: %s, want 405", resp.Status)
	}
	if resp, _ := s.do(t, "alice@example.org", "MKCALENDAR", "/dav/alice@example.org/contacts/x/", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("MKCALENDAR among address books: %s, want 403", resp.Status)
	}
	if resp, _ := s.do(t, "bob@example.org", "MKCALENDAR", home+"bobs/", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's MKCALENDAR in alice's home: %s, want 403", resp.Status)
	}
}
