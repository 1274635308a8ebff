package dav

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
)

// mkcalendarRequest is the optional body of MKCALENDAR (RFC 4791 5.3.1),
// of which the display name and description are kept.
type mkcalendarRequest struct {
	XMLName xml.Name `xml:"urn:ietf:params:xml:ns:caldav mkcalendar"`
	Set     struct {
		Prop struct {
			DisplayName string `xml:"DAV: displayname"`
			Description string `xml:"urn:ietf:params:xml:ns:caldav calendar-description"`
		} `xml:"DAV: prop"`
	} `xml:"DAV: set"`
}

// mkcalendar creates a calendar: go-webdav v0.6.0 only knows MKCOL, and
// clients (Apple Calendar, DAVx5) create calendars with MKCALENDAR.
func (h *Handler) mkcalendar(w http.ResponseWriter, r *http.Request, user string, dp davPath) {
	var req mkcalendarRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportBytes+1))
	if err != nil || len(body) > maxReportBytes {
		http.Error(w, "MKCALENDAR body unreadable or too large", http.StatusBadRequest)
		return
	}
	if len(body) > 0 {
		if err := xml.Unmarshal(body, &req); err != nil {
			http.Error(w, "malformed MKCALENDAR body", http.StatusBadRequest)
			return
		}
	}
	err = h.st.CreateCollection(r.Context(), user, Collection{Kind: Calendars, Name: dp.col,
		DisplayName: req.Set.Prop.DisplayName, Description: req.Set.Prop.Description})
	switch {
	case errors.Is(err, ErrExists):
		http.Error(w, "a calendar of that name exists", http.StatusMethodNotAllowed)
	case err != nil:
		h.opts.Logger.Error("dav mkcalendar", "user", user, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusCreated)
	}
}
