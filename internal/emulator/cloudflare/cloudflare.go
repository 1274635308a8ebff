// Package cloudflare emulates the parts of the Cloudflare API v4 that DNS
// management uses: zone lookup (GET /zones?name=) and DNS records (list with
// filters and page/per_page pagination, create, get, PUT, PATCH, DELETE,
// and the batch of deletes, patches, puts and posts in one transaction),
// with Bearer token checks, the v4 response envelope
// ({"success","errors","messages","result","result_info"}), TTL 1 meaning
// automatic, the proxied flag, and TXT content longer than 255 bytes stored
// as several quoted strings as Cloudflare does. Every change of a record is
// kept with the zone's records after it (Writes), so that tests can check
// what resolvers could have seen between two calls.
package cloudflare

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/emulator"
)

// Record is a DNS record as the API shows it. Name is fully qualified without
// trailing dot.
type Record struct {
	ID       string `json:"id"`
	ZoneID   string `json:"zone_id"`
	ZoneName string `json:"zone_name"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	Content  string `json:"content"`
	// Priority is set for MX (and mirrors data.priority for SRV).
	Priority  *uint16 `json:"priority,omitempty"`
	Proxiable bool    `json:"proxiable"`
	Proxied   bool    `json:"proxied"`
	// TTL in seconds, 1 = automatic.
	TTL        int       `json:"ttl"`
	Locked     bool      `json:"locked"`
	Data       *SRVData  `json:"data,omitempty"`
	CreatedOn  time.Time `json:"created_on"`
	ModifiedOn time.Time `json:"modified_on"`
	Meta       struct {
		AutoAdded bool   `json:"auto_added"`
		Source    string `json:"source"`
	} `json:"meta"`
}

// SRVData is the structured data of SRV records.
type SRVData struct {
	Service  string `json:"service,omitempty"`
	Proto    string `json:"proto,omitempty"`
	Name     string `json:"name,omitempty"`
	Priority uint16 `json:"priority"`
	Weight   uint16 `json:"weight"`
	Port     uint16 `json:"port"`
	Target   string `json:"target"`
}

type zone struct {
	ID      string
	Name    string
	records []*Record
	writes  []Write
}

// Write is one call that changed a zone's records, with the records after
// it.
type Write = emulator.Write[Record]

// logWrite keeps the call r and a copy of z's records; s.mu must be held.
func (z *zone) logWrite(r *http.Request) {
	z.writes = append(z.writes, emulator.NewWrite(r, z.records))
}

// Writes returns the changes made to the named zone through the API, in
// order (Seed is not one).
func (s *Server) Writes(zoneName string) []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneByName(zoneName)
	if z == nil {
		return nil
	}
	return slices.Clone(z.writes)
}

// Server is a running emulator.
type Server struct {
	// URL is the API base, like https://api.cloudflare.com/client/v4.
	URL string
	// Token is accepted for everything; ReadOnlyToken only for GET
	// (Zone:Read, DNS:Read), writes answer 403 code 10000.
	Token, ReadOnlyToken string
	// Recorder counts calls per endpoint and injects faults.
	emulator.Recorder

	srv        *httptest.Server
	mu         sync.Mutex
	zones      []*zone
	batchLimit int
}

// New starts an emulator with fresh tokens; it stops when the test ends.
func New(t testing.TB) *Server {
	s := &Server{Token: randHex(20), ReadOnlyToken: randHex(20)}
	mux := http.NewServeMux()
	h := func(pattern string, f http.HandlerFunc) {
		mux.Handle(pattern, s.Wrap(s.auth(f), errorBody))
	}
	h("GET /client/v4/zones", s.listZones)
	h("GET /client/v4/zones/{zone}/dns_records", s.listRecords)
	h("POST /client/v4/zones/{zone}/dns_records", s.createRecord)
	h("POST /client/v4/zones/{zone}/dns_records/batch", s.batch)
	h("GET /client/v4/zones/{zone}/dns_records/{id}", s.getRecord)
	h("PUT /client/v4/zones/{zone}/dns_records/{id}", s.updateRecord)
	h("PATCH /client/v4/zones/{zone}/dns_records/{id}", s.updateRecord)
	h("DELETE /client/v4/zones/{zone}/dns_records/{id}", s.deleteRecord)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, 7003, "Could not route to "+r.URL.Path+", perhaps your object identifier is invalid?")
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + "/client/v4"
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the server (also done at the end of the test).
func (s *Server) Close() { s.srv.Close() }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// AddZone creates a zone and returns its id.
func (s *Server) AddZone(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := &zone{ID: randHex(16), Name: normName(name)}
	s.zones = append(s.zones, z)
	return z.ID
}

// Seed adds a record to the named zone as if created in the dashboard and
// returns its id. Name may be relative ("@", "www") or absolute.
func (s *Server) Seed(zoneName string, r Record) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneByName(zoneName)
	if z == nil {
		panic("cloudflare emulator: Seed into unknown zone " + zoneName)
	}
	rec, code, msg := s.build(z, r)
	if code != 0 {
		panic(fmt.Sprintf("cloudflare emulator: Seed %+v: %d %s", r, code, msg))
	}
	z.records = append(z.records, rec)
	return rec.ID
}

// Records returns a copy of the zone's records.
func (s *Server) Records(zoneName string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneByName(zoneName)
	if z == nil {
		return nil
	}
	out := make([]Record, 0, len(z.records))
	for _, r := range z.records {
		out = append(out, *r)
	}
	return out
}

func (s *Server) zoneByName(name string) *zone {
	for _, z := range s.zones {
		if z.Name == normName(name) {
			return z
		}
	}
	return nil
}

func (s *Server) zoneByID(id string) *zone {
	for _, z := range s.zones {
		if z.ID == id {
			return z
		}
	}
	return nil
}

func normName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type envelope struct {
	Success    bool        `json:"success"`
	Errors     []apiError  `json:"errors"`
	Messages   []any       `json:"messages"`
	Result     any         `json:"result"`
	ResultInfo *resultInfo `json:"result_info,omitempty"`
}

type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

func errorBody(status int) string {
	code, msg := 10000, http.StatusText(status)
	switch status {
	case http.StatusTooManyRequests:
		code, msg = 971, "Please wait and consider throttling your request speed"
	case http.StatusForbidden:
		msg = "Authentication error"
	case http.StatusUnauthorized:
		code, msg = 9109, "Invalid access token"
	}
	b, _ := json.Marshal(envelope{Errors: []apiError{{code, msg}}, Messages: []any{}})
	return string(b)
}

func writeErr(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(envelope{Errors: []apiError{{code, msg}}, Messages: []any{}})
}

func writeOK(w http.ResponseWriter, result any, info *resultInfo) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(envelope{Success: true, Errors: []apiError{}, Messages: []any{}, Result: result, ResultInfo: info})
}

// auth checks the Bearer token: a missing or unknown token is 403 code 9109
// (Cloudflare answers so for invalid tokens), a read-only token writing is
// 403 code 10000.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		full, ro := s.Token, s.ReadOnlyToken
		s.mu.Unlock()
		switch {
		case !ok || tok == "":
			writeErr(w, http.StatusBadRequest, 6003, "Invalid request headers")
		case tok == full:
			next(w, r)
		case tok == ro && r.Method == http.MethodGet:
			next(w, r)
		case tok == ro:
			writeErr(w, http.StatusForbidden, 10000, "Authentication error")
		default:
			writeErr(w, http.StatusForbidden, 9109, "Invalid access token")
		}
	}
}

// SetToken replaces the accepted full-access token (simulates revocation).
func (s *Server) SetToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Token = tok
}

func paginate(r *http.Request, n int) (from, to int, info *resultInfo, err error) {
	page, perPage := 1, 100
	if v := r.URL.Query().Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, nil, fmt.Errorf("page must be a positive integer")
		}
	}
	if v := r.URL.Query().Get("per_page"); v != "" {
		if perPage, err = strconv.Atoi(v); err != nil || perPage < 5 || perPage > 5000000 {
			return 0, 0, nil, fmt.Errorf("per_page must be between 5 and 5000000")
		}
	}
	from = min((page-1)*perPage, n)
	to = min(from+perPage, n)
	info = &resultInfo{Page: page, PerPage: perPage, Count: to - from, TotalCount: n, TotalPages: (n + perPage - 1) / perPage}
	return from, to, info, nil
}

func (s *Server) listZones(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.URL.Query().Get("name")
	type zoneJSON struct {
		ID          string   `json:"id"`
		Name        string   `json:"name"`
		Status      string   `json:"status"`
		Paused      bool     `json:"paused"`
		Type        string   `json:"type"`
		NameServers []string `json:"name_servers"`
	}
	var out []zoneJSON
	for _, z := range s.zones {
		if name == "" || normName(name) == z.Name {
			out = append(out, zoneJSON{z.ID, z.Name, "active", false, "full", []string{"ada.ns.cloudflare.com", "bob.ns.cloudflare.com"}})
		}
	}
	from, to, info, err := paginate(r, len(out))
	if err != nil {
		writeErr(w, http.StatusBadRequest, 1001, err.Error())
		return
	}
	if out == nil {
		out = []zoneJSON{}
	}
	writeOK(w, out[from:to], info)
}

// zoneFor resolves the {zone} path value or writes the error.
func (s *Server) zoneFor(w http.ResponseWriter, r *http.Request) *zone {
	z := s.zoneByID(r.PathValue("zone"))
	if z == nil {
		writeErr(w, http.StatusNotFound, 7003, "Could not route to "+r.URL.Path+", perhaps your object identifier is invalid?")
	}
	return z
}

func (s *Server) listRecords(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(w, r)
	if z == nil {
		return
	}
	q := r.URL.Query()
	var out []Record
	for _, rec := range z.records {
		if v := q.Get("type"); v != "" && !strings.EqualFold(v, rec.Type) {
			continue
		}
		if v := firstOf(q.Get("name"), q.Get("name.exact")); v != "" && normName(absName(v, z.Name)) != rec.Name {
			continue
		}
		if v := firstOf(q.Get("content"), q.Get("content.exact")); v != "" && v != rec.Content {
			continue
		}
		if v := q.Get("content.contains"); v != "" && !strings.Contains(strings.ToLower(rec.Content), strings.ToLower(v)) {
			continue
		}
		out = append(out, *rec)
	}
	from, to, info, err := paginate(r, len(out))
	if err != nil {
		writeErr(w, http.StatusBadRequest, 1001, err.Error())
		return
	}
	if out == nil {
		out = []Record{}
	}
	writeOK(w, out[from:to], info)
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// absName qualifies a name given relative to the zone ("@", "www").
func absName(n, zoneName string) string {
	n = normName(n)
	switch {
	case n == "@" || n == "" || n == zoneName:
		return zoneName
	case strings.HasSuffix(n, "."+zoneName):
		return n
	}
	return n + "." + zoneName
}

type input struct {
	Type     string   `json:"type"`
	Name     string   `json:"name"`
	Content  string   `json:"content"`
	TTL      *int     `json:"ttl"`
	Priority *uint16  `json:"priority"`
	Proxied  *bool    `json:"proxied"`
	Data     *SRVData `json:"data"`
}

func (s *Server) createRecord(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(w, r)
	if z == nil {
		return
	}
	var in input
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, 9207, "Request body is invalid.")
		return
	}
	rec, code, msg := s.build(z, fromInput(in, Record{TTL: 1}))
	if code != 0 {
		writeErr(w, http.StatusBadRequest, code, msg)
		return
	}
	z.records = append(z.records, rec)
	z.logWrite(r)
	writeOK(w, *rec, nil)
}

func fromInput(in input, base Record) Record {
	r := base
	if in.Type != "" {
		r.Type = in.Type
	}
	if in.Name != "" {
		r.Name = in.Name
	}
	if in.Content != "" {
		r.Content = in.Content
	}
	if in.TTL != nil {
		r.TTL = *in.TTL
	}
	if in.Priority != nil {
		r.Priority = in.Priority
	}
	if in.Proxied != nil {
		r.Proxied = *in.Proxied
	}
	if in.Data != nil {
		r.Data = in.Data
	}
	return r
}

// build validates r for zone z and returns the stored form, or an API error
// code and message. It must be called with s.mu held; r.ID, when set, is the
// record being replaced.
func (s *Server) build(z *zone, r Record) (*Record, int, string) {
	r.Type = strings.ToUpper(r.Type)
	r.Name = absName(r.Name, z.Name)
	if r.TTL == 0 {
		r.TTL = 1
	}
	if r.TTL != 1 && (r.TTL < 60 || r.TTL > 86400) {
		return nil, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
	}
	switch r.Type {
	case "A", "AAAA":
		ip, err := netip.ParseAddr(r.Content)
		if err != nil || ip.Is4() != (r.Type == "A") {
			return nil, 9005, "Content for " + r.Type + " record is invalid."
		}
		r.Content = ip.String()
		r.Proxiable = true
	case "CNAME":
		r.Content = normName(r.Content)
		r.Proxiable = true
	case "MX":
		if r.Priority == nil {
			return nil, 9100, "MX records require a priority."
		}
		r.Content = normName(r.Content)
	case "TXT":
		if len(r.Content) > 2048 {
			return nil, 9004, "Content for TXT record is invalid. Must not exceed 2048 characters."
		}
		r.Content = splitLongTXT(r.Content)
	case "SRV":
		if r.Data == nil || r.Data.Target == "" || r.Data.Port == 0 {
			return nil, 9101, "SRV records require data.port, data.priority, data.weight and data.target."
		}
		d := *r.Data
		d.Target = normName(d.Target)
		r.Data = &d
		p := d.Priority
		r.Priority = &p
		r.Content = fmt.Sprintf("%d %d %s", d.Weight, d.Port, d.Target)
	case "NS", "CAA", "TLSA", "PTR", "HTTPS", "SVCB", "DS", "CERT", "DNSKEY", "LOC", "NAPTR", "SMIMEA", "SSHFP", "URI":
	default:
		return nil, 9000, "DNS record type is invalid."
	}
	if r.Type != "MX" && r.Type != "SRV" && r.Type != "URI" {
		r.Priority = nil
	}
	if r.Proxied && !r.Proxiable {
		return nil, 9004, "This record type cannot be proxied."
	}
	for _, o := range z.records {
		if o.ID == r.ID || o.Name != r.Name {
			continue
		}
		if o.Type == r.Type && o.Content == r.Content && eqPrio(o.Priority, r.Priority) {
			return nil, 81058, "An identical record already exists."
		}
		if o.Type == "CNAME" || r.Type == "CNAME" {
			return nil, 81053, "An A, AAAA, or CNAME record with that host already exists."
		}
	}
	now := time.Now().UTC()
	if r.ID == "" {
		r.ID = randHex(16)
		r.CreatedOn = now
	}
	r.ModifiedOn = now
	r.ZoneID, r.ZoneName = z.ID, z.Name
	return &r, 0, ""
}

func eqPrio(a, b *uint16) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// splitLongTXT stores TXT content as Cloudflare does: quoted strings longer
// than 255 bytes are split into several quoted strings.
func splitLongTXT(c string) string {
	if !strings.HasPrefix(c, `"`) {
		if len(c) <= 255 {
			return c
		}
		c = `"` + strings.ReplaceAll(c, `"`, `\"`) + `"`
	}
	parts, ok := quotedParts(c)
	if !ok {
		return c
	}
	var out []string
	for _, p := range parts {
		for len(p) > 255 {
			cut := 255
			if p[cut-1] == '\\' {
				cut--
			}
			out = append(out, p[:cut])
			p = p[cut:]
		}
		out = append(out, p)
	}
	return `"` + strings.Join(out, `" "`) + `"`
}

// quotedParts splits `"a" "b"` into the raw (still escaped) strings.
func quotedParts(s string) ([]string, bool) {
	var parts []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] != '"' {
			return nil, false
		}
		i := 1
		for i < len(s) && s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(s) {
			return nil, false
		}
		parts = append(parts, s[1:i])
		s = s[i+1:]
	}
	return parts, len(parts) > 0
}

func (s *Server) find(w http.ResponseWriter, r *http.Request) (*zone, int) {
	z := s.zoneFor(w, r)
	if z == nil {
		return nil, -1
	}
	i := slices.IndexFunc(z.records, func(rec *Record) bool { return rec.ID == r.PathValue("id") })
	if i < 0 {
		writeErr(w, http.StatusNotFound, 81044, "Record does not exist.")
	}
	return z, i
}

func (s *Server) getRecord(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if z, i := s.find(w, r); i >= 0 {
		writeOK(w, *z.records[i], nil)
	}
}

func (s *Server) updateRecord(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z, i := s.find(w, r)
	if i < 0 {
		return
	}
	var in input
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, 9207, "Request body is invalid.")
		return
	}
	base := *z.records[i]
	if r.Method == http.MethodPut {
		// PUT replaces the record: unspecified fields take defaults.
		base = Record{ID: base.ID, CreatedOn: base.CreatedOn, TTL: 1}
	}
	rec, code, msg := s.build(z, fromInput(in, base))
	if code != 0 {
		writeErr(w, http.StatusBadRequest, code, msg)
		return
	}
	z.records[i] = rec
	z.logWrite(r)
	writeOK(w, *rec, nil)
}

func (s *Server) deleteRecord(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z, i := s.find(w, r)
	if i < 0 {
		return
	}
	id := z.records[i].ID
	z.records = slices.Delete(z.records, i, i+1)
	z.logWrite(r)
	writeOK(w, map[string]string{"id": id}, nil)
}
