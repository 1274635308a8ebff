package dav_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/mailctl/mailctl/server/dav"
)

const (
	alice   = "alice@example.org"
	calPath = "/dav/alice@example.org/calendars/default/"
	abPath  = "/dav/alice@example.org/contacts/default/"
)

// datedEvent is an event on day (0-based) of January-March 2026, from
// 10:00 to 11:00 UTC.
func datedEvent(uid, summary string, day int) string {
	start := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC).AddDate(0, 0, day)
	return strings.ReplaceAll(fmt.Sprintf(`BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//mailctl//test//EN
BEGIN:VEVENT
UID:%s
DTSTAMP:20260101T000000Z
DTSTART:%s
DTEND:%s
SUMMARY:%s
END:VEVENT
END:VCALENDAR
`, uid, start.Format("20060102T150405Z"), start.Add(time.Hour).Format("20060102T150405Z"), summary), "\n", "\r\n")
}

// seed stores objects straight into alice's default collection of kind
// and returns name -> etag as the store holds them.
func seed(t *testing.T, s *testServer, kind dav.Kind, objs map[string]string) map[string]string {
	t.Helper()
	ctx := context.Background()
	if err := s.st.EnsureUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	for name, data := range objs {
		if _, _, err := s.st.PutObject(ctx, alice, kind, dav.DefaultCollection, name, []byte(data), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := s.st.Objects(ctx, alice, kind, dav.DefaultCollection)
	if err != nil {
		t.Fatal(err)
	}
	etags := map[string]string{}
	for _, o := range stored {
		etags[o.Name] = o.ETag
	}
	return etags
}

// sameSet compares what a client got (path -> etag) with the store's
// etags for the names expected.
func sameSet(t *testing.T, what, colPath string, got map[string]string, etags map[string]string, want []string) {
	t.Helper()
	exp := map[string]string{}
	for _, n := range want {
		exp[colPath+n] = etags[n]
	}
	var missing, extra, badTag []string
	for p, e := range exp {
		g, ok := got[p]
		switch {
		case !ok:
			missing = append(missing, p)
		case strings.Trim(g, `"`) != e:
			badTag = append(badTag, fmt.Sprintf("%s: %s, store %s", p, g, e))
		}
	}
	for p := range got {
		if _, ok := exp[p]; !ok {
			extra = append(extra, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra)+len(badTag) > 0 {
		t.Fatalf("%s: %d answers, %d expected; missing %v; not expected %v; wrong etags %v", what, len(got), len(exp), missing, extra, badTag)
	}
}

// TestCalendarQueryStreamed: a time-range query and a text-match query
// over 300 events, through go-webdav's client, give exactly the events
// the store holds that match, with the store's etags.
func TestCalendarQueryStreamed(t *testing.T) { testCalendarQueryStreamed(t, newServer) }

func testCalendarQueryStreamed(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	objs := map[string]string{}
	var inFeb, lunch []string
	for i := 0; i < 300; i++ {
		day := i % 90
		summary := fmt.Sprintf("meeting %d", i)
		if i%7 == 0 {
			summary = fmt.Sprintf("Lunch with team %d", i)
		}
		// A name needing percent-encoding in hrefs now and then.
		name := fmt.Sprintf("ev %03d.ics", i)
		if i%2 == 0 {
			name = fmt.Sprintf("ev-%03d.ics", i)
		}
		objs[name] = datedEvent(fmt.Sprintf("uid-%d", i), summary, day)
		if day >= 31 && day < 59 {
			inFeb = append(inFeb, name)
		}
		if i%7 == 0 {
			lunch = append(lunch, name)
		}
	}
	etags := seed(t, s, dav.Calendars, objs)
	c := s.calClient(t, alice)
	ctx := context.Background()

	got := func(q *caldav.CalendarQuery) map[string]string {
		t.Helper()
		res, err := c.QueryCalendar(ctx, calPath, q)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, o := range res {
			if o.Data == nil || len(o.Data.Children) == 0 {
				t.Fatalf("%s: no calendar-data", o.Path)
			}
			m[o.Path] = o.ETag
		}
		return m
	}
	feb := &caldav.CalendarQuery{
		CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
		CompFilter: caldav.CompFilter{Name: "VCALENDAR", Comps: []caldav.CompFilter{{
			Name:  "VEVENT",
			Start: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
			End:   time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		}}},
	}
	sameSet(t, "time-range February", calPath, got(feb), etags, inFeb)

	// go-webdav's client does not send prop-filters: a raw request.
	resp, body := s.do(t, alice, "REPORT", calPath,
		`<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match>lunch</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`,
		xmlHdr)
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("text-match: %s\n%s", resp.Status, body)
	}
	gotText := map[string]string{}
	for h, e := range hrefETags(t, body) {
		gotText[strings.ReplaceAll(h, "%20", " ")] = e
	}
	sameSet(t, "text-match lunch (case folded)", calPath, gotText, etags, lunch)

	all := &caldav.CalendarQuery{
		CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
		CompFilter:  caldav.CompFilter{Name: "VCALENDAR"},
	}
	names := make([]string, 0, len(objs))
	for n := range objs {
		names = append(names, n)
	}
	sameSet(t, "all", calPath, got(all), etags, names)
}

// TestAddressBookQueryStreamed: a text-match query over 300 contacts and
// an empty filter (RFC 6352 10.5 allows it), which Radicale answers
// with every contact.
func TestAddressBookQueryStreamed(t *testing.T) { testAddressBookQueryStreamed(t, newServer) }

func testAddressBookQueryStreamed(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	objs := map[string]string{}
	var smiths, names []string
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("c%03d.vcf", i)
		fn := fmt.Sprintf("Person %d", i)
		if i%5 == 0 {
			fn = fmt.Sprintf("Ann Smith %d", i)
			smiths = append(smiths, name)
		}
		objs[name] = card(fmt.Sprintf("uid-%d", i), fn)
		names = append(names, name)
	}
	etags := seed(t, s, dav.AddressBooks, objs)
	c := s.cardClient(t, alice)
	res, err := c.QueryAddressBook(context.Background(), abPath, &carddav.AddressBookQuery{
		DataRequest: carddav.AddressDataRequest{AllProp: true},
		PropFilters: []carddav.PropFilter{{Name: "FN", TextMatches: []carddav.TextMatch{{Text: "smith"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range res {
		if !strings.Contains(o.Card.PreferredValue("FN"), "Smith") {
			t.Errorf("%s: address-data FN %q", o.Path, o.Card.PreferredValue("FN"))
		}
		got[o.Path] = o.ETag
	}
	sameSet(t, "text-match smith", abPath, got, etags, smiths)

	// An empty filter, default test anyof: every contact (go-webdav's
	// handler answered none).
	for _, filter := range []string{`<R:filter/>`, `<R:filter test="anyof"/>`, `<R:filter test="allof"/>`} {
		resp, body := s.do(t, alice, "REPORT", abPath,
			`<R:addressbook-query xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/></D:prop>`+filter+`</R:addressbook-query>`,
			xmlHdr)
		if resp.StatusCode != http.StatusMultiStatus {
			t.Fatalf("%s: %s\n%s", filter, resp.Status, body)
		}
		sameSet(t, "filter "+filter, abPath, hrefETags(t, body), etags, names)
	}
}

var xmlHdr = map[string]string{"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}

var responseRE = regexp.MustCompile(`(?s)<D:href>([^<]*)</D:href>.*?<D:getetag>([^<]*)</D:getetag>`)

// hrefETags reads href -> etag from a multistatus answer written with
// the D: prefix.
func hrefETags(t *testing.T, body string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, r := range strings.Split(body, "</D:response>") {
		if sm := responseRE.FindStringSubmatch(r); sm != nil {
			m[sm[1]] = strings.ReplaceAll(sm[2], "&#34;", `"`)
		}
	}
	return m
}

// TestReportPropsAndLimit: unknown properties come back in a 404
// propstat, hrefs are percent-encoded, and a limit on an
// addressbook-query ends with a 507 for the collection.
func TestReportPropsAndLimit(t *testing.T) { testReportPropsAndLimit(t, newServer) }

func testReportPropsAndLimit(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	seed(t, s, dav.Calendars, map[string]string{"a b.ics": datedEvent("u1", "one", 1)})
	resp, body := s.do(t, alice, "REPORT", calPath,
		`<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:X="urn:x-test"><D:prop><D:getetag/><X:color/><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>`,
		xmlHdr)
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("%s\n%s", resp.Status, body)
	}
	for _, want := range []string{
		`<D:href>/dav/alice@example.org/calendars/default/a%20b.ics</D:href>`,
		`<color xmlns="urn:x-test"></color></D:prop><D:status>HTTP/1.1 404 Not Found</D:status>`,
		`SUMMARY:one`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("answer lacks %s:\n%s", want, body)
		}
	}
	objs := map[string]string{}
	for i := 0; i < 5; i++ {
		objs[fmt.Sprintf("c%d.vcf", i)] = card(fmt.Sprintf("u%d", i), fmt.Sprintf("P %d", i))
	}
	seed(t, s, dav.AddressBooks, objs)
	resp, body = s.do(t, alice, "REPORT", abPath,
		`<R:addressbook-query xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/></D:prop><R:filter/><R:limit><R:nresults>2</R:nresults></R:limit></R:addressbook-query>`, xmlHdr)
	if resp.StatusCode != http.StatusMultiStatus || strings.Count(body, "<D:getetag>") != 2 ||
		!strings.Contains(body, `507 Insufficient Storage`) {
		t.Fatalf("limit 2 of 5: %s\n%s", resp.Status, body)
	}
	resp, body = s.do(t, alice, "REPORT", abPath,
		`<R:addressbook-query xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/></D:prop><R:filter><R:prop-filter name="FN"><R:text-match match-type="sideways">x</R:text-match></R:prop-filter></R:filter></R:addressbook-query>`, xmlHdr)
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "goroutine") {
		t.Fatalf("bad match-type: %s\n%s", resp.Status, body)
	}
}

// TestReportMemoryFlat: answering a calendar-query, a Depth: 1 PROPFIND,
// an addressbook-query and a first sync-collection (empty token) over
// 5 000 objects each keeps the server's heap
// within a few MiB of where it started: the objects are read, filtered
// and written one batch at a time. Building the answer in memory, as
// go-webdav's handlers do, grows it by tens of MiB.
func TestReportMemoryFlat(t *testing.T) {
	if raceBuild {
		t.Skip("heap bounds do not hold under the race detector")
	}
	if testing.Short() {
		t.Skip("seeds 10 000 objects")
	}
	const n = 5000
	s := newServer(t, dav.Options{})
	ctx := context.Background()
	if err := s.st.EnsureUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, _, err := s.st.PutObject(ctx, alice, dav.Calendars, dav.DefaultCollection, fmt.Sprintf("e%05d.ics", i),
			[]byte(datedEvent(fmt.Sprintf("u%d", i), fmt.Sprintf("event %d", i), i%90)), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.st.PutObject(ctx, alice, dav.AddressBooks, dav.DefaultCollection, fmt.Sprintf("c%05d.vcf", i),
			[]byte(card(fmt.Sprintf("u%d", i), fmt.Sprintf("Person %d", i))), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
	}
	const bound = 8 << 20
	for _, tc := range []struct{ path, body, match string }{
		{calPath, `<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20260101T000000Z" end="20270101T000000Z"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`, "BEGIN:VEVENT"},
		{calPath + "#propfind", `<propfind xmlns="DAV:"><prop><getetag/><getcontenttype/></prop></propfind>`, ".ics</"},
		{abPath, `<R:addressbook-query xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/><R:address-data/></D:prop><R:filter><R:prop-filter name="FN"><R:text-match>Person</R:text-match></R:prop-filter></R:filter></R:addressbook-query>`, "BEGIN:VCARD"},
		// A client's first sync-collection: every object.
		{calPath, `<D:sync-collection xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:sync-token/><D:sync-level>1</D:sync-level><D:prop><D:getetag/><C:calendar-data/></D:prop></D:sync-collection>`, "BEGIN:VEVENT"},
	} {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		var peak uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak {
					peak = m.HeapAlloc
				}
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		method, path, isPropfind := "REPORT", tc.path, strings.HasSuffix(tc.path, "#propfind")
		if isPropfind {
			method, path = "PROPFIND", strings.TrimSuffix(path, "#propfind")
		}
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(tc.body))
		if isPropfind {
			req.Header.Set("Depth", "1")
		}
		req.SetBasicAuth(alice, passwords[alice])
		req.Header.Set("Content-Type", "application/xml; charset=utf-8")
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Read the answer without keeping it: only the server's heap
		// (and this small counting reader) is measured.
		cnt := &countReader{want: []byte(tc.match)}
		_, err = io.Copy(cnt, resp.Body)
		resp.Body.Close()
		close(stop)
		wg.Wait()
		if err != nil || resp.StatusCode != http.StatusMultiStatus {
			t.Fatalf("%s: %s %v", tc.path, resp.Status, err)
		}
		if cnt.n != n {
			t.Fatalf("%s: %d objects in the answer, want %d", tc.path, cnt.n, n)
		}
		grew := int64(peak) - int64(base)
		t.Logf("%s: heap peak %.1f MiB over %.1f MiB before, %d objects", tc.path, float64(grew)/(1<<20), float64(base)/(1<<20), n)
		if grew > bound {
			t.Errorf("%s: heap grew by %.1f MiB answering %d objects, bound %d MiB", tc.path, float64(grew)/(1<<20), n, bound>>20)
		}
	}
}

// TestPropfindDepth1Streamed: a Depth: 1 PROPFIND on a calendar of 300
// events lists every event with the store's etag, in a well-formed
// multistatus that also has the collection's own response with its
// sync-token.
func TestPropfindDepth1Streamed(t *testing.T) { testPropfindDepth1Streamed(t, newServer) }

func testPropfindDepth1Streamed(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	objs := map[string]string{}
	var names []string
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("e %03d.ics", i)
		objs[name] = datedEvent(fmt.Sprintf("u%d", i), "x", i%90)
		names = append(names, name)
	}
	etags := seed(t, s, dav.Calendars, objs)
	resp, body := s.do(t, alice, "PROPFIND", calPath,
		`<propfind xmlns="DAV:"><prop><getetag/><sync-token/><resourcetype/></prop></propfind>`, xmlHdr)
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("%s\n%s", resp.Status, body)
	}
	var ms struct {
		Responses []struct {
			Href     string `xml:"DAV: href"`
			Propstat []struct {
				Prop struct {
					ETag      string    `xml:"DAV: getetag"`
					SyncToken string    `xml:"DAV: sync-token"`
					Calendar  *struct{} `xml:"DAV: resourcetype>calendar"`
				} `xml:"DAV: prop"`
				Status string `xml:"DAV: status"`
			} `xml:"DAV: propstat"`
		} `xml:"DAV: response"`
	}
	if err := xml.Unmarshal([]byte(body), &ms); err != nil {
		t.Fatalf("answer is not XML: %v\n%.2000s", err, body)
	}
	got := map[string]string{}
	colSeen := false
	for _, r := range ms.Responses {
		if r.Href == calPath {
			for _, p := range r.Propstat {
				if strings.Contains(p.Status, " 200 ") && strings.HasPrefix(p.Prop.SyncToken, "urn:") {
					colSeen = true
				}
			}
			continue
		}
		for _, p := range r.Propstat {
			if p.Prop.ETag != "" {
				got[strings.ReplaceAll(r.Href, "%20", " ")] = p.Prop.ETag
			}
		}
	}
	if !colSeen {
		t.Errorf("no collection response with a sync-token:\n%.2000s", body)
	}
	sameSet(t, "PROPFIND Depth: 1", calPath, got, etags, names)
}

// countReader counts occurrences of want in what is written to it
// (occurrences split across writes are not counted: want is short and
// the test checks the total).
type countReader struct {
	want []byte
	tail []byte
	n    int
}

func (c *countReader) Write(p []byte) (int, error) {
	buf := append(c.tail, p...)
	c.n += strings.Count(string(buf), string(c.want))
	// Keep the last len(want)-1 bytes for a match spanning two writes.
	k := len(c.want) - 1
	if len(buf) < k {
		k = len(buf)
	}
	c.tail = append(c.tail[:0], buf[len(buf)-k:]...)
	return len(p), nil
}

// TestMultigetStreamed: an addressbook-multiget answers each href in
// turn: a stored contact with its etag and only the vCard properties
// asked for, a missing one and another user's with a 404.
func TestMultigetStreamed(t *testing.T) { testMultigetStreamed(t, newServer) }

func testMultigetStreamed(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	etags := seed(t, s, dav.AddressBooks, map[string]string{"a b.vcf": card("u1", "Ann Smith")})
	resp, body := s.do(t, alice, "REPORT", abPath,
		`<R:addressbook-multiget xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/><R:address-data><R:prop name="FN"/></R:address-data></D:prop>`+
			`<D:href>`+abPath+`a%20b.vcf</D:href><D:href>`+abPath+`missing.vcf</D:href><D:href>/dav/bob@example.org/contacts/default/x.vcf</D:href></R:addressbook-multiget>`,
		xmlHdr)
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("%s\n%s", resp.Status, body)
	}
	var ms struct {
		Responses []struct {
			Href     string `xml:"DAV: href"`
			Status   string `xml:"DAV: status"`
			Propstat []struct {
				Prop struct {
					ETag string `xml:"DAV: getetag"`
					Data string `xml:"urn:ietf:params:xml:ns:carddav address-data"`
				} `xml:"DAV: prop"`
			} `xml:"DAV: propstat"`
		} `xml:"DAV: response"`
	}
	if err := xml.Unmarshal([]byte(body), &ms); err != nil {
		t.Fatalf("answer is not XML: %v\n%s", err, body)
	}
	if len(ms.Responses) != 3 {
		t.Fatalf("%d responses, want 3:\n%s", len(ms.Responses), body)
	}
	r := ms.Responses[0]
	if r.Href != abPath+"a%20b.vcf" || len(r.Propstat) == 0 || r.Propstat[0].Prop.ETag != `"`+etags["a b.vcf"]+`"` {
		t.Errorf("first response: %+v", r)
	} else if d := r.Propstat[0].Prop.Data; !strings.Contains(d, "FN:Ann Smith") || strings.Contains(d, "EMAIL") {
		t.Errorf("address-data with FN only: %q", d)
	}
	for _, r := range ms.Responses[1:] {
		if !strings.Contains(r.Status, " 404 ") {
			t.Errorf("%s: status %q, want 404", r.Href, r.Status)
		}
	}
}
