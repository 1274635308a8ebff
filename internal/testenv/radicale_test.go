package testenv

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
)

// TestStartRadicale logs in to the private Radicale through go-webdav's
// CalDAV client: a wrong password is refused, the principal and home set
// are /alice/, a calendar made with MakeCollection is listed and an event
// put into it reads back by its UID.
func TestStartRadicale(t *testing.T) {
	r := StartRadicale(t, RadicaleUser{"alice", "alice-pw"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 10 * time.Second}

	bad, err := caldav.NewClient(webdav.HTTPClientWithBasicAuth(hc, "alice", "wrong"), r.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.FindCurrentUserPrincipal(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("principal with a wrong password: %v, want 401", err)
	}

	c, err := caldav.NewClient(webdav.HTTPClientWithBasicAuth(hc, "alice", "alice-pw"), r.URL)
	if err != nil {
		t.Fatal(err)
	}
	principal, err := c.FindCurrentUserPrincipal(ctx)
	if err != nil || principal != "/alice/" {
		t.Fatalf("principal = %q, %v; want /alice/", principal, err)
	}
	home, err := c.FindCalendarHomeSet(ctx, principal)
	if err != nil || home != "/alice/" {
		t.Fatalf("home set = %q, %v; want /alice/", home, err)
	}
	r.MakeCollection(t, "alice", "alice-pw", "/alice/work/", "calendar", "Work & more")
	cals, err := c.FindCalendars(ctx, home)
	if err != nil || len(cals) != 1 || cals[0].Path != "/alice/work/" || cals[0].Name != "Work & more" {
		t.Fatalf("calendars = %+v, %v; want /alice/work/ named Work & more", cals, err)
	}

	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, "-//mailctl//testenv//EN")
	ev := ical.NewEvent()
	ev.Props.SetText(ical.PropUID, "ev-1@example.com")
	ev.Props.SetText(ical.PropSummary, "Stand-up")
	ev.Props.SetDateTime(ical.PropDateTimeStamp, time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	ev.Props.SetDateTime(ical.PropDateTimeStart, time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	cal.Children = append(cal.Children, ev.Component)
	if _, err := c.PutCalendarObject(ctx, "/alice/work/ev-1.ics", cal); err != nil {
		t.Fatalf("put event: %v", err)
	}
	got, err := c.GetCalendarObject(ctx, "/alice/work/ev-1.ics")
	if err != nil {
		t.Fatalf("get event: %v", err)
	}
	if uid, _ := got.Data.Events()[0].Props.Text(ical.PropUID); uid != "ev-1@example.com" || got.ETag == "" {
		t.Errorf("event read back: UID %q, ETag %q", uid, got.ETag)
	}
}
