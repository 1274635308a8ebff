package dav

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"
)

// Prefix is the URL path under which calendars and contacts are served:
//
//	/dav/<user>/                      the user's principal
//	/dav/<user>/calendars/            calendar home set
//	/dav/<user>/calendars/<cal>/      a calendar
//	/dav/<user>/calendars/<cal>/<obj> a calendar object (.ics)
//	/dav/<user>/contacts/...          the same for address books (.vcf)
const Prefix = "/dav"

type ctxKey int

const (
	userKey ctxKey = iota
	condKey
)

func userFrom(ctx context.Context) (string, error) {
	u, _ := ctx.Value(userKey).(string)
	if u == "" {
		return "", webdav.NewHTTPError(http.StatusUnauthorized, errors.New("not logged in"))
	}
	return u, nil
}

// PrincipalPath is the principal URL path of user.
func PrincipalPath(user string) string { return Prefix + "/" + user + "/" }

// HomePath is user's home set of kind.
func HomePath(user string, kind Kind) string { return PrincipalPath(user) + string(kind) + "/" }

// davPath is a parsed request path.
type davPath struct {
	user string
	kind Kind
	col  string
	obj  string
}

// parsePath splits p under Prefix; ok is false for paths outside it.
func parsePath(p string) (dp davPath, depth int, ok bool) {
	rest, ok := strings.CutPrefix(p, Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return dp, 0, false
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		return dp, 0, true
	}
	seg := strings.Split(rest, "/")
	for _, s := range seg {
		if s == "" || s == "." || s == ".." {
			return dp, 0, false
		}
	}
	if len(seg) > 4 {
		return dp, 0, false
	}
	dp.user = seg[0]
	if len(seg) > 1 {
		dp.kind = Kind(seg[1])
		if dp.kind != Calendars && dp.kind != AddressBooks {
			return dp, 0, false
		}
	}
	if len(seg) > 2 {
		dp.col = seg[2]
	}
	if len(seg) > 3 {
		dp.obj = seg[3]
	}
	return dp, len(seg), true
}

// backend serves one user's calendars (caldav.Backend) and address books
// (carddav.Backend) from the store; the user comes from the context.
type backend struct {
	st      Backend
	maxSize int64
}

func mapErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return webdav.NewHTTPError(http.StatusNotFound, fmt.Errorf("%s: %w", what, err))
	case errors.Is(err, ErrPrecondition):
		return webdav.NewHTTPError(http.StatusPreconditionFailed, fmt.Errorf("%s: %w", what, err))
	case errors.Is(err, ErrExists):
		return webdav.NewHTTPError(http.StatusMethodNotAllowed, fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// resolve parses path and checks it belongs to the current user and kind.
func (b *backend) resolve(ctx context.Context, p string, kind Kind, wantObj bool) (string, davPath, error) {
	user, err := userFrom(ctx)
	if err != nil {
		return "", davPath{}, err
	}
	dp, n, ok := parsePath(p)
	if !ok || dp.user != user || dp.kind != kind || n < 3 || (wantObj && n != 4) || (!wantObj && n != 3) {
		return "", dp, webdav.NewHTTPError(http.StatusNotFound, fmt.Errorf("no %s at %q", kind, p))
	}
	return user, dp, nil
}

func (b *backend) CurrentUserPrincipal(ctx context.Context) (string, error) {
	user, err := userFrom(ctx)
	if err != nil {
		return "", err
	}
	return PrincipalPath(user), nil
}

func conditions(ctx context.Context, ifMatch, ifNoneMatch webdav.ConditionalMatch) (Conditions, error) {
	var c Conditions
	for _, m := range []struct {
		in  webdav.ConditionalMatch
		out *string
	}{{ifMatch, &c.IfMatch}, {ifNoneMatch, &c.IfNoneMatch}} {
		switch {
		case !m.in.IsSet():
		case m.in.IsWildcard():
			*m.out = "*"
		default:
			e, err := m.in.ETag()
			if err != nil {
				return c, webdav.NewHTTPError(http.StatusBadRequest, fmt.Errorf("malformed entity tag %q", string(m.in)))
			}
			*m.out = e
		}
	}
	return c, nil
}

// deleteConditions are the If-Match of a DELETE, which go-webdav does not
// pass to the backend: the handler puts them in the context.
func deleteConditions(ctx context.Context) Conditions {
	c, _ := ctx.Value(condKey).(Conditions)
	return c
}

func (b *backend) deleteAt(ctx context.Context, p string, kind Kind) error {
	user, err := userFrom(ctx)
	if err != nil {
		return err
	}
	dp, n, ok := parsePath(p)
	if !ok || dp.user != user || dp.kind != kind || n < 3 {
		return webdav.NewHTTPError(http.StatusForbidden, fmt.Errorf("cannot delete %q", p))
	}
	if n == 3 {
		return mapErr(b.st.DeleteCollection(ctx, user, kind, dp.col), "delete collection")
	}
	return mapErr(b.st.DeleteObject(ctx, user, kind, dp.col, dp.obj, deleteConditions(ctx)), "delete object")
}

// ---- CalDAV ----

func (b *backend) CalendarHomeSetPath(ctx context.Context) (string, error) {
	user, err := userFrom(ctx)
	if err != nil {
		return "", err
	}
	return HomePath(user, Calendars), nil
}

func (b *backend) calendar(user string, c Collection) caldav.Calendar {
	return caldav.Calendar{
		Path:                  HomePath(user, Calendars) + c.Name + "/",
		Name:                  c.DisplayName,
		Description:           c.Description,
		MaxResourceSize:       b.maxSize,
		SupportedComponentSet: []string{ical.CompEvent, ical.CompToDo, ical.CompJournal},
	}
}

func (b *backend) CreateCalendar(ctx context.Context, cal *caldav.Calendar) error {
	user, dp, err := b.resolve(ctx, cal.Path, Calendars, false)
	if err != nil {
		return err
	}
	return mapErr(b.st.CreateCollection(ctx, user, Collection{Kind: Calendars, Name: dp.col, DisplayName: cal.Name, Description: cal.Description}), "create calendar")
}

func (b *backend) ListCalendars(ctx context.Context) ([]caldav.Calendar, error) {
	user, err := userFrom(ctx)
	if err != nil {
		return nil, err
	}
	cols, err := b.st.Collections(ctx, user, Calendars)
	if err != nil {
		return nil, err
	}
	out := make([]caldav.Calendar, 0, len(cols))
	for _, c := range cols {
		out = append(out, b.calendar(user, c))
	}
	return out, nil
}

func (b *backend) GetCalendar(ctx context.Context, p string) (*caldav.Calendar, error) {
	user, dp, err := b.resolve(ctx, p, Calendars, false)
	if err != nil {
		return nil, err
	}
	c, err := b.st.Collection(ctx, user, Calendars, dp.col)
	if err != nil {
		return nil, mapErr(err, "get calendar")
	}
	cal := b.calendar(user, c)
	return &cal, nil
}

func calendarObject(user, col string, o Object) (*caldav.CalendarObject, error) {
	cal, err := ical.NewDecoder(bytes.NewReader(o.Data)).Decode()
	if err != nil {
		return nil, fmt.Errorf("decode stored calendar object %s: %w", o.Name, err)
	}
	return &caldav.CalendarObject{
		Path:          HomePath(user, Calendars) + col + "/" + o.Name,
		ModTime:       o.ModTime,
		ContentLength: int64(len(o.Data)),
		ETag:          o.ETag,
		Data:          cal,
	}, nil
}

func (b *backend) GetCalendarObject(ctx context.Context, p string, req *caldav.CalendarCompRequest) (*caldav.CalendarObject, error) {
	user, dp, err := b.resolve(ctx, p, Calendars, true)
	if err != nil {
		return nil, err
	}
	o, err := b.st.Object(ctx, user, Calendars, dp.col, dp.obj)
	if err != nil {
		return nil, mapErr(err, "get calendar object")
	}
	return calendarObject(user, dp.col, o)
}

func (b *backend) ListCalendarObjects(ctx context.Context, p string, req *caldav.CalendarCompRequest) ([]caldav.CalendarObject, error) {
	user, dp, err := b.resolve(ctx, p, Calendars, false)
	if err != nil {
		return nil, err
	}
	objs, err := b.st.Objects(ctx, user, Calendars, dp.col)
	if err != nil {
		return nil, mapErr(err, "list calendar objects")
	}
	out := make([]caldav.CalendarObject, 0, len(objs))
	for _, o := range objs {
		co, err := calendarObject(user, dp.col, o)
		if err != nil {
			return nil, err
		}
		out = append(out, *co)
	}
	return out, nil
}

func (b *backend) QueryCalendarObjects(ctx context.Context, p string, query *caldav.CalendarQuery) ([]caldav.CalendarObject, error) {
	all, err := b.ListCalendarObjects(ctx, p, &query.CompRequest)
	if err != nil {
		return nil, err
	}
	return caldav.Filter(query, all)
}

// checkCalendar enforces RFC 4791 4.1: one UID per resource, at least one
// event, task or journal entry.
func checkCalendar(cal *ical.Calendar) error {
	uid := ""
	n := 0
	for _, c := range cal.Children {
		switch c.Name {
		case ical.CompEvent, ical.CompToDo, ical.CompJournal:
		default:
			continue
		}
		n++
		u, err := c.Props.Text(ical.PropUID)
		if err != nil || u == "" {
			return fmt.Errorf("%s without UID", c.Name)
		}
		if uid != "" && u != uid {
			return errors.New("more than one UID in one calendar object")
		}
		uid = u
	}
	if n == 0 {
		return errors.New("no VEVENT, VTODO or VJOURNAL")
	}
	return nil
}

func (b *backend) PutCalendarObject(ctx context.Context, p string, cal *ical.Calendar, opts *caldav.PutCalendarObjectOptions) (*caldav.CalendarObject, error) {
	user, dp, err := b.resolve(ctx, p, Calendars, true)
	if err != nil {
		return nil, err
	}
	if err := checkCalendar(cal); err != nil {
		return nil, webdav.NewHTTPError(http.StatusBadRequest, fmt.Errorf("invalid calendar object: %w", err))
	}
	var buf bytes.Buffer
	if err := ical.NewEncoder(&buf).Encode(cal); err != nil {
		return nil, webdav.NewHTTPError(http.StatusBadRequest, fmt.Errorf("invalid calendar object: %w", err))
	}
	cond, err := conditions(ctx, opts.IfMatch, opts.IfNoneMatch)
	if err != nil {
		return nil, err
	}
	o, _, err := b.st.PutObject(ctx, user, Calendars, dp.col, dp.obj, buf.Bytes(), cond)
	if err != nil {
		return nil, mapErr(err, "store calendar object")
	}
	return &caldav.CalendarObject{Path: p, ModTime: o.ModTime, ContentLength: int64(len(o.Data)), ETag: o.ETag}, nil
}

func (b *backend) DeleteCalendarObject(ctx context.Context, p string) error {
	return b.deleteAt(ctx, p, Calendars)
}

// ---- CardDAV ----

// cardBackend is the carddav side: the two interfaces share method names
// only in CurrentUserPrincipal, but keeping them apart keeps each small.
type cardBackend struct{ *backend }

func (b cardBackend) AddressBookHomeSetPath(ctx context.Context) (string, error) {
	user, err := userFrom(ctx)
	if err != nil {
		return "", err
	}
	return HomePath(user, AddressBooks), nil
}

func (b cardBackend) addressBook(user string, c Collection) carddav.AddressBook {
	return carddav.AddressBook{
		Path:            HomePath(user, AddressBooks) + c.Name + "/",
		Name:            c.DisplayName,
		Description:     c.Description,
		MaxResourceSize: b.maxSize,
	}
}

func (b cardBackend) ListAddressBooks(ctx context.Context) ([]carddav.AddressBook, error) {
	user, err := userFrom(ctx)
	if err != nil {
		return nil, err
	}
	cols, err := b.st.Collections(ctx, user, AddressBooks)
	if err != nil {
		return nil, err
	}
	out := make([]carddav.AddressBook, 0, len(cols))
	for _, c := range cols {
		out = append(out, b.addressBook(user, c))
	}
	return out, nil
}

func (b cardBackend) GetAddressBook(ctx context.Context, p string) (*carddav.AddressBook, error) {
	user, dp, err := b.resolve(ctx, p, AddressBooks, false)
	if err != nil {
		return nil, err
	}
	c, err := b.st.Collection(ctx, user, AddressBooks, dp.col)
	if err != nil {
		return nil, mapErr(err, "get address book")
	}
	ab := b.addressBook(user, c)
	return &ab, nil
}

func (b cardBackend) CreateAddressBook(ctx context.Context, ab *carddav.AddressBook) error {
	user, dp, err := b.resolve(ctx, ab.Path, AddressBooks, false)
	if err != nil {
		return err
	}
	return mapErr(b.st.CreateCollection(ctx, user, Collection{Kind: AddressBooks, Name: dp.col, DisplayName: ab.Name, Description: ab.Description}), "create address book")
}

func (b cardBackend) DeleteAddressBook(ctx context.Context, p string) error {
	return b.deleteAt(ctx, p, AddressBooks)
}

func addressObject(user, col string, o Object) (*carddav.AddressObject, error) {
	card, err := vcard.NewDecoder(bytes.NewReader(o.Data)).Decode()
	if err != nil {
		return nil, fmt.Errorf("decode stored vCard %s: %w", o.Name, err)
	}
	return &carddav.AddressObject{
		Path:          HomePath(user, AddressBooks) + col + "/" + o.Name,
		ModTime:       o.ModTime,
		ContentLength: int64(len(o.Data)),
		ETag:          o.ETag,
		Card:          card,
	}, nil
}

func (b cardBackend) GetAddressObject(ctx context.Context, p string, req *carddav.AddressDataRequest) (*carddav.AddressObject, error) {
	user, dp, err := b.resolve(ctx, p, AddressBooks, true)
	if err != nil {
		return nil, err
	}
	o, err := b.st.Object(ctx, user, AddressBooks, dp.col, dp.obj)
	if err != nil {
		return nil, mapErr(err, "get vCard")
	}
	return addressObject(user, dp.col, o)
}

func (b cardBackend) ListAddressObjects(ctx context.Context, p string, req *carddav.AddressDataRequest) ([]carddav.AddressObject, error) {
	user, dp, err := b.resolve(ctx, p, AddressBooks, false)
	if err != nil {
		return nil, err
	}
	objs, err := b.st.Objects(ctx, user, AddressBooks, dp.col)
	if err != nil {
		return nil, mapErr(err, "list vCards")
	}
	out := make([]carddav.AddressObject, 0, len(objs))
	for _, o := range objs {
		ao, err := addressObject(user, dp.col, o)
		if err != nil {
			return nil, err
		}
		out = append(out, *ao)
	}
	return out, nil
}

func (b cardBackend) QueryAddressObjects(ctx context.Context, p string, query *carddav.AddressBookQuery) ([]carddav.AddressObject, error) {
	all, err := b.ListAddressObjects(ctx, p, &query.DataRequest)
	if err != nil {
		return nil, err
	}
	return carddav.Filter(query, all)
}

func (b cardBackend) PutAddressObject(ctx context.Context, p string, card vcard.Card, opts *carddav.PutAddressObjectOptions) (*carddav.AddressObject, error) {
	user, dp, err := b.resolve(ctx, p, AddressBooks, true)
	if err != nil {
		return nil, err
	}
	if card.Value(vcard.FieldUID) == "" && card.Value(vcard.FieldFormattedName) == "" {
		return nil, webdav.NewHTTPError(http.StatusBadRequest, errors.New("invalid vCard: neither UID nor FN"))
	}
	var buf bytes.Buffer
	if err := vcard.NewEncoder(&buf).Encode(card); err != nil {
		return nil, webdav.NewHTTPError(http.StatusBadRequest, fmt.Errorf("invalid vCard: %w", err))
	}
	cond, err := conditions(ctx, opts.IfMatch, opts.IfNoneMatch)
	if err != nil {
		return nil, err
	}
	o, _, err := b.st.PutObject(ctx, user, AddressBooks, dp.col, dp.obj, buf.Bytes(), cond)
	if err != nil {
		return nil, mapErr(err, "store vCard")
	}
	return &carddav.AddressObject{Path: p, ModTime: o.ModTime, ContentLength: int64(len(o.Data)), ETag: o.ETag}, nil
}

func (b cardBackend) DeleteAddressObject(ctx context.Context, p string) error {
	return b.deleteAt(ctx, p, AddressBooks)
}
