package migrate

import "testing"

// TestDAVNames: target collection and object names are plain path
// segments, stable for a source, distinct for distinct UIDs.
func TestDAVNames(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/alice/work/", "work"},
		{"/caldav/v2/team%40group.calendar.google.com/events/", "team_40group.calendar.google.com"},
		{"/caldav/v2/alice@gmail.com/events/", "alice@gmail.com"},
		{"/carddav/v1/principals/alice@gmail.com/lists/default/", "default"},
		{"/", "default"},
		{"/bob/my calendar/", "my_calendar"},
		{"/bob/../", "_"},
	} {
		if got := collectionSegment(tc.in); got != tc.want {
			t.Errorf("collectionSegment(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := objectName("ev-1@example.org", "/x/1.ics"); got != "ev-1@example.org" {
		t.Errorf("objectName of a plain UID = %q", got)
	}
	a, b := objectName("a/b", "/x/1.ics"), objectName("a:b", "/x/1.ics")
	if a == b || len(a) != 32 || objectName("a/b", "/y/2.ics") != a {
		t.Errorf("objectName of odd UIDs: %q, %q: want distinct digests, the same for the same UID", a, b)
	}
	if objectName("", "/x/1.ics") == objectName("", "/x/2.ics") {
		t.Errorf("objects without UID at different hrefs share a name")
	}
}
