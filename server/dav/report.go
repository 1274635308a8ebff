package dav

// The calendar-query, addressbook-query, calendar-multiget and
// addressbook-multiget REPORTs on a collection, answered as a stream.
//
// go-webdav v0.6.0's caldav and carddav handlers answer these by asking
// the backend for every object of the collection, parsed, then building
// the whole multistatus in memory before writing it: a 5 000-event
// calendar made the server grow by tens of MiB for one REPORT (issue 19,
// bench/RESULTS.md). Its handlers have no streaming hook, so this file
// reads the objects from the store in small batches, filters each with
// go-webdav's own exported matchers (caldav.Match, carddav.Match) and
// writes its <response> before reading the next batch: memory stays
// flat whatever the size of the collection.

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"
)

// reportBatch is how many objects are read from the store per read
// transaction while a REPORT is answered.
const reportBatch = 64

// reportProp is one property asked for in a REPORT's DAV:prop; for
// CardDAV's address-data, the vCard properties it selects.
type reportProp struct {
	XMLName   xml.Name
	CardProps []struct {
		Name string `xml:"name,attr"`
	} `xml:"urn:ietf:params:xml:ns:carddav prop"`
	CardAll *struct{} `xml:"urn:ietf:params:xml:ns:carddav allprop"`
}

// queryRequest is the body of any of the four REPORTs.
type queryRequest struct {
	XMLName xml.Name
	Prop    *struct {
		Names []reportProp `xml:",any"`
	} `xml:"DAV: prop"`
	AllProp    *struct{}     `xml:"DAV: allprop"`
	PropName   *struct{}     `xml:"DAV: propname"`
	CalFilter  *calFilterEl  `xml:"urn:ietf:params:xml:ns:caldav filter"`
	CardFilter *cardFilterEl `xml:"urn:ietf:params:xml:ns:carddav filter"`
	Limit      *struct {
		NResults string `xml:"urn:ietf:params:xml:ns:carddav nresults"`
	} `xml:"urn:ietf:params:xml:ns:carddav limit"`
	Hrefs []string `xml:"DAV: href"`
}

// CalDAV filter elements (RFC 4791 9.7).
type calFilterEl struct {
	Comp *calCompFilterEl `xml:"urn:ietf:params:xml:ns:caldav comp-filter"`
}

type calCompFilterEl struct {
	Name         string            `xml:"name,attr"`
	IsNotDefined *struct{}         `xml:"urn:ietf:params:xml:ns:caldav is-not-defined"`
	TimeRange    *timeRangeEl      `xml:"urn:ietf:params:xml:ns:caldav time-range"`
	Props        []calPropFilterEl `xml:"urn:ietf:params:xml:ns:caldav prop-filter"`
	Comps        []calCompFilterEl `xml:"urn:ietf:params:xml:ns:caldav comp-filter"`
}

type calPropFilterEl struct {
	Name         string             `xml:"name,attr"`
	IsNotDefined *struct{}          `xml:"urn:ietf:params:xml:ns:caldav is-not-defined"`
	TimeRange    *timeRangeEl       `xml:"urn:ietf:params:xml:ns:caldav time-range"`
	TextMatch    *textMatchEl       `xml:"urn:ietf:params:xml:ns:caldav text-match"`
	Params       []calParamFilterEl `xml:"urn:ietf:params:xml:ns:caldav param-filter"`
}

type calParamFilterEl struct {
	Name         string       `xml:"name,attr"`
	IsNotDefined *struct{}    `xml:"urn:ietf:params:xml:ns:caldav is-not-defined"`
	TextMatch    *textMatchEl `xml:"urn:ietf:params:xml:ns:caldav text-match"`
}

type timeRangeEl struct {
	Start string `xml:"start,attr"`
	End   string `xml:"end,attr"`
}

// textMatchEl serves both namespaces: its fields are attributes and text.
type textMatchEl struct {
	Text            string `xml:",chardata"`
	NegateCondition string `xml:"negate-condition,attr"`
	MatchType       string `xml:"match-type,attr"`
	Collation       string `xml:"collation,attr"`
}

// CardDAV filter elements (RFC 6352 10.5).
type cardFilterEl struct {
	Test  string             `xml:"test,attr"`
	Props []cardPropFilterEl `xml:"urn:ietf:params:xml:ns:carddav prop-filter"`
}

type cardPropFilterEl struct {
	Name         string              `xml:"name,attr"`
	Test         string              `xml:"test,attr"`
	IsNotDefined *struct{}           `xml:"urn:ietf:params:xml:ns:carddav is-not-defined"`
	TextMatches  []textMatchEl       `xml:"urn:ietf:params:xml:ns:carddav text-match"`
	Params       []cardParamFilterEl `xml:"urn:ietf:params:xml:ns:carddav param-filter"`
}

type cardParamFilterEl struct {
	Name         string       `xml:"name,attr"`
	IsNotDefined *struct{}    `xml:"urn:ietf:params:xml:ns:carddav is-not-defined"`
	TextMatch    *textMatchEl `xml:"urn:ietf:params:xml:ns:carddav text-match"`
}

// badRequest is a malformed REPORT: answered 400 with its text.
type badRequest string

func (e badRequest) Error() string { return string(e) }

func negate(s string) (bool, error) {
	switch s {
	case "", "no":
		return false, nil
	case "yes":
		return true, nil
	}
	return false, badRequest(fmt.Sprintf("negate-condition must be yes or no, not %q", s))
}

func parseTimeRange(tr *timeRangeEl) (start, end time.Time, err error) {
	if tr == nil {
		return
	}
	if tr.Start != "" {
		if start, err = time.Parse("20060102T150405Z", tr.Start); err != nil {
			return start, end, badRequest(fmt.Sprintf("time-range start %q is not a UTC date-time", tr.Start))
		}
	}
	if tr.End != "" {
		if end, err = time.Parse("20060102T150405Z", tr.End); err != nil {
			return start, end, badRequest(fmt.Sprintf("time-range end %q is not a UTC date-time", tr.End))
		}
	}
	return start, end, nil
}

// calFold records the properties and parameters a calendar filter
// text-matches with a case-folding collation: go-webdav's caldav.Match
// compares case-sensitively, where RFC 4791 9.7.5's default collation,
// i;ascii-casemap, folds case. The filter's texts are folded when parsed
// and these values of each object before matching.
type calFold struct {
	props, params map[string]bool
}

func (f *calFold) empty() bool { return len(f.props) == 0 && len(f.params) == 0 }

// apply folds the recorded values in comp and its children (a parsed
// copy used for matching only: the answer carries the stored bytes).
func (f *calFold) apply(comp *ical.Component) {
	for name, props := range comp.Props {
		for i := range props {
			if f.props[name] {
				props[i].Value = strings.ToLower(props[i].Value)
			}
			for pn, vals := range props[i].Params {
				if f.params[pn] {
					for j := range vals {
						vals[j] = strings.ToLower(vals[j])
					}
				}
			}
		}
	}
	for _, c := range comp.Children {
		f.apply(c)
	}
}

func calTextMatch(tm *textMatchEl, fold map[string]bool, name string) (*caldav.TextMatch, error) {
	if tm == nil {
		return nil, nil
	}
	n, err := negate(tm.NegateCondition)
	text := tm.Text
	if tm.Collation != "i;octet" {
		text = strings.ToLower(text)
		fold[strings.ToUpper(name)] = true
	}
	return &caldav.TextMatch{Text: text, NegateCondition: n}, err
}

func calCompFilter(el *calCompFilterEl, fold *calFold) (cf caldav.CompFilter, err error) {
	cf.Name = el.Name
	cf.IsNotDefined = el.IsNotDefined != nil
	if cf.Start, cf.End, err = parseTimeRange(el.TimeRange); err != nil {
		return cf, err
	}
	for i := range el.Props {
		p := &el.Props[i]
		pf := caldav.PropFilter{Name: p.Name, IsNotDefined: p.IsNotDefined != nil}
		if pf.Start, pf.End, err = parseTimeRange(p.TimeRange); err != nil {
			return cf, err
		}
		if pf.TextMatch, err = calTextMatch(p.TextMatch, fold.props, p.Name); err != nil {
			return cf, err
		}
		for _, q := range p.Params {
			pp := caldav.ParamFilter{Name: q.Name, IsNotDefined: q.IsNotDefined != nil}
			if pp.TextMatch, err = calTextMatch(q.TextMatch, fold.params, q.Name); err != nil {
				return cf, err
			}
			pf.ParamFilter = append(pf.ParamFilter, pp)
		}
		cf.Props = append(cf.Props, pf)
	}
	for i := range el.Comps {
		c, err := calCompFilter(&el.Comps[i], fold)
		if err != nil {
			return cf, err
		}
		cf.Comps = append(cf.Comps, c)
	}
	return cf, nil
}

func filterTest(s string) (carddav.FilterTest, error) {
	switch t := carddav.FilterTest(s); t {
	case "", carddav.FilterAnyOf, carddav.FilterAllOf:
		return t, nil
	}
	return "", badRequest(fmt.Sprintf("filter test must be anyof or allof, not %q", s))
}

func cardTextMatch(tm *textMatchEl) (carddav.TextMatch, error) {
	n, err := negate(tm.NegateCondition)
	if err != nil {
		return carddav.TextMatch{}, err
	}
	switch t := carddav.MatchType(tm.MatchType); t {
	case "", carddav.MatchEquals, carddav.MatchContains, carddav.MatchStartsWith, carddav.MatchEndsWith:
	default:
		return carddav.TextMatch{}, badRequest(fmt.Sprintf("unknown match-type %q", tm.MatchType))
	}
	return carddav.TextMatch{Text: tm.Text, NegateCondition: n, MatchType: carddav.MatchType(tm.MatchType)}, nil
}

func cardQuery(el *cardFilterEl) (*carddav.AddressBookQuery, error) {
	q := &carddav.AddressBookQuery{}
	if el == nil {
		return q, nil
	}
	var err error
	if q.FilterTest, err = filterTest(el.Test); err != nil {
		return nil, err
	}
	for _, p := range el.Props {
		pf := carddav.PropFilter{Name: p.Name, IsNotDefined: p.IsNotDefined != nil}
		if pf.Test, err = filterTest(p.Test); err != nil {
			return nil, err
		}
		for i := range p.TextMatches {
			tm, err := cardTextMatch(&p.TextMatches[i])
			if err != nil {
				return nil, err
			}
			pf.TextMatches = append(pf.TextMatches, tm)
		}
		for _, pp := range p.Params {
			f := carddav.ParamFilter{Name: pp.Name, IsNotDefined: pp.IsNotDefined != nil}
			if pp.TextMatch != nil {
				tm, err := cardTextMatch(pp.TextMatch)
				if err != nil {
					return nil, err
				}
				f.TextMatch = &tm
			}
			pf.Params = append(pf.Params, f)
		}
		q.PropFilters = append(q.PropFilters, pf)
	}
	return q, nil
}

// octetCollation reports whether a text-match of the filter asks for the
// case-sensitive i;octet collation; the default, i;unicode-casemap
// (RFC 6352 10.5.4), and i;ascii-casemap fold case.
func octetCollation(el *cardFilterEl) bool {
	if el == nil {
		return false
	}
	for _, p := range el.Props {
		for _, tm := range p.TextMatches {
			if tm.Collation == "i;octet" {
				return true
			}
		}
		for _, pp := range p.Params {
			if pp.TextMatch != nil && pp.TextMatch.Collation == "i;octet" {
				return true
			}
		}
	}
	return false
}

// reportKind tells which of the four REPORTs a body is, for a collection
// of kind; "" for any other (left to go-webdav).
func reportKind(body []byte, kind Kind) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case kind == Calendars && se.Name.Space == nsCalDAV && (se.Name.Local == "calendar-query" || se.Name.Local == "calendar-multiget"):
			return se.Name.Local
		case kind == AddressBooks && se.Name.Space == nsCardDAV && (se.Name.Local == "addressbook-query" || se.Name.Local == "addressbook-multiget"):
			return se.Name.Local
		}
		return ""
	}
}

// propSet is what a REPORT asks for each object.
type propSet struct {
	names    []xml.Name
	propName bool
	// cardProps selects vCard properties in address-data (nil: all).
	cardProps []string
}

// allObjectProps are the properties of an object that DAV:allprop and
// DAV:propname list.
var allObjectProps = []xml.Name{
	{Space: nsDAV, Local: "getetag"},
	{Space: nsDAV, Local: "getlastmodified"},
	{Space: nsDAV, Local: "getcontentlength"},
	{Space: nsDAV, Local: "getcontenttype"},
	{Space: nsDAV, Local: "resourcetype"},
}

func requestedProps(req *queryRequest, kind Kind) propSet {
	return requestedPropsData(req, kind, true)
}

// requestedPropsData is requestedProps; withData says whether allprop
// and propname include calendar-data or address-data (a REPORT's do, a
// PROPFIND's do not: RFC 4791 9.6 and RFC 6352 10.4 define them for
// REPORTs).
func requestedPropsData(req *queryRequest, kind Kind, withData bool) propSet {
	var ps propSet
	switch {
	case req.Prop != nil:
		for _, p := range req.Prop.Names {
			ps.names = append(ps.names, p.XMLName)
			if kind == AddressBooks && p.XMLName.Space == nsCardDAV && p.XMLName.Local == "address-data" && p.CardAll == nil {
				for _, c := range p.CardProps {
					ps.cardProps = append(ps.cardProps, c.Name)
				}
			}
		}
	default:
		ps.names = append(ps.names, allObjectProps...)
		switch {
		case !withData:
		case kind == Calendars:
			ps.names = append(ps.names, xml.Name{Space: nsCalDAV, Local: "calendar-data"})
		default:
			ps.names = append(ps.names, xml.Name{Space: nsCardDAV, Local: "address-data"})
		}
		ps.propName = req.PropName != nil
	}
	return ps
}

// writeObjectProps writes the properties names of o: those it has into
// found, the others (empty elements) into missing. data is the
// calendar-data or address-data to send.
func writeObjectProps(found, missing *bytes.Buffer, kind Kind, o *Object, data []byte, names []xml.Name) {
	for _, n := range names {
		switch {
		case n.Space == nsDAV && n.Local == "getetag":
			found.WriteString(`<D:getetag>"` + o.ETag + `"</D:getetag>`)
		case n.Space == nsDAV && n.Local == "getlastmodified":
			found.WriteString(`<D:getlastmodified>` + o.ModTime.UTC().Format(http.TimeFormat) + `</D:getlastmodified>`)
		case n.Space == nsDAV && n.Local == "getcontentlength":
			found.WriteString(`<D:getcontentlength>` + strconv.Itoa(len(o.Data)) + `</D:getcontentlength>`)
		case n.Space == nsDAV && n.Local == "getcontenttype" && kind == Calendars:
			found.WriteString(`<D:getcontenttype>text/calendar; charset=utf-8; component=vevent</D:getcontenttype>`)
		case n.Space == nsDAV && n.Local == "getcontenttype":
			found.WriteString(`<D:getcontenttype>text/vcard; charset=utf-8</D:getcontenttype>`)
		case n.Space == nsDAV && n.Local == "resourcetype":
			found.WriteString(`<D:resourcetype/>`)
		case n.Space == nsCalDAV && n.Local == "calendar-data" && kind == Calendars:
			found.WriteString(`<C:calendar-data>`)
			xml.EscapeText(found, data)
			found.WriteString(`</C:calendar-data>`)
		case n.Space == nsCardDAV && n.Local == "address-data" && kind == AddressBooks:
			found.WriteString(`<R:address-data>`)
			xml.EscapeText(found, data)
			found.WriteString(`</R:address-data>`)
		default:
			writeEmpty(missing, n)
		}
	}
}

func writeEmpty(b *bytes.Buffer, n xml.Name) {
	e := xml.NewEncoder(b)
	e.EncodeElement("", xml.StartElement{Name: n})
	e.Flush()
}

// msStream writes a multistatus answer one response at a time.
type msStream struct {
	w *bufio.Writer
	// open starts a response: "<D:response>" inside the multistatus
	// newMSStream writes, with the namespaces declared inside another.
	open           string
	found, missing bytes.Buffer
}

func newMSStream(w http.ResponseWriter) *msStream {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(http.StatusMultiStatus)
	s := &msStream{w: bufio.NewWriterSize(w, 32<<10), open: `<D:response>`}
	s.w.WriteString(xml.Header + `<D:multistatus xmlns:D="DAV:" xmlns:C="` + nsCalDAV + `" xmlns:R="` + nsCardDAV + `">`)
	return s
}

func (s *msStream) status(href string, code int, errXML string) error {
	s.w.WriteString(s.open + `<D:href>` + escape(href) + `</D:href><D:status>` + status(code) + `</D:status>`)
	if errXML != "" {
		s.w.WriteString(`<D:error>` + errXML + `</D:error>`)
	}
	_, err := s.w.WriteString(`</D:response>`)
	return err
}

// object writes o's response with the properties of ps.
func (s *msStream) object(href string, kind Kind, o *Object, data []byte, ps *propSet) error {
	s.found.Reset()
	s.missing.Reset()
	if ps.propName {
		for _, n := range ps.names {
			writeEmpty(&s.found, n)
		}
	} else {
		writeObjectProps(&s.found, &s.missing, kind, o, data, ps.names)
	}
	s.w.WriteString(s.open + `<D:href>` + escape(href) + `</D:href><D:propstat><D:prop>`)
	s.w.Write(s.found.Bytes())
	s.w.WriteString(`</D:prop><D:status>` + status(http.StatusOK) + `</D:status></D:propstat>`)
	if s.missing.Len() > 0 {
		s.w.WriteString(`<D:propstat><D:prop>`)
		s.w.Write(s.missing.Bytes())
		s.w.WriteString(`</D:prop><D:status>` + status(http.StatusNotFound) + `</D:status></D:propstat>`)
	}
	_, err := s.w.WriteString(`</D:response>`)
	return err
}

func (s *msStream) close() error {
	s.w.WriteString(`</D:multistatus>` + "\n")
	return s.w.Flush()
}

// abort ends a streamed answer that cannot be finished: the connection
// is cut, so the client sees a truncated answer, not a complete-looking
// one with objects missing.
func abort() { panic(http.ErrAbortHandler) }

// report answers the four REPORTs on a collection (depth 3).
func (h *Handler) report(w http.ResponseWriter, r *http.Request, user string, dp davPath, which string, body []byte) {
	var req queryRequest
	if err := xml.Unmarshal(body, &req); err != nil {
		http.Error(w, "malformed "+which+" request", http.StatusBadRequest)
		return
	}
	var err error
	if strings.HasSuffix(which, "multiget") {
		err = h.multiget(w, r, user, dp, &req)
	} else {
		err = h.query(w, r, user, dp, &req)
	}
	var bad badRequest
	switch {
	case err == nil:
	case errors.As(err, &bad):
		http.Error(w, which+": "+bad.Error(), http.StatusBadRequest)
	case httpStatus(err) != http.StatusInternalServerError:
		http.Error(w, http.StatusText(httpStatus(err)), httpStatus(err))
	default:
		h.opts.Logger.Error("dav "+which, "user", user, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// A matcher returns what calendar-data or address-data carries for o,
// and whether o matches the filter.
type matcher func(o *Object) (data []byte, ok bool, err error)

func (h *Handler) matcher(kind Kind, req *queryRequest, ps *propSet) (matcher, error) {
	var or objectReader
	if kind == Calendars {
		if req.CalFilter == nil || req.CalFilter.Comp == nil {
			// RFC 4791 requires a filter; without one, nothing is
			// filtered out.
			return func(o *Object) ([]byte, bool, error) { return o.Data, true, nil }, nil
		}
		fold := &calFold{props: map[string]bool{}, params: map[string]bool{}}
		cf, err := calCompFilter(req.CalFilter.Comp, fold)
		if err != nil {
			return nil, err
		}
		return func(o *Object) ([]byte, bool, error) {
			cal, err := ical.NewDecoder(or.reader(o.Data)).Decode()
			if err != nil {
				return nil, false, fmt.Errorf("decode stored calendar object %s: %w", o.Name, err)
			}
			if !fold.empty() {
				fold.apply(cal.Component)
			}
			ok, err := caldav.Match(cf, &caldav.CalendarObject{Data: cal})
			if err != nil {
				return nil, false, fmt.Errorf("match calendar object %s: %w", o.Name, err)
			}
			return o.Data, ok, nil
		}, nil
	}
	q, err := cardQuery(req.CardFilter)
	if err != nil {
		return nil, err
	}
	fold := !octetCollation(req.CardFilter)
	return func(o *Object) ([]byte, bool, error) {
		if len(q.PropFilters) == 0 && ps.cardProps == nil {
			// A filter without prop-filter, which RFC 6352 10.5
			// allows (prop-filter*) without giving it a meaning
			// of its own: every object, whatever its test, as
			// Radicale answers it; an empty anyof read as "none"
			// would make the query useless.
			return o.Data, true, nil
		}
		card, err := vcard.NewDecoder(or.reader(o.Data)).Decode()
		if err != nil {
			return nil, false, fmt.Errorf("decode stored vCard %s: %w", o.Name, err)
		}
		if len(q.PropFilters) > 0 {
			ok, err := matchCard(q, fold, card)
			if err != nil {
				return nil, false, fmt.Errorf("match vCard %s: %w", o.Name, err)
			}
			if !ok {
				return nil, false, nil
			}
		}
		if ps.cardProps == nil {
			return o.Data, true, nil
		}
		sel := vcard.Card{vcard.FieldVersion: card[vcard.FieldVersion]}
		for _, p := range ps.cardProps {
			if f, ok := card[strings.ToUpper(p)]; ok {
				sel[strings.ToUpper(p)] = f
			}
		}
		var b bytes.Buffer
		if err := vcard.NewEncoder(&b).Encode(sel); err != nil {
			return nil, false, fmt.Errorf("encode selected properties of vCard %s: %w", o.Name, err)
		}
		return b.Bytes(), true, nil
	}, nil
}

// objectReader reads the stored objects of one answer, one after the
// other, through one buffer: go-ical's and go-vcard's NewDecoder wrap
// their reader in a new 4 KiB bufio.Reader unless it is one already, which
// was 40 MiB of garbage for a calendar-query of 5 000 events.
type objectReader struct {
	r  bytes.Reader
	br *bufio.Reader
}

// reader returns the buffered reader, reset to read data.
func (d *objectReader) reader(data []byte) *bufio.Reader {
	d.r.Reset(data)
	if d.br == nil {
		d.br = bufio.NewReaderSize(&d.r, 4096)
	} else {
		d.br.Reset(&d.r)
	}
	return d.br
}

// query answers calendar-query and addressbook-query: objects read in
// batches of reportBatch, each filtered and written before the next
// batch is read.
func (h *Handler) query(w http.ResponseWriter, r *http.Request, user string, dp davPath, req *queryRequest) error {
	ctx := r.Context()
	ps := requestedProps(req, dp.kind)
	match, err := h.matcher(dp.kind, req, &ps)
	if err != nil {
		return err
	}
	limit := -1
	if req.Limit != nil {
		n, err := strconv.Atoi(strings.TrimSpace(req.Limit.NResults))
		if err != nil || n < 0 {
			return badRequest("limit nresults must be a number of results")
		}
		limit = n
	}
	// The first batch is read before the answer starts, so that a
	// missing collection is a 404 and not an empty multistatus.
	batch, err := h.st.ObjectsAfter(ctx, user, dp.kind, dp.col, "", reportBatch)
	if err != nil {
		return err
	}
	colPath := hrefPath(HomePath(user, dp.kind) + dp.col + "/")
	ms := newMSStream(w)
	n := 0
	for len(batch) > 0 {
		for i := range batch {
			o := &batch[i]
			data, ok, err := match(o)
			if err != nil {
				// One object the server cannot read: say so for it,
				// rather than fail the whole answer or hide it.
				h.opts.Logger.Error("dav query", "user", user, "err", err)
				if err := ms.status(colPath+hrefPath(o.Name), http.StatusInternalServerError, ""); err != nil {
					abort()
				}
				continue
			}
			if !ok {
				continue
			}
			if limit >= 0 && n == limit {
				// RFC 6352 8.6.1: more matches than the client wants.
				ms.status(colPath, http.StatusInsufficientStorage, `<D:number-of-matches-within-limits/>`)
				if err := ms.close(); err != nil {
					abort()
				}
				return nil
			}
			n++
			if err := ms.object(colPath+hrefPath(o.Name), dp.kind, o, data, &ps); err != nil {
				abort()
			}
		}
		last := batch[len(batch)-1].Name
		clear(batch)
		if batch, err = h.st.ObjectsAfter(ctx, user, dp.kind, dp.col, last, reportBatch); err != nil {
			h.opts.Logger.Error("dav query: read store", "user", user, "err", err)
			abort()
		}
	}
	if err := ms.close(); err != nil {
		abort()
	}
	return nil
}

// multiget answers calendar-multiget and addressbook-multiget: each href
// read, written and forgotten in turn.
func (h *Handler) multiget(w http.ResponseWriter, r *http.Request, user string, dp davPath, req *queryRequest) error {
	ctx := r.Context()
	ps := requestedProps(req, dp.kind)
	// The same matcher, without a filter: it selects address-data
	// properties.
	match, err := h.matcher(dp.kind, &queryRequest{}, &ps)
	if err != nil {
		return err
	}
	ms := newMSStream(w)
	for _, raw := range req.Hrefs {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil {
			ms.status(raw, http.StatusNotFound, "")
			continue
		}
		p, n, ok := parsePath(u.Path)
		if !ok || n != 4 || p.user != user || p.kind != dp.kind {
			ms.status(hrefPath(u.Path), http.StatusNotFound, "")
			continue
		}
		o, err := h.st.Object(ctx, user, p.kind, p.col, p.obj)
		if err != nil {
			code := httpStatus(err)
			if code == http.StatusInternalServerError {
				h.opts.Logger.Error("dav multiget", "user", user, "err", err)
			}
			ms.status(hrefPath(u.Path), code, "")
			continue
		}
		data, _, err := match(&o)
		if err != nil {
			h.opts.Logger.Error("dav multiget", "user", user, "err", err)
			ms.status(hrefPath(u.Path), http.StatusInternalServerError, "")
			continue
		}
		if err := ms.object(hrefPath(u.Path), dp.kind, &o, data, &ps); err != nil {
			abort()
		}
	}
	if err := ms.close(); err != nil {
		abort()
	}
	return nil
}
