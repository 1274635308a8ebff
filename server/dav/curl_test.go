package dav_test

import (
	"encoding/pem"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/dav"
)

// curl runs curl against the test server as alice and returns the
// status line's code and the body.
func (s *testServer) curl(t *testing.T, args ...string) (code, body string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (apt-get install curl)")
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	full := append([]string{"-sS", "--cacert", ca, "-u", "alice@example.org:" + passwords["alice@example.org"],
		"-H", "Content-Type: application/xml; charset=utf-8", "-w", "\n%{http_code}"}, args...)
	out, err := exec.Command("curl", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	i := strings.LastIndexByte(string(out), '\n')
	return string(out[i+1:]), string(out[:i])
}

type msResp struct {
	Href     string `xml:"href"`
	Status   string `xml:"status"`
	Propstat []struct {
		Prop struct {
			Inner string `xml:",innerxml"`
		} `xml:"prop"`
		Status string `xml:"status"`
	} `xml:"propstat"`
}

type multistatus struct {
	Responses []msResp `xml:"response"`
	SyncToken string   `xml:"sync-token"`
}

func parseMS(t *testing.T, body string) multistatus {
	t.Helper()
	var ms multistatus
	if err := xml.Unmarshal([]byte(body), &ms); err != nil {
		t.Fatalf("multistatus: %v\n%s", err, body)
	}
	return ms
}

// found returns the 200 properties of the response for href.
func (ms multistatus) found(href string) (string, bool) {
	for _, r := range ms.Responses {
		if r.Href == href {
			for _, ps := range r.Propstat {
				if strings.Contains(ps.Status, " 200 ") {
					return ps.Prop.Inner, true
				}
			}
			return "", true
		}
	}
	return "", false
}

// TestCurlDiscoveryAndReports checks with curl, as a client developer
// would, the XML a CalDAV/CardDAV client needs: the well-known redirect,
// the principal and home sets, Depth 0 and 1 listings with ETags,
// calendar-multiget, and sync-collection with a good and a bad token.
func TestCurlDiscoveryAndReports(t *testing.T) { testCurlDiscoveryAndReports(t, newServer) }

func testCurlDiscoveryAndReports(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	home := "/dav/alice@example.org/calendars/"
	col := home + "default/"
	resp, _ := s.do(t, "alice@example.org", "PUT", col+"ev1.ics", event("ev1", "Standup"), map[string]string{"Content-Type": "text/calendar"})
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 201 || etag == "" {
		t.Fatalf("PUT: %s etag %q", resp.Status, etag)
	}
	bare := strings.Trim(etag, `"`)

	for _, wk := range []string{"caldav", "carddav"} {
		code, hdr := s.curl(t, "-D", "-", "-o", "/dev/null", s.URL+"/.well-known/"+wk)
		if code != "301" || !strings.Contains(hdr, "Location: /dav/\r\n") {
			t.Errorf("GET /.well-known/%s: %s, want 301 to /dav/\n%s", wk, code, hdr)
		}
	}

	// Following the redirect with PROPFIND (curl keeps the method).
	code, body := s.curl(t, "-L", "--location-trusted", "--post301", "-X", "PROPFIND", "-H", "Depth: 0", "-H", "Content-Type: application/xml",
		"--data", `<propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>`, s.URL+"/.well-known/caldav")
	if code != "207" || !strings.Contains(body, "<href>/dav/alice@example.org/</href>") && !strings.Contains(body, ">/dav/alice@example.org/<") {
		t.Fatalf("PROPFIND via /.well-known/caldav: %s\n%s", code, body)
	}

	code, body = s.curl(t, "-X", "PROPFIND", "-H", "Depth: 0", "--data",
		`<propfind xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:R="urn:ietf:params:xml:ns:carddav"><prop><C:calendar-home-set/><R:addressbook-home-set/></prop></propfind>`,
		s.URL+"/dav/alice@example.org/")
	ms := parseMS(t, body)
	props, _ := ms.found("/dav/alice@example.org/")
	if code != "207" || !strings.Contains(props, home) || !strings.Contains(props, "/dav/alice@example.org/contacts/") {
		t.Fatalf("principal PROPFIND: %s\n%s", code, body)
	}

	code, body = s.curl(t, "-X", "PROPFIND", "-H", "Depth: 1", "--data",
		`<propfind xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><prop><resourcetype/><displayname/><C:supported-calendar-component-set/></prop></propfind>`,
		s.URL+home)
	ms = parseMS(t, body)
	props, ok := ms.found(col)
	if code != "207" || !ok || !strings.Contains(props, "calendar") || !strings.Contains(props, `name="VEVENT"`) {
		t.Fatalf("Depth 1 on the home set: %s, want %s as a calendar of VEVENTs\n%s", code, col, body)
	}
	code, body = s.curl(t, "-X", "PROPFIND", "-H", "Depth: 0", "--data", `<propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>`, s.URL+home)
	if ms = parseMS(t, body); code != "207" || len(ms.Responses) != 1 {
		t.Fatalf("Depth 0 on the home set: %s, %d responses, want 1\n%s", code, len(ms.Responses), body)
	}

	code, body = s.curl(t, "-X", "PROPFIND", "-H", "Depth: 1", "--data", `<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>`, s.URL+col)
	ms = parseMS(t, body)
	props, _ = ms.found(col + "ev1.ics")
	if code != "207" || !strings.Contains(props, bare) {
		t.Fatalf("Depth 1 on the calendar: %s, want ev1.ics with ETag %s\n%s", code, etag, body)
	}

	code, body = s.curl(t, "-X", "REPORT", "-H", "Depth: 1", "--data",
		`<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop><D:href>`+col+`ev1.ics</D:href></C:calendar-multiget>`,
		s.URL+col)
	ms = parseMS(t, body)
	props, _ = ms.found(col + "ev1.ics")
	if code != "207" || !strings.Contains(props, "SUMMARY:Standup") || !strings.Contains(props, bare) {
		t.Fatalf("calendar-multiget: %s\n%s", code, body)
	}

	code, body = s.curl(t, "-X", "REPORT", "--data",
		`<sync-collection xmlns="DAV:"><sync-token/><sync-level>1</sync-level><prop><getetag/></prop></sync-collection>`, s.URL+col)
	ms = parseMS(t, body)
	props, _ = ms.found(col + "ev1.ics")
	if code != "207" || ms.SyncToken == "" || !strings.Contains(props, bare) {
		t.Fatalf("sync-collection: %s\n%s", code, body)
	}
	code, body = s.curl(t, "-X", "REPORT", "--data",
		`<sync-collection xmlns="DAV:"><sync-token>urn:x-mailctl:sync:bogus:7</sync-token><sync-level>1</sync-level><prop><getetag/></prop></sync-collection>`, s.URL+col)
	if code != "403" || !strings.Contains(body, "valid-sync-token") {
		t.Fatalf("sync-collection with a foreign token: %s, want 403 valid-sync-token\n%s", code, body)
	}
}

// TestCollectionSyncProperties: a PROPFIND on a calendar and an address
// book answers sync-token, getctag and supported-report-set (listing
// sync-collection), which go-webdav alone answers 404; the sync-token
// changes with the collection and works in a sync-collection REPORT; the
// members of a Depth 1 answer keep their ETags.
func TestCollectionSyncProperties(t *testing.T) { testCollectionSyncProperties(t, newServer) }

func testCollectionSyncProperties(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	col := "/dav/alice@example.org/calendars/default/"
	body := `<propfind xmlns="DAV:" xmlns:CS="http://calendarserver.org/ns/"><prop><displayname/><sync-token/><CS:getctag/><supported-report-set/><getetag/></prop></propfind>`
	propfind := func(path, depth string) multistatus {
		t.Helper()
		code, out := s.curl(t, "-X", "PROPFIND", "-H", "Depth: "+depth, "--data", body, s.URL+path)
		if code != "207" {
			t.Fatalf("PROPFIND %s: %s\n%s", path, code, out)
		}
		return parseMS(t, out)
	}
	token := func(props string) string {
		i, j := strings.Index(props, "<sync-token"), strings.Index(props, "</sync-token>")
		if i < 0 || j < i {
			return ""
		}
		return props[strings.Index(props[i:], ">")+i+1 : j]
	}
	props, _ := propfind(col, "0").found(col)
	t0 := token(props)
	if !strings.HasPrefix(t0, "urn:x-mailctl:sync:") || !strings.Contains(props, "getctag") || !strings.Contains(props, "<sync-collection") ||
		!strings.Contains(props, "calendar-multiget") || !strings.Contains(props, "Calendar") {
		t.Fatalf("calendar PROPFIND props: %s", props)
	}
	s.do(t, "alice@example.org", "PUT", col+"x.ics", event("x", "X"), map[string]string{"Content-Type": "text/calendar"})
	ms := propfind(col, "1")
	props, _ = ms.found(col)
	if t1 := token(props); t1 == t0 || t1 == "" {
		t.Errorf("sync-token after a PUT = %q, was %q", t1, t0)
	}
	if member, ok := ms.found(col + "x.ics"); !ok || !strings.Contains(member, "getetag") {
		t.Errorf("Depth 1 member x.ics: %q", member)
	}
	code, out := s.curl(t, "-X", "REPORT", "--data",
		`<sync-collection xmlns="DAV:"><sync-token>`+t0+`</sync-token><sync-level>1</sync-level><prop><getetag/></prop></sync-collection>`, s.URL+col)
	if _, ok := parseMS(t, out).found(col + "x.ics"); code != "207" || !ok {
		t.Errorf("sync-collection from the PROPFIND's token: %s\n%s", code, out)
	}
	ab := "/dav/alice@example.org/contacts/default/"
	props, _ = propfind(ab, "0").found(ab)
	if token(props) == "" || !strings.Contains(props, "addressbook-multiget") {
		t.Errorf("address book PROPFIND props: %s", props)
	}
}
