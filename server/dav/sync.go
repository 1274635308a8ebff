package dav

import (
	"bytes"
	"encoding/xml"
	"errors"
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

// The multistatus answer, written with fixed prefixes.
type msPropstat struct {
	Prop   msInner `xml:"D:prop"`
	Status string  `xml:"D:status"`
}

type msInner struct {
	Inner string `xml:",innerxml"`
}

type msResponse struct {
	Href     string       `xml:"D:href"`
	Propstat []msPropstat `xml:"D:propstat,omitempty"`
	Status   string       `xml:"D:status,omitempty"`
	Error    *msInner     `xml:"D:error,omitempty"`
}

type msMultistatus struct {
	XMLName   xml.Name     `xml:"D:multistatus"`
	NSD       string       `xml:"xmlns:D,attr"`
	NSC       string       `xml:"xmlns:C,attr"`
	NSR       string       `xml:"xmlns:R,attr"`
	Responses []msResponse `xml:"D:response"`
	SyncToken string       `xml:"D:sync-token"`
}

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
	changes, col, err := h.st.Changes(r.Context(), user, dp.kind, dp.col, strings.TrimSpace(req.SyncToken))
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
	colPath := hrefPath(HomePath(user, dp.kind) + dp.col + "/")
	ms := msMultistatus{NSD: nsDAV, NSC: nsCalDAV, NSR: nsCardDAV, SyncToken: col.SyncToken()}
	if req.Limit != nil && req.Limit.NResults >= 0 && req.Limit.NResults < len(changes) {
		// RFC 6578 3.6: the first results, a token for where they end,
		// and a 507 for the collection so the client asks again.
		changes = changes[:req.Limit.NResults]
		if len(changes) > 0 {
			ms.SyncToken = syncToken(col.Epoch, changes[len(changes)-1].Seq)
		} else if req.SyncToken != "" {
			ms.SyncToken = strings.TrimSpace(req.SyncToken)
		} else {
			ms.SyncToken = syncToken(col.Epoch, 0)
		}
		ms.Responses = append(ms.Responses, msResponse{
			Href: colPath, Status: status(http.StatusInsufficientStorage),
			Error: &msInner{`<D:number-of-matches-within-limits/>`},
		})
	}
	for _, c := range changes {
		href := colPath + hrefPath(c.Name)
		if c.Deleted {
			ms.Responses = append(ms.Responses, msResponse{Href: href, Status: status(http.StatusNotFound)})
			continue
		}
		names := make([]xml.Name, len(req.Prop.Names))
		for i, p := range req.Prop.Names {
			names[i] = p.XMLName
		}
		var found, missing bytes.Buffer
		writeObjectProps(&found, &missing, dp.kind, &c.Object, c.Object.Data, names)
		resp := msResponse{Href: href}
		resp.Propstat = append(resp.Propstat, msPropstat{Prop: msInner{found.String()}, Status: status(http.StatusOK)})
		if missing.Len() > 0 {
			resp.Propstat = append(resp.Propstat, msPropstat{Prop: msInner{missing.String()}, Status: status(http.StatusNotFound)})
		}
		ms.Responses = append(ms.Responses, resp)
	}
	out, err := xml.Marshal(ms)
	if err != nil {
		h.opts.Logger.Error("dav sync-collection: encode", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(http.StatusMultiStatus)
	w.Write([]byte(xml.Header))
	w.Write(out)
}
