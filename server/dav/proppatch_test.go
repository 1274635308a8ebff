package dav_test

import (
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/dav"
)

// withStatus returns the inner XML of the propstats of the response for
// href whose status has code, joined.
func (ms multistatus) withStatus(href, code string) string {
	var out []string
	for _, r := range ms.Responses {
		if r.Href != href {
			continue
		}
		for _, ps := range r.Propstat {
			if strings.Contains(ps.Status, " "+code+" ") {
				out = append(out, ps.Prop.Inner)
			}
		}
	}
	return strings.Join(out, "")
}

// TestCurlProppatch: a client renames a calendar, describes it and gives
// it a colour with PROPPATCH (curl, as a client sends it), and the
// PROPFIND answers show the new values; a PROPPATCH with a property the
// server does not keep changes nothing (403 for it, 424 for the others);
// a bad colour is refused (409); removing the colour removes it; an
// address book's name and description change the same way. go-webdav
// alone answered 501 to every PROPPATCH.
func TestCurlProppatch(t *testing.T) { testCurlProppatch(t, newServer) }

func testCurlProppatch(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	const (
		cal = "/dav/alice@example.org/calendars/default/"
		ab  = "/dav/alice@example.org/contacts/default/"
	)
	patch := func(path, body string) multistatus {
		t.Helper()
		code, out := s.curl(t, "-X", "PROPPATCH", "--data", `<?xml version="1.0" encoding="utf-8"?>`+body, s.URL+path)
		if code != "207" {
			t.Fatalf("PROPPATCH %s: %s, want 207\n%s", path, code, out)
		}
		return parseMS(t, out)
	}
	calProps := func() multistatus {
		t.Helper()
		code, out := s.curl(t, "-X", "PROPFIND", "-H", "Depth: 0", "--data",
			`<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:A="http://apple.com/ns/ical/"><D:prop><D:displayname/><C:calendar-description/><A:calendar-color/></D:prop></D:propfind>`, s.URL+cal)
		if code != "207" {
			t.Fatalf("PROPFIND %s: %s\n%s", cal, code, out)
		}
		return parseMS(t, out)
	}

	ms := patch(cal, `<D:propertyupdate xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop>`+
		`<D:displayname>Work &amp; play</D:displayname><C:calendar-description>Team meetings</C:calendar-description><A:calendar-color>#FF2968FF</A:calendar-color>`+
		`</D:prop></D:set></D:propertyupdate>`)
	ok := ms.withStatus(cal, "200")
	for _, p := range []string{"displayname", "calendar-description", "calendar-color"} {
		if !strings.Contains(ok, p) {
			t.Errorf("PROPPATCH answer: %s not 200: %+v", p, ms)
		}
	}
	got := calProps().withStatus(cal, "200")
	for _, want := range []string{"Work &amp; play", "Team meetings", "#FF2968FF"} {
		if !strings.Contains(got, want) {
			t.Errorf("PROPFIND after PROPPATCH: %q missing from %s", want, got)
		}
	}

	// All or nothing: a property the server does not keep.
	ms = patch(cal, `<D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:example:x"><D:set><D:prop>`+
		`<D:displayname>Renamed</D:displayname><X:secret>value</X:secret></D:prop></D:set></D:propertyupdate>`)
	if !strings.Contains(ms.withStatus(cal, "403"), "secret") || !strings.Contains(ms.withStatus(cal, "424"), "displayname") {
		t.Errorf("PROPPATCH with an unknown property: want secret 403 and displayname 424: %+v", ms)
	}
	if got := calProps().withStatus(cal, "200"); !strings.Contains(got, "Work &amp; play") || strings.Contains(got, "Renamed") {
		t.Errorf("a refused PROPPATCH changed the name: %s", got)
	}

	ms = patch(cal, `<D:propertyupdate xmlns:D="DAV:" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop><A:calendar-color>red</A:calendar-color></D:prop></D:set></D:propertyupdate>`)
	if !strings.Contains(ms.withStatus(cal, "409"), "calendar-color") {
		t.Errorf("PROPPATCH of a bad colour: want 409: %+v", ms)
	}

	ms = patch(cal, `<D:propertyupdate xmlns:D="DAV:" xmlns:A="http://apple.com/ns/ical/"><D:remove><D:prop><A:calendar-color/></D:prop></D:remove></D:propertyupdate>`)
	if !strings.Contains(ms.withStatus(cal, "200"), "calendar-color") {
		t.Errorf("PROPPATCH remove of the colour: %+v", ms)
	}
	after := calProps()
	if got := after.withStatus(cal, "200"); strings.Contains(got, "#FF2968FF") || !strings.Contains(got, "Team meetings") {
		t.Errorf("after removing the colour: %s", got)
	}
	if !strings.Contains(after.withStatus(cal, "404"), "calendar-color") {
		t.Errorf("after removing the colour, calendar-color is not 404: %+v", after)
	}

	ms = patch(ab, `<D:propertyupdate xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop>`+
		`<D:displayname>Friends</D:displayname><R:addressbook-description>People I know</R:addressbook-description></D:prop></D:set></D:propertyupdate>`)
	if ok := ms.withStatus(ab, "200"); !strings.Contains(ok, "displayname") || !strings.Contains(ok, "addressbook-description") {
		t.Errorf("address book PROPPATCH: %+v", ms)
	}
	code, out := s.curl(t, "-X", "PROPFIND", "-H", "Depth: 0", "--data",
		`<D:propfind xmlns:D="DAV:" xmlns:R="urn:ietf:params:xml:ns:carddav"><D:prop><D:displayname/><R:addressbook-description/></D:prop></D:propfind>`, s.URL+ab)
	if got := parseMS(t, out).withStatus(ab, "200"); code != "207" || !strings.Contains(got, "Friends") || !strings.Contains(got, "People I know") {
		t.Errorf("address book PROPFIND after PROPPATCH: %s\n%s", code, out)
	}
	ms = patch(ab, `<D:propertyupdate xmlns:D="DAV:" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop><A:calendar-color>#00FF00</A:calendar-color></D:prop></D:set></D:propertyupdate>`)
	if !strings.Contains(ms.withStatus(ab, "403"), "calendar-color") {
		t.Errorf("calendar-color on an address book: want 403: %+v", ms)
	}

	// Not a propertyupdate; another user's calendar; no such calendar.
	if code, out := s.curl(t, "-X", "PROPPATCH", "--data", `<D:propfind xmlns:D="DAV:"/>`, s.URL+cal); code != "400" {
		t.Errorf("PROPPATCH with a propfind body: %s, want 400\n%s", code, out)
	}
	if code, _ := s.curl(t, "-X", "PROPPATCH", "--data", `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname>x</D:displayname></D:prop></D:set></D:propertyupdate>`,
		s.URL+"/dav/bob@example.org/calendars/default/"); code != "403" {
		t.Errorf("PROPPATCH of bob's calendar as alice: %s, want 403", code)
	}
	if code, _ := s.curl(t, "-X", "PROPPATCH", "--data", `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname>x</D:displayname></D:prop></D:set></D:propertyupdate>`,
		s.URL+"/dav/alice@example.org/calendars/nope/"); code != "404" {
		t.Errorf("PROPPATCH of a missing calendar: %s, want 404", code)
	}
}

// TestVdirsyncerMetasync: vdirsyncer's metasync (the Debian package)
// carries a calendar's display name and colour both ways: changed in the
// local directory, it sets them on the server with PROPPATCH; changed on
// the server, it reads them with PROPFIND into the local directory.
func TestVdirsyncerMetasync(t *testing.T) { testVdirsyncerMetasync(t, newServer) }

func testVdirsyncerMetasync(t *testing.T, newServer serverMaker) {
	if _, err := exec.LookPath("vdirsyncer"); err != nil {
		t.Fatal("vdirsyncer is required (apt-get install vdirsyncer)")
	}
	s := newServer(t, dav.Options{})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	conf := fmt.Sprintf("[general]\nstatus_path = %q\n\n", filepath.Join(dir, "status")) +
		"[pair cal]\na = \"cal_local\"\nb = \"cal_remote\"\ncollections = [\"from b\"]\nmetadata = [\"color\", \"displayname\"]\nconflict_resolution = \"b wins\"\n\n" +
		fmt.Sprintf("[storage cal_local]\ntype = \"filesystem\"\npath = %q\nfileext = \".ics\"\n\n", filepath.Join(dir, "cal")) +
		fmt.Sprintf("[storage cal_remote]\ntype = \"caldav\"\nurl = %q\nusername = \"alice@example.org\"\npassword = %q\nverify = %q\n",
			s.URL+"/", passwords["alice@example.org"], ca)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	vdirsyncer(t, cfg, "discover")
	vdirsyncer(t, cfg, "sync")
	vdirsyncer(t, cfg, "metasync")
	local := filepath.Join(dir, "cal", dav.DefaultCollection)
	readLocal := func(name string) string {
		b, err := os.ReadFile(filepath.Join(local, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := readLocal("displayname"); got != "Calendar" {
		t.Fatalf("local displayname after the first metasync = %q, want the server's %q", got, "Calendar")
	}

	// Changed locally: pushed to the server.
	os.WriteFile(filepath.Join(local, "displayname"), []byte("Family"), 0o600)
	os.WriteFile(filepath.Join(local, "color"), []byte("#3A87ADFF"), 0o600)
	vdirsyncer(t, cfg, "metasync")
	c, err := s.st.Collection(t.Context(), "alice@example.org", dav.Calendars, dav.DefaultCollection)
	if err != nil {
		t.Fatal(err)
	}
	if c.DisplayName != "Family" || c.Color != "#3A87ADFF" {
		t.Fatalf("server calendar after metasync: name %q colour %q, want Family #3A87ADFF", c.DisplayName, c.Color)
	}

	// Changed on the server: pulled into the local directory.
	if err := s.st.UpdateCollection(t.Context(), "alice@example.org", dav.Calendars, dav.DefaultCollection, func(c *dav.Collection) {
		c.DisplayName, c.Color = "Family & friends", "#00AA00"
	}); err != nil {
		t.Fatal(err)
	}
	vdirsyncer(t, cfg, "metasync")
	if name, color := readLocal("displayname"), readLocal("color"); name != "Family & friends" || color != "#00AA00" {
		t.Fatalf("local calendar after metasync: name %q colour %q, want the server's", name, color)
	}
}
