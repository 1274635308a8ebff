package migrate

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"
)

// The calendar and contacts copy (CalDAV, RFC 4791; CardDAV, RFC 6352)
// runs after a user's mail, with go-webdav's clients on both sides:
// discovery of the principal (RFC 5397) and its calendar and address book
// home sets, a PROPFIND of every source collection for the ETags of its
// objects, calendar-multiget / addressbook-multiget for what is new or
// changed, and a PUT to the target collection of the same name, created
// with an extended MKCOL (RFC 5689) when missing (go-webdav's client has
// no call for it). Each object lands at a path derived from its UID, so
// that a repeated PUT (an interrupted run resumed) replaces instead of
// duplicating. The state records, per source object, the ETag copied and
// the target path: a re-run copies nothing, an object whose ETag changed
// at the source is copied again (updated at the target), and one missing
// from the target (deleted there, a target set up again) is copied again.
// Deletions at the source are not carried over, as with mail. Besides the
// MKCOL, two requests are written here rather than taken from go-webdav:
// the PUT (go-webdav's takes a parsed object to encode again, while the
// copy already holds the bytes, and drops the body of a refusal, which
// says why) and, when the library's listing fails because the server
// leaves out getcontentlength, a PROPFIND of getetag alone.

// Google's CalDAV and CardDAV endpoints, the defaults of a Google source.
const (
	GoogleCalDAV  = "https://apidata.googleusercontent.com/caldav/v2/"
	GoogleCardDAV = "https://www.googleapis.com/carddav/v1/principals/"
)

// DAVEndpoint is a CalDAV and CardDAV server, by the URLs where discovery
// of the logged-in user's principal starts (one may be empty when that
// kind is not copied).
type DAVEndpoint struct {
	CalDAV, CardDAV string
	// CAFile and MoreCAFiles add PEM roots to the system ones.
	CAFile      string
	MoreCAFiles []string
}

// DAVJob is the calendar and contacts part of a Job. SourceAuth logs in
// with HTTP Basic (Username, Password) or, with a TokenCommand, an OAuth2
// bearer token (Google); TargetAuth with HTTP Basic.
type DAVJob struct {
	Calendars, Contacts bool
	Source              DAVEndpoint
	SourceAuth          Credentials
	Target              DAVEndpoint
	TargetAuth          Credentials
	// Timeout bounds each HTTP request (default 2 minutes).
	Timeout time.Duration
}

// davBatch is the number of objects fetched per multiget REPORT.
const davBatch = 100

// davKind is calendars or contacts.
type davKind struct {
	name  string // "calendars", "contacts"
	ext   string // ".ics", ".vcf"
	label string // "calendar", "address book" (progress and summary)
}

var (
	kindCalendars = davKind{"calendars", ".ics", "calendar"}
	kindContacts  = davKind{"contacts", ".vcf", "address book"}
)

// davCollection is a source collection with its target.
type davCollection struct {
	kind         davKind
	source, name string
	target       string
}

// davObject is one object fetched from the source, encoded for the PUT.
type davObject struct {
	href, etag, uid string
	data            []byte
}

// davSide is a logged-in client of one side.
type davSide struct {
	cal  *caldav.Client
	card *carddav.Client
	http *http.Client
	auth func(*http.Request)
	base map[string]*url.URL // kind -> endpoint URL
}

// davCopy copies the calendars and contacts of r.job.DAV, collecting
// errors in the summary; it returns early only when ctx ends.
func (r *runner) davCopy(ctx context.Context) {
	j := r.job.DAV
	if j == nil || (!j.Calendars && !j.Contacts) {
		return
	}
	if j.Timeout <= 0 {
		j.Timeout = 2 * time.Minute
	}
	marks, err := r.st.loadDAV(r.job.User)
	if err != nil {
		r.davError(err)
		return
	}
	src, err := newDAVSide(ctx, j.Source, j.SourceAuth, j.Timeout, "source")
	if err != nil {
		r.davError(err)
		return
	}
	tgt, err := newDAVSide(ctx, j.Target, j.TargetAuth, j.Timeout, "target")
	if err != nil {
		r.davError(err)
		return
	}
	for _, k := range []davKind{kindCalendars, kindContacts} {
		if (k == kindCalendars && !j.Calendars) || (k == kindContacts && !j.Contacts) {
			continue
		}
		colls, err := r.davCollections(ctx, k, src, tgt, marks)
		if err != nil {
			r.davError(err)
			continue
		}
		for _, c := range colls {
			if ctx.Err() != nil {
				r.davError(ctx.Err())
				return
			}
			if err := r.davCopyCollection(ctx, c, src, tgt, marks); err != nil {
				r.davError(fmt.Errorf("%s %q: %w", c.kind.label, c.source, err))
			}
		}
	}
}

// davError records an error of the calendar and contacts copy: the user's
// Err when it is the first error, a failure line anyway.
func (r *runner) davError(err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if r.sum.Err == nil {
			r.sum.Err = err
		}
		return
	}
	r.sum.DAVErrors = append(r.sum.DAVErrors, errorsText(err))
	r.log.Warn("calendars and contacts", "err", err)
}

func newDAVSide(ctx context.Context, ep DAVEndpoint, cred Credentials, timeout time.Duration, side string) (*davSide, error) {
	tc := &tls.Config{}
	if cas := slices.DeleteFunc(append([]string{ep.CAFile}, ep.MoreCAFiles...), func(f string) bool { return f == "" }); len(cas) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, f := range cas {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("%s: read CA file %q: %w", side, f, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: read CA file %q: no PEM certificate", side, f)
			}
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{
		TLSClientConfig:       tc,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	s := &davSide{http: &http.Client{Transport: tr, Timeout: timeout}, base: map[string]*url.URL{}}
	switch {
	case cred.TokenCommand != "":
		token, err := runTokenCommand(ctx, cred.TokenCommand, cred.TokenDir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", side, err)
		}
		s.auth = func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+token) }
	default:
		user, pw := cred.Username, cred.Password
		s.auth = func(req *http.Request) { req.SetBasicAuth(user, pw) }
	}
	hc := davHTTP{s}
	if ep.CalDAV != "" {
		u, err := parseDAVURL(ep.CalDAV, side)
		if err != nil {
			return nil, err
		}
		u = s.wellKnown(ctx, u, "caldav")
		s.base["calendars"] = u
		if s.cal, err = caldav.NewClient(hc, u.String()); err != nil {
			return nil, fmt.Errorf("%s CalDAV URL %q: %w", side, ep.CalDAV, err)
		}
	}
	if ep.CardDAV != "" {
		u, err := parseDAVURL(ep.CardDAV, side)
		if err != nil {
			return nil, err
		}
		u = s.wellKnown(ctx, u, "carddav")
		s.base["contacts"] = u
		if s.card, err = carddav.NewClient(hc, u.String()); err != nil {
			return nil, fmt.Errorf("%s CardDAV URL %q: %w", side, ep.CardDAV, err)
		}
	}
	return s, nil
}

// wellKnown resolves a URL without a path (https://host/) to the context
// path that its server names at /.well-known/caldav or /.well-known/carddav
// (RFC 6764 section 5) when it redirects there, on the same host name and
// not from https to http (the credentials follow). Otherwise, or when
// the server does not answer, the URL stays as it is.
func (s *davSide) wellKnown(ctx context.Context, u *url.URL, kind string) *url.URL {
	if u.Path != "" && u.Path != "/" {
		return u
	}
	wk := u.ResolveReference(&url.URL{Path: "/.well-known/" + kind})
	req, err := http.NewRequestWithContext(ctx, "PROPFIND", wk.String(), nil)
	if err != nil {
		return u
	}
	req.Header.Set("Depth", "0")
	s.auth(req)
	c := *s.http
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return u
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || loc == "" {
		return u
	}
	l, err := wk.Parse(loc)
	if err != nil || l.Hostname() != u.Hostname() || (l.Scheme != u.Scheme && l.Scheme != "https") {
		return u
	}
	return l
}

func parseDAVURL(s, side string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%s URL %q: want https://host/path", side, s)
	}
	if u.Scheme == "http" {
		host := u.Hostname()
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("%s URL %q: http:// sends passwords in clear text: only for a loopback address", side, s)
		}
	}
	return u, nil
}

// davHTTP adds the side's credentials to each request and retries, up to
// three times, what a busy server refuses for now (429, 502, 503, 504)
// and what failed before an answer; every request the copy sends is
// idempotent (PROPFIND, REPORT, GET, and PUT to a path fixed by the UID).
type davHTTP struct{ s *davSide }

func (h davHTTP) Do(req *http.Request) (*http.Response, error) {
	h.s.auth(req)
	wait := time.Second
	for attempt := 1; ; attempt++ {
		resp, err := h.s.http.Do(req)
		retry := false
		switch {
		case err != nil:
			retry = req.Context().Err() == nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable ||
			resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
			retry = true
		}
		if !retry || attempt == 3 || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
		}
		select {
		case <-time.After(wait):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		wait *= 2
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req.Body = body
		}
	}
}

// home finds the collection home set of the logged-in user for kind.
func (s *davSide) home(ctx context.Context, k davKind) (string, error) {
	var wc *webdav.Client
	if k == kindCalendars {
		wc = s.cal.Client
	} else {
		wc = s.card.Client
	}
	principal, err := wc.FindCurrentUserPrincipal(ctx)
	if err != nil {
		return "", fmt.Errorf("find the principal at %s: %w", s.base[k.name], err)
	}
	var home string
	if k == kindCalendars {
		home, err = s.cal.FindCalendarHomeSet(ctx, principal)
	} else {
		home, err = s.card.FindAddressBookHomeSet(ctx, principal)
	}
	if err != nil {
		return "", fmt.Errorf("find the %s home of %s: %w", k.label, principal, err)
	}
	if !strings.HasSuffix(home, "/") {
		home += "/"
	}
	return home, nil
}

// collections lists the collections of kind in home: path -> name.
func (s *davSide) collections(ctx context.Context, k davKind, home string) (map[string]string, error) {
	out := map[string]string{}
	if k == kindCalendars {
		cals, err := s.cal.FindCalendars(ctx, home)
		if err != nil {
			return nil, fmt.Errorf("list the calendars of %s: %w", home, err)
		}
		for _, c := range cals {
			out[dirPath(c.Path)] = c.Name
		}
		return out, nil
	}
	abs, err := s.card.FindAddressBooks(ctx, home)
	if err != nil {
		return nil, fmt.Errorf("list the address books of %s: %w", home, err)
	}
	for _, a := range abs {
		out[dirPath(a.Path)] = a.Name
	}
	return out, nil
}

func dirPath(p string) string {
	if !strings.HasSuffix(p, "/") {
		return p + "/"
	}
	return p
}

// davCollections discovers the source collections of kind and pairs each
// with its target collection: the one recorded in the state, else the one
// of the same last path segment in the target home, created when missing
// (not in a dry run).
func (r *runner) davCollections(ctx context.Context, k davKind, src, tgt *davSide, marks map[string]string) ([]davCollection, error) {
	srcHome, err := src.home(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", k.name, err)
	}
	tgtHome, err := tgt.home(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", k.name, err)
	}
	srcColls, err := src.collections(ctx, k, srcHome)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	tgtColls, err := tgt.collections(ctx, k, tgtHome)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	var out []davCollection
	taken := map[string]bool{}
	for _, p := range slices.Sorted(maps.Keys(srcColls)) {
		name := srcColls[p]
		seg := collectionSegment(p)
		target, ok := marks[collKey(k, p)]
		if !ok {
			target = tgtHome + seg + "/"
			if taken[target] { // two source paths ending alike
				sum := sha256.Sum256([]byte(p))
				target = tgtHome + seg + "-" + hex.EncodeToString(sum[:4]) + "/"
			}
		}
		taken[target] = true
		if name == "" {
			name = seg
		}
		c := davCollection{kind: k, source: p, name: name, target: target}
		if _, ok := tgtColls[target]; !ok && !r.opts.DryRun {
			if err := tgt.mkcol(ctx, k, target, name); err != nil {
				r.davError(fmt.Errorf("create the target %s %q: %w", k.label, target, err))
				continue
			}
			r.log.Info("created target collection", "kind", k.name, "path", target)
		}
		out = append(out, c)
	}
	return out, nil
}

// mkcol creates a calendar or address book with an extended MKCOL (RFC
// 5689), which both go-webdav's server and Radicale take.
func (s *davSide) mkcol(ctx context.Context, k davKind, p, name string) error {
	rt, ns := `<C:calendar/>`, `urn:ietf:params:xml:ns:caldav`
	if k == kindContacts {
		rt, ns = `<C:addressbook/>`, `urn:ietf:params:xml:ns:carddav`
	}
	var esc strings.Builder
	xml.EscapeText(&esc, []byte(name))
	body := `<?xml version="1.0" encoding="utf-8"?>` + "\n" +
		`<D:mkcol xmlns:D="DAV:" xmlns:C="` + ns + `"><D:set><D:prop><D:resourcetype><D:collection/>` + rt +
		`</D:resourcetype><D:displayname>` + esc.String() + `</D:displayname></D:prop></D:set></D:mkcol>`
	u := s.base[k.name].ResolveReference(&url.URL{Path: p})
	req, err := http.NewRequestWithContext(ctx, "MKCOL", u.String(), strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", `application/xml; charset="utf-8"`)
	resp, err := davHTTP{s}.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("MKCOL: %s: %s", resp.Status, strings.Join(strings.Fields(string(msg)), " "))
	}
	return nil
}

// davCopyCollection copies the new and changed objects of c.
func (r *runner) davCopyCollection(ctx context.Context, c davCollection, src, tgt *davSide, marks map[string]string) error {
	fs := r.folderSummary(c.kind.name+":"+c.source, c.target)
	fs.Source, fs.Kind = c.source, c.kind.label
	srcObjs, err := src.list(ctx, c.kind, c.source)
	if err != nil {
		return fmt.Errorf("list the source objects: %w", err)
	}
	present := map[string]bool{}
	tgtObjs, err := tgt.list(ctx, c.kind, c.target)
	if err != nil && !r.opts.DryRun { // in a dry run, the target may not exist yet
		return fmt.Errorf("list the target objects: %w", err)
	}
	for href := range tgtObjs {
		present[href] = true
	}
	fs.Messages = len(srcObjs)
	r.prog.startFolder(c.kind.label+" "+c.name, len(srcObjs))
	var todo []string
	update := map[string]bool{}
	for _, href := range slices.Sorted(maps.Keys(srcObjs)) {
		etag, target, ok := strings.Cut(marks[objKey(c.kind, href)], "\x00")
		if ok && etag == srcObjs[href] && present[target] {
			fs.Skipped++
			r.sum.DAVSkipped++
			continue
		}
		update[href] = ok && etag != srcObjs[href] // else: missing from the target, copied again
		todo = append(todo, href)
	}
	r.prog.advance(len(srcObjs)-len(todo), 0)
	pending := map[string]string{}
	flush := func() error {
		if r.opts.DryRun || len(pending) == 0 {
			return nil
		}
		if err := r.st.commitDAV(r.job.User, pending); err != nil {
			return err
		}
		for k, v := range pending {
			marks[k] = v
		}
		pending = map[string]string{}
		return nil
	}
	if !r.opts.DryRun {
		pending[collKey(c.kind, c.source)] = c.target
	}
	for len(todo) > 0 {
		n := min(davBatch, len(todo))
		batch := todo[:n]
		todo = todo[n:]
		objs, errs := src.fetch(ctx, c.kind, c.source, batch)
		for href, err := range errs {
			r.davFail(fs, fmt.Sprintf("%s %s: %v", c.kind.label, href, err))
			r.prog.advance(1, 0)
		}
		for _, o := range objs {
			if ctx.Err() != nil {
				flush()
				return ctx.Err()
			}
			target := c.target + objectName(o.uid, o.href) + c.kind.ext
			if !r.opts.DryRun {
				if err := tgt.put(ctx, c.kind, target, o.data); err != nil {
					if ctx.Err() != nil {
						flush()
						return ctx.Err()
					}
					r.davFail(fs, fmt.Sprintf("%s %s (UID %s): %v", c.kind.label, o.href, o.uid, err))
					r.prog.advance(1, 0)
					continue
				}
				pending[objKey(c.kind, o.href)] = o.etag + "\x00" + target
			}
			if update[o.href] {
				fs.Updated++
				r.sum.DAVUpdated++
			} else {
				fs.Copied++
				r.sum.DAVCopied++
			}
			fs.Bytes += int64(len(o.data))
			r.sum.DAVBytes += int64(len(o.data))
			r.prog.advance(1, int64(len(o.data)))
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return flush()
}

func (r *runner) davFail(f *FolderSummary, reason string) {
	r.sum.DAVFailed++
	f.Failed++
	if len(r.sum.Failures) < 20 {
		r.sum.Failures = append(r.sum.Failures, reason)
	}
	r.log.Warn("object not copied", "collection", f.Source, "reason", reason)
}

// list returns the objects of a collection: href -> ETag. go-webdav's
// ReadDir fails on a server that leaves out getcontentlength; then a
// PROPFIND of getetag alone, read here, lists the collection.
func (s *davSide) list(ctx context.Context, k davKind, coll string) (map[string]string, error) {
	wc := s.card.Client
	if k == kindCalendars {
		wc = s.cal.Client
	}
	infos, err := wc.ReadDir(ctx, coll, false)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		out, err2 := s.listETags(ctx, k, coll)
		if err2 != nil {
			return nil, fmt.Errorf("%w (and PROPFIND getetag: %v)", err, err2)
		}
		return out, nil
	}
	out := map[string]string{}
	for _, fi := range infos {
		if fi.IsDir || dirPath(fi.Path) == dirPath(coll) {
			continue
		}
		out[fi.Path] = fi.ETag
	}
	return out, nil
}

// multistatus is the part of a PROPFIND answer (RFC 4918 section 14.16)
// that listETags reads.
type multistatus struct {
	Responses []struct {
		Href     string `xml:"DAV: href"`
		Propstat []struct {
			Status string `xml:"DAV: status"`
			Prop   struct {
				ETag         string `xml:"DAV: getetag"`
				ResourceType struct {
					Collection *struct{} `xml:"DAV: collection"`
				} `xml:"DAV: resourcetype"`
			} `xml:"DAV: prop"`
		} `xml:"DAV: propstat"`
	} `xml:"DAV: response"`
}

// listETags lists a collection with a PROPFIND of getetag and resourcetype.
func (s *davSide) listETags(ctx context.Context, k davKind, coll string) (map[string]string, error) {
	u := s.base[k.name].ResolveReference(&url.URL{Path: coll})
	body := `<?xml version="1.0" encoding="utf-8"?>` + "\n" +
		`<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:resourcetype/></D:prop></D:propfind>`
	req, err := http.NewRequestWithContext(ctx, "PROPFIND", u.String(), strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Depth", "1")
	req.Header.Set("Content-Type", `application/xml; charset="utf-8"`)
	resp, err := davHTTP{s}.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		return nil, fmt.Errorf("PROPFIND: %s", resp.Status)
	}
	var ms multistatus
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&ms); err != nil {
		return nil, fmt.Errorf("PROPFIND: %w", err)
	}
	out := map[string]string{}
	for _, r := range ms.Responses {
		h, err := url.Parse(strings.TrimSpace(r.Href))
		if err != nil || dirPath(h.Path) == dirPath(coll) {
			continue
		}
		for _, ps := range r.Propstat {
			if strings.Contains(ps.Status, " 200") && ps.Prop.ResourceType.Collection == nil {
				out[h.Path] = strings.Trim(ps.Prop.ETag, `"`)
			}
		}
	}
	return out, nil
}

// fetch reads the objects at hrefs with a multiget REPORT; when the
// REPORT as a whole fails (one object the library cannot parse fails it),
// each object is read with a GET, so that one bad object fails alone.
func (s *davSide) fetch(ctx context.Context, k davKind, coll string, hrefs []string) ([]davObject, map[string]error) {
	errs := map[string]error{}
	objs, err := s.multiget(ctx, k, coll, hrefs)
	if err == nil {
		got := map[string]bool{}
		for _, o := range objs {
			got[o.href] = true
		}
		for _, h := range hrefs {
			if !got[h] {
				errs[h] = errors.New("not in the multiget answer (deleted meanwhile?)")
			}
		}
		return objs, errs
	}
	if ctx.Err() != nil {
		for _, h := range hrefs {
			errs[h] = ctx.Err()
		}
		return nil, errs
	}
	objs = nil
	for _, h := range hrefs {
		o, err := s.get(ctx, k, h)
		if err != nil {
			errs[h] = err
			continue
		}
		objs = append(objs, o)
	}
	return objs, errs
}

func (s *davSide) multiget(ctx context.Context, k davKind, coll string, hrefs []string) ([]davObject, error) {
	var out []davObject
	if k == kindCalendars {
		cos, err := s.cal.MultiGetCalendar(ctx, coll, &caldav.CalendarMultiGet{Paths: hrefs,
			CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true}})
		if err != nil {
			return nil, err
		}
		for _, co := range cos {
			o, err := calendarObject(co.Path, co.ETag, co.Data)
			if err != nil {
				return nil, err
			}
			out = append(out, o)
		}
		return out, nil
	}
	aos, err := s.card.MultiGetAddressBook(ctx, coll, &carddav.AddressBookMultiGet{Paths: hrefs,
		DataRequest: carddav.AddressDataRequest{AllProp: true}})
	if err != nil {
		return nil, err
	}
	for _, ao := range aos {
		o, err := cardObject(ao.Path, ao.ETag, ao.Card)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func (s *davSide) get(ctx context.Context, k davKind, href string) (davObject, error) {
	if k == kindCalendars {
		co, err := s.cal.GetCalendarObject(ctx, href)
		if err != nil {
			return davObject{}, err
		}
		return calendarObject(href, co.ETag, co.Data)
	}
	ao, err := s.card.GetAddressObject(ctx, href)
	if err != nil {
		return davObject{}, err
	}
	return cardObject(href, ao.ETag, ao.Card)
}

func calendarObject(href, etag string, cal *ical.Calendar) (davObject, error) {
	o := davObject{href: href, etag: etag}
	for _, c := range cal.Children {
		if c.Name == ical.CompTimezone {
			continue
		}
		if uid, err := c.Props.Text(ical.PropUID); err == nil && uid != "" {
			o.uid = uid
			break
		}
	}
	var b strings.Builder
	if err := ical.NewEncoder(&b).Encode(cal); err != nil {
		return o, fmt.Errorf("encode: %w", err)
	}
	o.data = []byte(b.String())
	return o, nil
}

func cardObject(href, etag string, card vcard.Card) (davObject, error) {
	o := davObject{href: href, etag: etag, uid: card.Value(vcard.FieldUID)}
	var b strings.Builder
	if err := vcard.NewEncoder(&b).Encode(card); err != nil {
		return o, fmt.Errorf("encode: %w", err)
	}
	o.data = []byte(b.String())
	return o, nil
}

// put writes data at p of the target.
func (s *davSide) put(ctx context.Context, k davKind, p string, data []byte) error {
	u := s.base[k.name].ResolveReference(&url.URL{Path: p})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), strings.NewReader(string(data)))
	if err != nil {
		return err
	}
	ct := ical.MIMEType
	if k == kindContacts {
		ct = vcard.MIMEType
	}
	req.Header.Set("Content-Type", ct+"; charset=utf-8")
	resp, err := davHTTP{s}.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("PUT: %s: %s", resp.Status, strings.Join(strings.Fields(string(msg)), " "))
	}
	return nil
}

// collectionSegment is the target name of a source collection: the last
// segment of its path, or the one before when that is Google's "events"
// (/caldav/v2/<calendar id>/events/), made safe for a path.
func collectionSegment(p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	seg := segs[len(segs)-1]
	if seg == "events" && len(segs) > 1 {
		seg = segs[len(segs)-2]
	}
	if seg == "" {
		return "default"
	}
	return safeSegment(seg)
}

// objectName is the target file name of an object: its UID when that is
// a plain name, else a digest of it (of the source href without a UID).
func objectName(uid, href string) string {
	if uid != "" && len(uid) <= 120 && safeSegment(uid) == uid {
		return uid
	}
	key := uid
	if key == "" {
		key = "href:" + href
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// safeSegment keeps letters, digits and -._@ of a path segment, others
// become "_".
func safeSegment(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._@", c) >= 0) {
			b[i] = '_'
		}
	}
	if s := string(b); s != "." && s != ".." {
		return s
	}
	return "_"
}

func collKey(k davKind, p string) string   { return "c\x00" + k.name + "\x00" + p }
func objKey(k davKind, href string) string { return "o\x00" + k.name + "\x00" + href }
