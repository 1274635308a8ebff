package dav

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"strconv"
	"strings"
)

// go-webdav v0.6.0 does not know the collection properties with which
// clients decide how to resynchronise: DAV:sync-token (RFC 6578),
// CS:getctag (the CalendarServer extension most clients still read) and
// DAV:supported-report-set (where they look for sync-collection); nor a
// calendar's colour (Apple's calendar-color, set by PROPPATCH). A
// PROPFIND on a collection is answered by go-webdav into a buffer; these
// properties, which it lists as 404, are then filled in from the store.
// go-webdav writes an xmlns on every property element, so each one's inner
// XML stands on its own and can be moved between propstats as it is.

const nsCS = "http://calendarserver.org/ns/"

type rawMultistatus struct {
	XMLName   xml.Name      `xml:"DAV: multistatus"`
	Responses []rawResponse `xml:"DAV: response"`
}

type rawResponse struct {
	Hrefs     []string      `xml:"DAV: href"`
	Propstats []rawPropstat `xml:"DAV: propstat"`
	Status    string        `xml:"DAV: status"`
	Rest      []rawElement  `xml:",any"`
}

type rawPropstat struct {
	Prop struct {
		Items []rawElement `xml:",any"`
	} `xml:"DAV: prop"`
	Status string `xml:"DAV: status"`
}

type rawElement struct {
	XMLName xml.Name
	Inner   string `xml:",innerxml"`
}

func (e rawElement) write(b *bytes.Buffer) {
	b.WriteString(`<` + e.XMLName.Local + ` xmlns="` + escape(e.XMLName.Space) + `">` + e.Inner + `</` + e.XMLName.Local + `>`)
}

// collectionProps are the values of the added properties of a collection.
func collectionProps(kind Kind, c Collection) map[xml.Name]string {
	reports := []string{`<sync-collection xmlns="DAV:"/>`}
	if kind == Calendars {
		reports = append(reports, `<calendar-multiget xmlns="`+nsCalDAV+`"/>`, `<calendar-query xmlns="`+nsCalDAV+`"/>`)
	} else {
		reports = append(reports, `<addressbook-multiget xmlns="`+nsCardDAV+`"/>`, `<addressbook-query xmlns="`+nsCardDAV+`"/>`)
	}
	var rs strings.Builder
	for _, r := range reports {
		rs.WriteString(`<supported-report xmlns="DAV:"><report xmlns="DAV:">` + r + `</report></supported-report>`)
	}
	props := map[xml.Name]string{
		{Space: nsDAV, Local: "sync-token"}:           escape(c.SyncToken()),
		{Space: nsCS, Local: "getctag"}:               escape(c.SyncToken()),
		{Space: nsDAV, Local: "supported-report-set"}: rs.String(),
	}
	if kind == Calendars && c.Color != "" {
		props[xml.Name{Space: nsAppleICal, Local: "calendar-color"}] = escape(c.Color)
	}
	return props
}

// fillCollectionProps rewrites a go-webdav multistatus, moving the added
// properties of the response for colPath from 404 to 200 with values.
// The body is returned unchanged if it is not a multistatus it can read.
func fillCollectionProps(body []byte, colPath string, values map[xml.Name]string) []byte {
	var ms rawMultistatus
	if err := xml.Unmarshal(body, &ms); err != nil {
		return body
	}
	changed := false
	for i := range ms.Responses {
		r := &ms.Responses[i]
		if len(r.Hrefs) != 1 || strings.TrimSuffix(r.Hrefs[0], "/") != strings.TrimSuffix(hrefPath(colPath), "/") {
			continue
		}
		var found []rawElement
		for j := range r.Propstats {
			ps := &r.Propstats[j]
			if !strings.Contains(ps.Status, " 404 ") {
				continue
			}
			kept := ps.Prop.Items[:0]
			for _, p := range ps.Prop.Items {
				if v, ok := values[p.XMLName]; ok {
					found = append(found, rawElement{XMLName: p.XMLName, Inner: v})
					continue
				}
				kept = append(kept, p)
			}
			ps.Prop.Items = kept
		}
		if len(found) == 0 {
			continue
		}
		changed = true
		ok := -1
		for j, ps := range r.Propstats {
			if strings.Contains(ps.Status, " 200 ") {
				ok = j
			}
		}
		if ok < 0 {
			r.Propstats = append(r.Propstats, rawPropstat{Status: status(http.StatusOK)})
			ok = len(r.Propstats) - 1
		}
		r.Propstats[ok].Prop.Items = append(r.Propstats[ok].Prop.Items, found...)
	}
	if !changed {
		return body
	}
	var b bytes.Buffer
	b.WriteString(xml.Header + `<multistatus xmlns="DAV:">`)
	for _, r := range ms.Responses {
		b.WriteString(`<response>`)
		for _, h := range r.Hrefs {
			b.WriteString(`<href>` + escape(h) + `</href>`)
		}
		for _, ps := range r.Propstats {
			if len(ps.Prop.Items) == 0 {
				continue
			}
			b.WriteString(`<propstat><prop>`)
			for _, p := range ps.Prop.Items {
				p.write(&b)
			}
			b.WriteString(`</prop><status>` + escape(ps.Status) + `</status></propstat>`)
		}
		if r.Status != "" {
			b.WriteString(`<status>` + escape(r.Status) + `</status>`)
		}
		for _, e := range r.Rest {
			e.write(&b)
		}
		b.WriteString(`</response>`)
	}
	b.WriteString(`</multistatus>`)
	return b.Bytes()
}

// bufferedWriter keeps a response to rewrite it.
type bufferedWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *bufferedWriter) Header() http.Header         { return w.header }
func (w *bufferedWriter) WriteHeader(code int)        { w.code = code }
func (w *bufferedWriter) Write(p []byte) (int, error) { return w.body.Write(p) }

// propfindCollection serves a PROPFIND on a collection through next, with
// the added collection properties filled in.
func (h *Handler) propfindCollection(w http.ResponseWriter, r *http.Request, user string, dp davPath, next http.Handler) {
	bw := &bufferedWriter{header: http.Header{}, code: http.StatusOK}
	next.ServeHTTP(bw, r)
	body := bw.body.Bytes()
	if bw.code == http.StatusMultiStatus {
		if c, err := h.st.Collection(r.Context(), user, dp.kind, dp.col); err == nil {
			body = fillCollectionProps(body, HomePath(user, dp.kind)+dp.col+"/", collectionProps(dp.kind, c))
		}
	}
	for k, v := range bw.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(bw.code)
	w.Write(body)
}
