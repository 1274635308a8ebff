package dav

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
)

// propfindMembers answers a Depth: 1 PROPFIND on a collection, the way
// clients list a collection's etags: the collection's own response from
// go-webdav (Depth: 0, with the added collection properties of
// collprops.go), then each member's response streamed from the store in
// batches, as the REPORTs of report.go are, instead of go-webdav parsing
// every object and building the whole answer in memory. It reports false,
// having written nothing, for a body it does not understand, which is
// then left to go-webdav.
func (h *Handler) propfindMembers(w http.ResponseWriter, r *http.Request, user string, dp davPath, next http.Handler) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportBytes+1))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil || len(body) > maxReportBytes {
		return false
	}
	var req queryRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := xml.Unmarshal(body, &req); err != nil || req.XMLName != (xml.Name{Space: nsDAV, Local: "propfind"}) {
			return false
		}
	}
	ps := requestedPropsData(&req, dp.kind, false)
	match, err := h.matcher(dp.kind, &queryRequest{}, &ps)
	if err != nil {
		return false
	}

	r0 := r.Clone(r.Context())
	r0.Header.Set("Depth", "0")
	r0.Body = io.NopCloser(bytes.NewReader(body))
	bw := &bufferedWriter{header: http.Header{}, code: http.StatusOK}
	h.propfindCollection(bw, r0, user, dp, next)
	end := bytes.LastIndex(bw.body.Bytes(), []byte("</multistatus>"))
	batch, err := h.st.ObjectsAfter(r.Context(), user, dp.kind, dp.col, "", reportBatch)
	if bw.code != http.StatusMultiStatus || end < 0 || err != nil {
		// No such collection, or an error: go-webdav's answer as it is.
		for k, v := range bw.header {
			w.Header()[k] = v
		}
		w.WriteHeader(bw.code)
		w.Write(bw.body.Bytes())
		return true
	}
	for k, v := range bw.header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(http.StatusMultiStatus)
	ms := &msStream{
		w:    bufio.NewWriterSize(w, 32<<10),
		open: `<D:response xmlns:D="DAV:" xmlns:C="` + nsCalDAV + `" xmlns:R="` + nsCardDAV + `">`,
	}
	ms.w.Write(bw.body.Bytes()[:end])
	colPath := hrefPath(HomePath(user, dp.kind) + dp.col + "/")
	for len(batch) > 0 {
		for i := range batch {
			o := &batch[i]
			data, _, err := match(o)
			if err != nil {
				h.opts.Logger.Error("dav propfind", "user", user, "err", err)
				if err := ms.status(colPath+hrefPath(o.Name), http.StatusInternalServerError, ""); err != nil {
					abort()
				}
				continue
			}
			if err := ms.object(colPath+hrefPath(o.Name), dp.kind, o, data, &ps); err != nil {
				abort()
			}
		}
		last := batch[len(batch)-1].Name
		clear(batch)
		if batch, err = h.st.ObjectsAfter(r.Context(), user, dp.kind, dp.col, last, reportBatch); err != nil {
			h.opts.Logger.Error("dav propfind: read store", "user", user, "err", err)
			abort()
		}
	}
	ms.w.WriteString(`</multistatus>` + "\n")
	if err := ms.w.Flush(); err != nil {
		abort()
	}
	return true
}
