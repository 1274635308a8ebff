// Package dav serves personal calendars (CalDAV, RFC 4791, without
// scheduling) and address books (CardDAV, RFC 6352) to the mail users,
// on the mail server's HTTPS listener, with the mail passwords.
//
// The protocol work is github.com/emersion/go-webdav's caldav and carddav
// handlers; this package adds what v0.6.0 of that library leaves to the
// server:
//
//   - the store (store.go): one bbolt file, dav.db in the data directory,
//     with a per-collection change log for sync tokens;
//   - Basic authentication, and each user seeing only their own tree;
//   - the sync-collection REPORT (RFC 6578), which go-webdav's server
//     does not implement: sync.go answers it from the change log, read
//     and written a batch at a time;
//   - calendar-query, addressbook-query and the two multigets on a
//     collection (report.go), answered as a stream instead of go-webdav's
//     whole-answer-in-memory handlers, with its own vCard matcher
//     (cardmatch.go); a Depth: 1 PROPFIND on a collection streams its
//     members the same way (propfind.go);
//   - the collection properties sync-token, getctag and
//     supported-report-set (collprops.go);
//   - MKCALENDAR (mkcalendar.go);
//   - PROPPATCH of a collection's name, description and colour
//     (proppatch.go), which go-webdav answers 501;
//   - If-Match on DELETE, which go-webdav does not pass to a backend;
//   - a size limit on PUT (413), and the principal with both home sets.
package dav

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/mailctl/mailctl/server/auth"
)

// Authenticator checks a user's password and returns the user's canonical
// name (server/auth's Authenticator.Authenticate).
type Authenticator func(ctx context.Context, username, password string, remote net.Addr) (string, error)

// DefaultMaxObjectBytes is the largest calendar object or vCard accepted.
const DefaultMaxObjectBytes = 1 << 20

// Options configure the handler.
type Options struct {
	// MaxObjectBytes limits the body of a PUT (DefaultMaxObjectBytes if 0).
	MaxObjectBytes int64
	Logger         *slog.Logger
}

// Handler serves /dav/ and the /.well-known/caldav and /.well-known/carddav
// redirects.
type Handler struct {
	st   Backend
	auth Authenticator
	opts Options
	cal  *caldav.Handler
	card *carddav.Handler
}

// New returns a handler serving st to users that auth accepts.
func New(st Backend, auth Authenticator, opts Options) *Handler {
	if opts.MaxObjectBytes <= 0 {
		opts.MaxObjectBytes = DefaultMaxObjectBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &backend{st: st, maxSize: opts.MaxObjectBytes}
	return &Handler{
		st: st, auth: auth, opts: opts,
		cal:  &caldav.Handler{Backend: b, Prefix: Prefix},
		card: &carddav.Handler{Backend: cardBackend{b}, Prefix: Prefix},
	}
}

// maxReportBytes bounds the XML body of a REPORT read to look at it.
const maxReportBytes = 1 << 20

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/caldav", "/.well-known/carddav":
		// RFC 6764 section 5: the context path; clients then ask it for
		// their current-user-principal.
		http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
		return
	}
	dp, depth, ok := parsePath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	name, password, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="mailctl", charset="UTF-8"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	remote, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	user, err := h.auth(r.Context(), name, password, remote)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		h.opts.Logger.Info("dav login failed", "user", name, "remote", r.RemoteAddr, "err", err)
		if le := (*auth.LockoutError)(nil); errors.As(err, &le) {
			// The address is locked out (server/auth): a 401 would make
			// the client ask the user for a password that cannot work now.
			w.Header().Set("Retry-After", strconv.Itoa(le.RetryMinutes()*60))
			http.Error(w, fmt.Sprintf("too many failed logins from your address, try again in %d minutes", le.RetryMinutes()), http.StatusTooManyRequests)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="mailctl", charset="UTF-8"`)
		http.Error(w, "invalid user name or password", http.StatusUnauthorized)
		return
	}
	if depth > 0 && dp.user != user {
		http.Error(w, "this is not your collection", http.StatusForbidden)
		return
	}
	if err := h.st.EnsureUser(r.Context(), user); err != nil {
		h.opts.Logger.Error("dav store", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	ctx := context.WithValue(r.Context(), userKey, user)
	r = r.WithContext(ctx)

	if depth <= 1 {
		// The context path and the principal: both home sets.
		webdav.ServePrincipal(w, r, &webdav.ServePrincipalOptions{
			CurrentUserPrincipalPath: PrincipalPath(user),
			HomeSets: []webdav.BackendSuppliedHomeSet{
				caldav.NewCalendarHomeSet(HomePath(user, Calendars)),
				carddav.NewAddressBookHomeSet(HomePath(user, AddressBooks)),
			},
			Capabilities: []webdav.Capability{caldav.CapabilityCalendar, carddav.CapabilityAddressBook},
		})
		return
	}

	switch r.Method {
	case "MKCALENDAR":
		if dp.kind != Calendars || depth != 3 {
			http.Error(w, "MKCALENDAR makes a calendar in the calendar home set only", http.StatusForbidden)
			return
		}
		h.mkcalendar(w, r, user, dp)
		return
	case "PROPPATCH":
		if depth == 3 {
			h.proppatch(w, r, user, dp)
			return
		}
	case http.MethodPut:
		if r.ContentLength > h.opts.MaxObjectBytes {
			h.tooLarge(w)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, h.opts.MaxObjectBytes+1))
		if err != nil {
			http.Error(w, "reading the request body failed", http.StatusBadRequest)
			return
		}
		if int64(len(body)) > h.opts.MaxObjectBytes {
			h.tooLarge(w)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	case http.MethodDelete:
		c, err := conditions(ctx, webdav.ConditionalMatch(r.Header.Get("If-Match")), "")
		if err != nil {
			http.Error(w, "malformed If-Match", http.StatusBadRequest)
			return
		}
		r = r.WithContext(context.WithValue(ctx, condKey, c))
	case "REPORT":
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReportBytes+1))
		if err != nil || len(body) > maxReportBytes {
			http.Error(w, "REPORT body unreadable or too large", http.StatusBadRequest)
			return
		}
		if isSyncCollection(body) {
			if depth != 3 {
				http.Error(w, "sync-collection is only supported on a calendar or address book", http.StatusForbidden)
				return
			}
			h.syncCollection(w, r, user, dp, body)
			return
		}
		if depth == 3 {
			if which := reportKind(body, dp.kind); which != "" {
				h.report(w, r, user, dp, which, body)
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	var next http.Handler = h.card
	if dp.kind == Calendars {
		next = h.cal
	}
	if r.Method == "PROPFIND" && depth == 3 {
		if r.Header.Get("Depth") == "1" && h.propfindMembers(w, r, user, dp, next) {
			return
		}
		h.propfindCollection(w, r, user, dp, next)
		return
	}
	next.ServeHTTP(w, r)
}

func (h *Handler) tooLarge(w http.ResponseWriter) {
	http.Error(w, "object larger than "+strconv.FormatInt(h.opts.MaxObjectBytes, 10)+" bytes", http.StatusRequestEntityTooLarge)
}

// isSyncCollection reports whether a REPORT body is a DAV:sync-collection.
func isSyncCollection(body []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Space == "DAV:" && se.Name.Local == "sync-collection"
		}
	}
}

func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrPrecondition):
		return http.StatusPreconditionFailed
	}
	return http.StatusInternalServerError
}
