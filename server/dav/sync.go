package dav

import (
	"bytes"
	"encoding/xml"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// syncRequest is the body of a sync-collection REPORT (RFC 6578 6.1).
type syncRequest struct {
	XMLName   xml.Name `xml:"DAV: sync-collection"`
	SyncToken string   `xml:"DAV: sync-token"`
	SyncLevel string   `xml:"DAV: sync-level"`
	Limit     *struct {
		NResults int `xml:"DAV: nresults"`
	} `xml:"DAV: limit"`
	Prop struct {
		Names []struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"DAV: prop"`
}

const (
	nsDAV     = "DAV:"
	nsCalDAV  = "urn:ietf:params:xml:ns:caldav"
	nsCardDAV = "urn:ietf:params:xml:ns:carddav"
)

// hrefPath percent-encodes a path for an href, as go-webdav writes them.
func hrefPath(p string) string { return (&url.URL{Path: p}).EscapedPath() }

func escape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func status(code int) string { return "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) }

func (h *Handler) syncError(w http.ResponseWriter, code int, cond string) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(xml.Header + `<D:error xmlns:D="DAV:"><D:` + cond + `/></D:error>` + "\n"))
}

// syncCollection answers a sync-collection REPORT on a calendar or an
// address book from the store's change log.
func (h *Handler) syncCollection(w http.ResponseWriter, r *http.Request, user string, dp davPath, body []byte) {
	var req syncRequest
	if err := xml.Unmarshal(body, &req); err != nil {
		http.Error(w, "malformed sync-collection request", http.StatusBadRequest)
		return
	}
	switch req.SyncLevel {
	case "1", "infinite", "infinity":
		// A collection here has no sub-collections: both levels list
		// the same members.
	default:
		http.Error(w, "sync-level must be 1 or infinite", http.StatusBadRequest)
		return
	}
	// Read in batches and written as read, like the queries (report.go):
	// an initial sync of a large collection lists every object. The
	// first batch is read before the answer starts, so that an unknown
	// token or collection gets its own status.
	token := strings.TrimSpace(req.SyncToken)
	limit := -1
	if req.Limit != nil && req.Limit.NResults >= 0 {
		limit = req.Limit.NResults
	}
	// One more than the limit tells whether the answer is truncated.
	batchSize := func(written int) int {
		if limit >= 0 {
			return min(reportBatch, limit+1-written)
		}
		return reportBatch
	}
	changes, col, err := h.st.ChangesAfter(r.Context(), user, dp.kind, dp.col, token, 0, math.MaxUint64, batchSize(0))
	if errors.Is(err, ErrBadToken) {
		h.syncError(w, http.StatusForbidden, "valid-sync-token")
		return
	}
	if err != nil {
		if code := httpStatus(err); code != http.StatusInternalServerError {
			http.Error(w, http.StatusText(code), code)
			return
		}
		h.opts.Logger.Error("dav sync-collection", "user", user, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	upTo := col.Seq
	colPath := hrefPath(HomePath(user, dp.kind) + dp.col + "/")
	names := make([]xml.Name, len(req.Prop.Names))
	for i, p := range req.Prop.Names {
		names[i] = p.XMLName
	}
	ps := propSet{names: names}
	ms := newMSStream(w)
	written, truncated := 0, false
	var last uint64 // sequence number of the last change written
	for len(changes) > 0 {
		for i := range changes {
			c := &changes[i]
			if written == limit {
				truncated = true
				break
			}
			href := colPath + hrefPath(c.Name)
			if c.Deleted {
				err = ms.status(href, http.StatusNotFound, "")
			} else {
				err = ms.object(href, dp.kind, &c.Object, c.Object.Data, &ps)
			}
			if err != nil {
				abort()
			}
			written++
			last = c.Seq
		}
		if truncated {
			break
		}
		after := changes[len(changes)-1].Seq
		clear(changes)
		if changes, _, err = h.st.ChangesAfter(r.Context(), user, dp.kind, dp.col, token, after, upTo, batchSize(written)); err != nil {
			h.opts.Logger.Error("dav sync-collection: read store", "user", user, "err", err)
			abort()
		}
	}
	next := syncToken(col.Epoch, upTo)
	if truncated {
		// RFC 6578 3.6: the first results, a token for where they end,
		// and a 507 for the collection so the client asks again.
		switch {
		case written > 0:
			next = syncToken(col.Epoch, last)
		case token != "":
			next = token
		default:
			next = syncToken(col.Epoch, 0)
		}
		if err := ms.status(colPath, http.StatusInsufficientStorage, `<D:number-of-matches-within-limits/>`); err != nil {
			abort()
		}
	}
	ms.w.WriteString(`<D:sync-token>` + escape(next) + `</D:sync-token>`)
	if err := ms.close(); err != nil {
		abort()
	}
}
