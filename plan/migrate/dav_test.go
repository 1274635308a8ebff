package migrate_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
)

const (
	davUser    = "alice"
	davSrcPass = "alice-at-the-old-place"
	davDstPass = "alice-at-the-new-place"
)

// davFixture is what a test put into the source Radicale: UID -> SUMMARY
// (events, to-dos) or FN (contacts), per collection name.
type davFixture struct {
	events   map[string]map[string]string // calendar -> UID -> SUMMARY
	contacts map[string]string            // UID -> FN
	photo    string                       // base64 PHOTO of the first contact
}

func davClients(t *testing.T, base, user, pass string) (*caldav.Client, *carddav.Client) {
	t.Helper()
	hc := webdav.HTTPClientWithBasicAuth(&http.Client{Timeout: 30 * time.Second}, user, pass)
	cal, err := caldav.NewClient(hc, base)
	if err != nil {
		t.Fatal(err)
	}
	card, err := carddav.NewClient(hc, base)
	if err != nil {
		t.Fatal(err)
	}
	return cal, card
}

func newCalendar(uid, summary string, todo bool, rrule string) *ical.Calendar {
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, "-//mailctl//dav test//EN")
	name := ical.CompEvent
	if todo {
		name = ical.CompToDo
	}
	c := ical.NewComponent(name)
	c.Props.SetText(ical.PropUID, uid)
	c.Props.SetText(ical.PropSummary, summary)
	c.Props.SetDateTime(ical.PropDateTimeStamp, time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC))
	if todo {
		c.Props.SetDateTime(ical.PropDue, time.Date(2026, 2, 1, 17, 0, 0, 0, time.UTC))
	} else {
		c.Props.SetDateTime(ical.PropDateTimeStart, time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
		c.Props.SetDateTime(ical.PropDateTimeEnd, time.Date(2026, 1, 5, 9, 30, 0, 0, time.UTC))
	}
	if rrule != "" {
		c.Props.SetText(ical.PropRecurrenceRule, rrule)
	}
	cal.Children = append(cal.Children, c)
	return cal
}

// seedDAV fills the source: calendars "work" (events, every third one
// weekly recurring, and one UID with characters not fit for a file name)
// and "home" (VTODOs), an address book "contacts" (the first contact with a
// small PHOTO).
func seedDAV(t *testing.T, src *testenv.Radicale, events, todos, contacts int) davFixture {
	t.Helper()
	ctx := context.Background()
	cal, card := davClients(t, src.URL, davUser, davSrcPass)
	src.MakeCollection(t, davUser, davSrcPass, "/alice/work/", "calendar", "Work")
	src.MakeCollection(t, davUser, davSrcPass, "/alice/home/", "calendar", "Home & garden")
	src.MakeCollection(t, davUser, davSrcPass, "/alice/contacts/", "addressbook", "Contacts")
	fx := davFixture{events: map[string]map[string]string{"work": {}, "home": {}}, contacts: map[string]string{}}
	for i := range events {
		uid, rrule := fmt.Sprintf("ev-%04d@old.example", i), ""
		if i == 0 {
			uid = "ev 0/with:odd chars@old.example"
		}
		if i%3 == 0 {
			rrule = "FREQ=WEEKLY;COUNT=10;BYDAY=MO"
		}
		summary := fmt.Sprintf("Meeting %d", i)
		if _, err := cal.PutCalendarObject(ctx, fmt.Sprintf("/alice/work/src-%d.ics", i), newCalendar(uid, summary, false, rrule)); err != nil {
			t.Fatalf("seed event %d: %v", i, err)
		}
		fx.events["work"][uid] = summary
	}
	for i := range todos {
		uid, summary := fmt.Sprintf("todo-%d@old.example", i), fmt.Sprintf("Task %d", i)
		if _, err := cal.PutCalendarObject(ctx, fmt.Sprintf("/alice/home/t%d.ics", i), newCalendar(uid, summary, true, "")); err != nil {
			t.Fatalf("seed to-do %d: %v", i, err)
		}
		fx.events["home"][uid] = summary
	}
	fx.photo = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3}, 40))
	for i := range contacts {
		c := vcard.Card{}
		uid, fn := fmt.Sprintf("urn:uuid:0000-%04d", i), fmt.Sprintf("Person %d", i)
		c.SetValue(vcard.FieldVersion, "3.0")
		c.SetValue(vcard.FieldUID, uid)
		c.SetValue(vcard.FieldFormattedName, fn)
		c.SetName(&vcard.Name{FamilyName: fmt.Sprintf("Person%d", i), GivenName: "Some"})
		c.SetValue(vcard.FieldEmail, fmt.Sprintf("p%d@old.example", i))
		if i == 0 {
			c.Set(vcard.FieldPhoto, &vcard.Field{Value: fx.photo, Params: vcard.Params{"ENCODING": {"b"}, "TYPE": {"PNG"}}})
		}
		if _, err := card.PutAddressObject(ctx, fmt.Sprintf("/alice/contacts/c%d.vcf", i), c); err != nil {
			t.Fatalf("seed contact %d: %v", i, err)
		}
		fx.contacts[uid] = fn
	}
	return fx
}

func davJob(src, dst string) migrate.Job {
	return migrate.Job{User: "alice@example.com", NoMail: true, DAV: &migrate.DAVJob{
		Calendars: true, Contacts: true,
		Source:     migrate.DAVEndpoint{CalDAV: src, CardDAV: src},
		SourceAuth: migrate.Credentials{Username: davUser, Password: davSrcPass},
		Target:     migrate.DAVEndpoint{CalDAV: dst, CardDAV: dst},
		TargetAuth: migrate.Credentials{Username: davUser, Password: davDstPass},
		Timeout:    30 * time.Second,
	}}
}

// readTarget reads every calendar object and contact of the target:
// collection name -> UID -> SUMMARY or FN, and counts objects (a
// duplicate UID would be two objects).
func readTarget(t *testing.T, base string) (map[string]map[string]string, int, []vcard.Card) {
	t.Helper()
	ctx := context.Background()
	cal, card := davClients(t, base, davUser, davDstPass)
	out := map[string]map[string]string{}
	n := 0
	cals, err := cal.FindCalendars(ctx, "/alice/")
	if err != nil {
		t.Fatalf("target calendars: %v", err)
	}
	for _, c := range cals {
		name := strings.Trim(strings.TrimPrefix(c.Path, "/alice/"), "/")
		out[name] = map[string]string{}
		objs, err := cal.QueryCalendar(ctx, c.Path, &caldav.CalendarQuery{
			CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
			CompFilter:  caldav.CompFilter{Name: "VCALENDAR"}})
		if err != nil {
			t.Fatalf("target calendar %s: %v", c.Path, err)
		}
		for _, o := range objs {
			for _, comp := range o.Data.Children {
				uid, _ := comp.Props.Text(ical.PropUID)
				sum, _ := comp.Props.Text(ical.PropSummary)
				if uid != "" {
					out[name][uid] = sum
					n++
				}
			}
		}
	}
	abs, err := card.FindAddressBooks(ctx, "/alice/")
	if err != nil {
		t.Fatalf("target address books: %v", err)
	}
	var cards []vcard.Card
	for _, a := range abs {
		name := strings.Trim(strings.TrimPrefix(a.Path, "/alice/"), "/")
		out[name] = map[string]string{}
		objs, err := card.QueryAddressBook(ctx, a.Path, &carddav.AddressBookQuery{DataRequest: carddav.AddressDataRequest{AllProp: true}})
		if err != nil {
			t.Fatalf("target address book %s: %v", a.Path, err)
		}
		for _, o := range objs {
			out[name][o.Card.Value(vcard.FieldUID)] = o.Card.Value(vcard.FieldFormattedName)
			cards = append(cards, o.Card)
			n++
		}
	}
	return out, n, cards
}

func checkTarget(t *testing.T, base string, fx davFixture) {
	t.Helper()
	got, n, cards := readTarget(t, base)
	want := 0
	for name, evs := range fx.events {
		want += len(evs)
		for uid, sum := range evs {
			if got[name][uid] != sum {
				t.Errorf("target %s: UID %q has summary %q, want %q", name, uid, got[name][uid], sum)
			}
		}
	}
	want += len(fx.contacts)
	for uid, fn := range fx.contacts {
		if got["contacts"][uid] != fn {
			t.Errorf("target contacts: UID %q has FN %q, want %q", uid, got["contacts"][uid], fn)
		}
	}
	if n != want {
		t.Errorf("target holds %d objects, want %d (no duplicates)", n, want)
	}
	photo := false
	for _, c := range cards {
		if f := c.Get(vcard.FieldPhoto); f != nil {
			photo = f.Value == fx.photo
		}
	}
	if len(fx.contacts) > 0 && !photo {
		t.Errorf("the PHOTO of the first contact did not arrive intact")
	}
}

// TestMigrateDAV copies two calendars (recurring events, to-dos) and an
// address book (a contact with a photo) from one Radicale to another;
// runs again (nothing copied), after an event changed at the source (it is
// updated, nothing duplicated), and after an object was deleted at the
// target (copied again).
func TestMigrateDAV(t *testing.T) {
	src := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davSrcPass})
	dst := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davDstPass})
	fx := seedDAV(t, src, 30, 5, 12)
	var progress bytes.Buffer
	opts := migrate.Options{State: filepath.Join(t.TempDir(), "dav.db"), Progress: &progress}
	ctx := context.Background()

	sum, err := migrate.Run(ctx, []migrate.Job{davJob(src.URL, dst.URL)}, opts)
	u := sum.Users[0]
	if err != nil || !sum.OK() || u.DAVCopied != 47 || u.DAVSkipped != 0 || u.DAVUpdated != 0 {
		t.Fatalf("first run: err %v, copied %d, skipped %d, updated %d, failures %v %v; want 47 copied",
			err, u.DAVCopied, u.DAVSkipped, u.DAVUpdated, u.Failures, u.DAVErrors)
	}
	checkTarget(t, dst.URL, fx)
	var out bytes.Buffer
	sum.Write(&out)
	for _, want := range []string{
		"alice@example.com: mail not copied",
		"calendars and contacts: copied 47 objects",
		`calendar "/alice/home/" -> "/alice/home/": 5 objects, copied 5, updated 0, skipped 0`,
		`calendar "/alice/work/" -> "/alice/work/": 30 objects, copied 30`,
		`address book "/alice/contacts/" -> "/alice/contacts/": 12 objects, copied 12`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(progress.String(), "alice@example.com: calendar Work 30/30") {
		t.Errorf("progress lacks the Work calendar's line:\n%s", progress.String())
	}

	// Display names were carried over.
	cal, _ := davClients(t, dst.URL, davUser, davDstPass)
	cals, err := cal.FindCalendars(ctx, "/alice/")
	names := map[string]string{}
	for _, c := range cals {
		names[c.Path] = c.Name
	}
	if err != nil || names["/alice/home/"] != "Home & garden" {
		t.Errorf("target calendars %v, %v: want /alice/home/ named Home & garden", names, err)
	}

	sum, err = migrate.Run(ctx, []migrate.Job{davJob(src.URL, dst.URL)}, opts)
	if u := sum.Users[0]; err != nil || !sum.OK() || u.DAVCopied != 0 || u.DAVUpdated != 0 || u.DAVSkipped != 47 {
		t.Fatalf("second run: err %v, copied %d, updated %d, skipped %d; want 0, 0, 47", err, u.DAVCopied, u.DAVUpdated, u.DAVSkipped)
	}

	// An event changes at the source; a to-do is deleted at the target.
	srcCal, _ := davClients(t, src.URL, davUser, davSrcPass)
	if _, err := srcCal.PutCalendarObject(ctx, "/alice/work/src-7.ics", newCalendar("ev-0007@old.example", "Meeting 7, moved", false, "")); err != nil {
		t.Fatal(err)
	}
	fx.events["work"]["ev-0007@old.example"] = "Meeting 7, moved"
	if err := cal.RemoveAll(ctx, "/alice/home/todo-3@old.example.ics"); err != nil {
		t.Fatalf("delete a target to-do: %v", err)
	}
	sum, err = migrate.Run(ctx, []migrate.Job{davJob(src.URL, dst.URL)}, opts)
	if u := sum.Users[0]; err != nil || !sum.OK() || u.DAVCopied != 1 || u.DAVUpdated != 1 || u.DAVSkipped != 45 {
		t.Fatalf("third run: err %v, copied %d, updated %d, skipped %d; want 1, 1, 45 (%v)", err, u.DAVCopied, u.DAVUpdated, u.DAVSkipped, u.Failures)
	}
	checkTarget(t, dst.URL, fx)
}

// TestMigrateDAVResume interrupts a copy after some PUTs reached the
// target (through a proxy that cancels the run at the 15th PUT), then runs
// it again: the target ends with every object exactly once, and a third
// run copies nothing.
func TestMigrateDAVResume(t *testing.T) {
	src := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davSrcPass})
	dst := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davDstPass})
	fx := seedDAV(t, src, 30, 0, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u, _ := url.Parse(dst.URL)
	var puts atomic.Int32
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
		r.Out.Header.Del("Accept-Encoding") // plain XML to edit
	}}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && puts.Add(1) == 15 {
			defer cancel() // after this PUT is answered
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	opts := migrate.Options{State: filepath.Join(t.TempDir(), "dav.db")}

	sum, err := migrate.Run(ctx, []migrate.Job{davJob(src.URL, proxy.URL+"/")}, opts)
	first := sum.Users[0]
	if !errors.Is(err, context.Canceled) || !errors.Is(first.Err, context.Canceled) || first.DAVCopied == 0 || first.DAVCopied >= 40 {
		t.Fatalf("interrupted run: err %v / %v, copied %d; want context.Canceled after some", err, first.Err, first.DAVCopied)
	}
	var out bytes.Buffer
	sum.Write(&out)
	if !strings.Contains(out.String(), "interrupted: what was acknowledged is recorded") {
		t.Errorf("summary of the interrupted run:\n%s", out.String())
	}
	_, before, _ := readTarget(t, dst.URL)

	sum, err = migrate.Run(context.Background(), []migrate.Job{davJob(src.URL, dst.URL)}, opts)
	second := sum.Users[0]
	if err != nil || !sum.OK() {
		t.Fatalf("resumed run: err %v, failures %v %v", err, second.Failures, second.DAVErrors)
	}
	t.Logf("interrupted after %d copied (%d in the target), resumed: %d copied, %d skipped", first.DAVCopied, before, second.DAVCopied, second.DAVSkipped)
	if second.DAVCopied+second.DAVSkipped != 40 || second.DAVSkipped < first.DAVCopied {
		t.Errorf("resumed run copied %d and skipped %d: want 40 in all, at least the %d recorded skipped", second.DAVCopied, second.DAVSkipped, first.DAVCopied)
	}
	checkTarget(t, dst.URL, fx)

	sum, err = migrate.Run(context.Background(), []migrate.Job{davJob(src.URL, dst.URL)}, opts)
	if u := sum.Users[0]; err != nil || u.DAVCopied != 0 || u.DAVSkipped != 40 {
		t.Errorf("third run: copied %d, skipped %d, err %v; want 0, 40", u.DAVCopied, u.DAVSkipped, err)
	}
}

// TestMigrateDAVWellKnown gives the source as a bare https://host/ whose
// server only redirects /.well-known/caldav and /.well-known/carddav (RFC
// 6764) to the context path, here another port of the same host: the copy
// follows the redirects.
func TestMigrateDAVWellKnown(t *testing.T) {
	src := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davSrcPass})
	dst := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davDstPass})
	fx := seedDAV(t, src, 3, 1, 2)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/caldav", "/.well-known/carddav":
			http.Redirect(w, r, src.URL, http.StatusMovedPermanently)
		default:
			http.NotFound(w, r)
		}
	}))
	defer front.Close()
	sum, err := migrate.Run(context.Background(), []migrate.Job{davJob(front.URL+"/", dst.URL)},
		migrate.Options{State: filepath.Join(t.TempDir(), "dav.db")})
	if u := sum.Users[0]; err != nil || !sum.OK() || u.DAVCopied != 6 {
		t.Fatalf("run: err %v, copied %d, errors %v %v; want 6 copied", err, u.DAVCopied, u.DAVErrors, u.Failures)
	}
	checkTarget(t, dst.URL, fx)
}

// TestMigrateDAVNoContentLength reads the source through a proxy that
// removes getcontentlength from every answer, as some servers leave it
// out: go-webdav's ReadDir refuses such a listing, the copy lists the
// collections with its own PROPFIND of getetag instead.
func TestMigrateDAVNoContentLength(t *testing.T) {
	src := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davSrcPass})
	dst := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davDstPass})
	fx := seedDAV(t, src, 3, 1, 2)
	u, _ := url.Parse(src.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
		r.Out.Header.Del("Accept-Encoding") // plain XML to edit
	}}
	strip := regexp.MustCompile(`<([A-Za-z0-9]+:)?getcontentlength>[^<]*</([A-Za-z0-9]+:)?getcontentlength>|<([A-Za-z0-9]+:)?getcontentlength */>`)
	var stripped atomic.Int32
	rp.ModifyResponse = func(resp *http.Response) error {
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		out := strip.ReplaceAll(data, nil)
		if len(out) != len(data) {
			stripped.Add(1)
		}
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		return nil
	}
	proxy := httptest.NewServer(rp)
	defer proxy.Close()
	sum, err := migrate.Run(context.Background(), []migrate.Job{davJob(proxy.URL+"/", dst.URL)},
		migrate.Options{State: filepath.Join(t.TempDir(), "dav.db")})
	if u := sum.Users[0]; err != nil || !sum.OK() || u.DAVCopied != 6 {
		t.Fatalf("run: err %v, copied %d, errors %v %v; want 6 copied", err, u.DAVCopied, u.DAVErrors, u.Failures)
	}
	if stripped.Load() == 0 {
		t.Fatal("the proxy removed no getcontentlength: the test tests nothing")
	}
	checkTarget(t, dst.URL, fx)
}
