package dav

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"
)

// PROPPATCH on a collection (RFC 4918 section 9.2): clients rename a
// calendar or an address book, describe it and (Apple Calendar,
// Thunderbird, DAVx5, vdirsyncer's metasync) give a calendar its colour
// with it. go-webdav v0.6.0 answers 501 to every PROPPATCH, so it is
// answered here for the properties the store keeps: DAV:displayname,
// the CalDAV calendar-description or CardDAV addressbook-description, and
// Apple's calendar-color on calendars. The update is all or nothing, as
// the RFC asks: any other property is refused (403), the others of the
// same request are then not applied (424 Failed Dependency).

const nsAppleICal = "http://apple.com/ns/ical/"

// propertyUpdate is a PROPPATCH body: its set and remove instructions in
// document order.
type propertyUpdate struct {
	XMLName xml.Name `xml:"DAV: propertyupdate"`
	Items   []struct {
		XMLName xml.Name
		Prop    struct {
			Props []struct {
				XMLName xml.Name
				Inner   string `xml:",innerxml"`
				Text    string `xml:",chardata"`
			} `xml:",any"`
		} `xml:"DAV: prop"`
	} `xml:",any"`
}

// maxPropValue bounds a property's value, in bytes.
const maxPropValue = 4096

var colorRE = regexp.MustCompile(`^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$`)

// collectionField returns where the store keeps the property name of a
// collection of kind, and a check of its values; nil if it keeps none.
func collectionField(kind Kind, name xml.Name) (func(*Collection) *string, func(string) bool) {
	text := func(v string) bool { return len(v) <= maxPropValue && utf8.ValidString(v) }
	switch {
	case name == xml.Name{Space: nsDAV, Local: "displayname"}:
		return func(c *Collection) *string { return &c.DisplayName }, text
	case kind == Calendars && name == xml.Name{Space: nsCalDAV, Local: "calendar-description"},
		kind == AddressBooks && name == xml.Name{Space: nsCardDAV, Local: "addressbook-description"}:
		return func(c *Collection) *string { return &c.Description }, text
	case kind == Calendars && name == xml.Name{Space: nsAppleICal, Local: "calendar-color"}:
		return func(c *Collection) *string { return &c.Color }, colorRE.MatchString
	}
	return nil, nil
}

// proppatch answers a PROPPATCH on the collection dp.
func (h *Handler) proppatch(w http.ResponseWriter, r *http.Request, user string, dp davPath) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportBytes+1))
	if err != nil || len(body) > maxReportBytes {
		http.Error(w, "PROPPATCH body unreadable or too large", http.StatusBadRequest)
		return
	}
	var pu propertyUpdate
	if err := xml.Unmarshal(body, &pu); err != nil {
		http.Error(w, "malformed PROPPATCH body: a DAV:propertyupdate is expected", http.StatusBadRequest)
		return
	}
	type change struct {
		name  xml.Name
		field func(*Collection) *string
		value string
		code  int
	}
	var changes []change
	failed := false
	for _, it := range pu.Items {
		remove := it.XMLName == xml.Name{Space: nsDAV, Local: "remove"}
		if !remove && it.XMLName != (xml.Name{Space: nsDAV, Local: "set"}) {
			http.Error(w, "malformed PROPPATCH body: only DAV:set and DAV:remove are allowed", http.StatusBadRequest)
			return
		}
		for _, p := range it.Prop.Props {
			c := change{name: p.XMLName, code: http.StatusOK}
			var valid func(string) bool
			c.field, valid = collectionField(dp.kind, p.XMLName)
			switch {
			case c.field == nil:
				c.code = http.StatusForbidden
			case remove:
			case strings.Contains(p.Inner, "<"):
				c.code = http.StatusConflict // elements where text is expected
			default:
				c.value = strings.TrimSpace(p.Text)
				if !valid(c.value) {
					c.code = http.StatusConflict
				}
			}
			failed = failed || c.code != http.StatusOK
			changes = append(changes, c)
		}
	}
	if !failed && len(changes) > 0 {
		err = h.st.UpdateCollection(r.Context(), user, dp.kind, dp.col, func(col *Collection) {
			for _, c := range changes {
				*c.field(col) = c.value
			}
		})
		switch {
		case errors.Is(err, ErrNotFound):
			http.Error(w, "no such collection", http.StatusNotFound)
			return
		case err != nil:
			h.opts.Logger.Error("dav proppatch", "user", user, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	} else if _, err := h.st.Collection(r.Context(), user, dp.kind, dp.col); err != nil {
		http.Error(w, "no such collection", httpStatus(err))
		return
	}
	// One propstat per status, in the order first met.
	var order []int
	byCode := map[int][]xml.Name{}
	for _, c := range changes {
		code := c.code
		if failed && code == http.StatusOK {
			code = http.StatusFailedDependency
		}
		if _, ok := byCode[code]; !ok {
			order = append(order, code)
		}
		byCode[code] = append(byCode[code], c.name)
	}
	var b strings.Builder
	b.WriteString(xml.Header + `<D:multistatus xmlns:D="DAV:"><D:response><D:href>` +
		escape(hrefPath(HomePath(user, dp.kind)+dp.col+"/")) + `</D:href>`)
	for _, code := range order {
		b.WriteString(`<D:propstat><D:prop>`)
		for _, n := range byCode[code] {
			b.WriteString(`<` + n.Local + ` xmlns="` + escape(n.Space) + `"/>`)
		}
		b.WriteString(`</D:prop><D:status>` + status(code) + `</D:status></D:propstat>`)
	}
	b.WriteString(`</D:response></D:multistatus>` + "\n")
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(http.StatusMultiStatus)
	io.WriteString(w, b.String())
}
