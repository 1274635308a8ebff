// Package ovh emulates the OVH API v1 (https://eu.api.ovh.com/1.0) for DNS
// zones: GET /auth/time, GET /domain/zone, record listing with fieldType and
// subDomain filters (ids only, one call per record to read it), record
// create/get/update/delete (PUT changes subDomain, target and ttl in place;
// fieldType, id and zone are read-only), and POST
// /domain/zone/{zone}/refresh. Every
// authenticated call is checked like OVH does (application key, consumer key
// and its access rules, timestamp, "$1$" SHA-1 signature, see Auth); errors
// use OVH's bodies and statuses. Zone data follows OVH's behaviour: minimum
// TTL 60 (0 means the zone default), '"' stripped from TXT targets, no CNAME
// at the apex, and records of types SPF, DKIM and DMARC as the web UI
// creates them. Each change of a zone's records is kept with the records
// after it (Writes), so that tests can check what OVH's name servers could
// have served between two calls (OVH also publishes pending changes by
// itself, not only at a refresh).
//
// It also serves the IP reverse DNS endpoints (/ip, /ip/{block}/reverse, see
// reverse.go). More endpoints plug into the same server with Handle, sharing
// the signature check and call counters.
package ovh

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

// Root is the API version prefix.
const Root = "/1.0"

// Record is a zone record as the API shows it.
type Record struct {
	ID        int64  `json:"id"`
	Zone      string `json:"zone"`
	SubDomain string `json:"subDomain"`
	FieldType string `json:"fieldType"`
	Target    string `json:"target"`
	TTL       int64  `json:"ttl"`
}

type zone struct {
	name      string
	records   []*Record
	dirty     bool
	refreshes int
	writes    []Write
}

// Write is one call that changed a zone's records, with the records after
// it.
type Write = emulator.Write[Record]

// logWrite keeps the call r and a copy of z's records; s.mu must be held.
func (z *zone) logWrite(r *http.Request) {
	z.writes = append(z.writes, emulator.NewWrite(r, z.records))
}

// Writes returns the calls that changed the named zone's records, in order
// (Seed is not one).
func (s *Server) Writes(zoneName string) []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zones[normName(zoneName)]
	if z == nil {
		return nil
	}
	return slices.Clone(z.writes)
}

// Server is a running OVH API emulator.
type Server struct {
	// Endpoint is the API base URL to give go-ovh (like
	// https://eu.api.ovh.com/1.0).
	Endpoint string
	// ApplicationKey, ApplicationSecret and ConsumerKey are valid
	// credentials with every right; ReadOnlyConsumerKey may only GET.
	ApplicationKey, ApplicationSecret, ConsumerKey, ReadOnlyConsumerKey string
	// Auth checks signatures; add applications and consumers to it.
	Auth *Auth
	// Recorder counts calls per endpoint and injects faults.
	emulator.Recorder

	srv    *httptest.Server
	mux    *http.ServeMux
	mu     sync.Mutex
	zones  map[string]*zone
	nextID int64
	ip     ipState // the /ip endpoints, see reverse.go
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// New starts an emulator with one application and two consumer keys; it
// stops when the test ends.
func New(t testing.TB) *Server {
	s := &Server{
		ApplicationKey:      randHex(8),
		ApplicationSecret:   randHex(16),
		ConsumerKey:         randHex(16),
		ReadOnlyConsumerKey: randHex(16),
		Auth:                &Auth{},
		mux:                 http.NewServeMux(),
		zones:               map[string]*zone{},
		nextID:              5000000000,
	}
	s.Auth.AddApplication(s.ApplicationKey, s.ApplicationSecret)
	s.Auth.AddConsumer(s.ApplicationKey, s.ConsumerKey, AllRules)
	s.Auth.AddConsumer(s.ApplicationKey, s.ReadOnlyConsumerKey, ReadOnlyRules)

	s.mux.Handle("GET "+Root+"/auth/time", s.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, time.Now().Unix())
	}), errorBody))
	s.Handle("GET /domain/zone", s.listZones)
	s.Handle("GET /domain/zone/{zone}/record", s.listRecords)
	s.Handle("POST /domain/zone/{zone}/record", s.createRecord)
	s.Handle("GET /domain/zone/{zone}/record/{id}", s.getRecord)
	s.Handle("PUT /domain/zone/{zone}/record/{id}", s.updateRecord)
	s.Handle("DELETE /domain/zone/{zone}/record/{id}", s.deleteRecord)
	s.Handle("POST /domain/zone/{zone}/refresh", s.refresh)
	s.handleReverse()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		(&Error{Status: http.StatusNotFound, ErrorCode: "CLIENT_NOT_FOUND", Message: "Got an invalid (or empty) URL"}).Write(w)
	})
	s.srv = httptest.NewServer(s.mux)
	s.Endpoint = s.srv.URL + Root
	t.Cleanup(s.srv.Close)
	return s
}

// Handler serves one authenticated endpoint; body is the request body,
// already read (and checked by the signature).
type Handler func(w http.ResponseWriter, r *http.Request, body []byte)

// Handle registers an authenticated endpoint; pattern is "METHOD /path"
// relative to the API root (/1.0). Calls are counted under the full pattern
// ("GET /1.0/domain/zone").
func (s *Server) Handle(pattern string, h Handler) {
	method, p, _ := strings.Cut(pattern, " ")
	s.mux.Handle(method+" "+Root+p, s.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			(&Error{Status: http.StatusBadRequest, Message: "cannot read body"}).Write(w)
			return
		}
		if e := s.Auth.Verify(r, body, strings.TrimPrefix(r.URL.Path, Root)); e != nil {
			e.Write(w)
			return
		}
		h(w, r, body)
	}), errorBody))
}

func errorBody(status int) string {
	e := &Error{Message: http.StatusText(status)}
	switch {
	case status == http.StatusTooManyRequests:
		e.Class, e.Message = "Client::TooManyRequests", "Too many requests"
	case status >= 500:
		e.Class, e.Message = "Server::InternalServerError::Maintenance", "Internal server error"
	}
	b, _ := json.Marshal(e)
	return string(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, msg string) {
	(&Error{Status: http.StatusNotFound, Class: "Client::NotFound", Message: msg}).Write(w)
}

func badRequest(w http.ResponseWriter, msg string) {
	(&Error{Status: http.StatusBadRequest, Class: "Client::BadRequest", Message: msg}).Write(w)
}

// AddZone creates a zone.
func (s *Server) AddZone(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = normName(name)
	s.zones[name] = &zone{name: name}
}

// Seed adds a record as the web UI would (no validation, any fieldType such
// as SPF or DKIM, target kept as given) and returns its id.
func (s *Server) Seed(zoneName string, r Record) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zones[normName(zoneName)]
	if z == nil {
		panic("ovh emulator: Seed into unknown zone " + zoneName)
	}
	s.nextID++
	r.ID, r.Zone = s.nextID, z.name
	z.records = append(z.records, &r)
	return r.ID
}

// Records returns a copy of the zone's records.
func (s *Server) Records(zoneName string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zones[normName(zoneName)]
	if z == nil {
		return nil
	}
	out := make([]Record, 0, len(z.records))
	for _, r := range z.records {
		out = append(out, *r)
	}
	return out
}

// Refreshes returns how many times the zone was refreshed, and whether it
// has changes not yet refreshed (not yet served by OVH's name servers).
func (s *Server) Refreshes(zoneName string) (n int, pending bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zones[normName(zoneName)]
	if z == nil {
		return 0, false
	}
	return z.refreshes, z.dirty
}

func normName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

func (s *Server) zoneFor(w http.ResponseWriter, r *http.Request) *zone {
	z := s.zones[normName(r.PathValue("zone"))]
	if z == nil {
		notFound(w, "This service does not exist")
	}
	return z
}

func (s *Server) listZones(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := []string{}
	for n := range s.zones {
		names = append(names, n)
	}
	slices.Sort(names)
	writeJSON(w, names)
}

func (s *Server) listRecords(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(w, r)
	if z == nil {
		return
	}
	q := r.URL.Query()
	ft, hasFT := q.Get("fieldType"), q.Has("fieldType") && q.Get("fieldType") != ""
	// An empty subDomain is no filter, as for OVH: apex records are found
	// by reading them.
	sub, hasSub := q.Get("subDomain"), q.Get("subDomain") != ""
	ids := []int64{}
	for _, rec := range z.records {
		if hasFT && !strings.EqualFold(ft, rec.FieldType) {
			continue
		}
		if hasSub && !strings.EqualFold(sub, rec.SubDomain) {
			continue
		}
		ids = append(ids, rec.ID)
	}
	writeJSON(w, ids)
}

var fieldTypes = []string{"A", "AAAA", "CAA", "CNAME", "DKIM", "DMARC", "DNAME", "HTTPS", "LOC", "MX", "NAPTR", "NS", "PTR", "RP", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT"}

// validate normalises rec as OVH stores it or returns the error message.
func validate(rec *Record) string {
	rec.FieldType = strings.ToUpper(rec.FieldType)
	rec.SubDomain = strings.ToLower(strings.TrimSuffix(rec.SubDomain, "."))
	if !slices.Contains(fieldTypes, rec.FieldType) {
		return fmt.Sprintf("Invalid value for fieldType: %q is not a valid value", rec.FieldType)
	}
	if rec.TTL != 0 && rec.TTL < 60 {
		return "Invalid TTL: the minimum TTL is 60 seconds"
	}
	switch rec.FieldType {
	case "A", "AAAA":
		ip, err := netip.ParseAddr(rec.Target)
		if err != nil || ip.Is4() != (rec.FieldType == "A") {
			return fmt.Sprintf("Invalid target %q for a record of type %s", rec.Target, rec.FieldType)
		}
	case "CNAME":
		if rec.SubDomain == "" {
			return "A CNAME record can't be created at the root of the zone"
		}
	case "TXT", "SPF", "DKIM", "DMARC":
		rec.Target = strings.ReplaceAll(rec.Target, `"`, "")
	}
	if strings.TrimSpace(rec.Target) == "" {
		return "Invalid target: it can't be empty"
	}
	return ""
}

func (s *Server) createRecord(w http.ResponseWriter, r *http.Request, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(w, r)
	if z == nil {
		return
	}
	var rec Record
	if err := json.Unmarshal(body, &rec); err != nil {
		badRequest(w, "Invalid JSON body: "+err.Error())
		return
	}
	if msg := validate(&rec); msg != "" {
		badRequest(w, msg)
		return
	}
	if msg := z.cnameConflict(rec); msg != "" {
		badRequest(w, msg)
		return
	}
	s.nextID++
	rec.ID, rec.Zone = s.nextID, z.name
	z.records = append(z.records, &rec)
	z.dirty = true
	z.logWrite(r)
	writeJSON(w, rec)
}

// cnameConflict says why rec cannot stand beside the zone's other records
// (a CNAME shares its name with no other record), or "".
func (z *zone) cnameConflict(rec Record) string {
	for _, o := range z.records {
		if o.ID != rec.ID && o.SubDomain == rec.SubDomain && (rec.FieldType == "CNAME" || o.FieldType == "CNAME") {
			return "A CNAME record cannot coexist with other records of the same subdomain"
		}
	}
	return ""
}

func (s *Server) find(w http.ResponseWriter, r *http.Request) (*zone, int) {
	z := s.zoneFor(w, r)
	if z == nil {
		return nil, -1
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	i := slices.IndexFunc(z.records, func(rec *Record) bool { return rec.ID == id })
	if err != nil || i < 0 {
		notFound(w, fmt.Sprintf("The requested object (id = %s) does not exist", r.PathValue("id")))
		return z, -1
	}
	return z, i
}

func (s *Server) getRecord(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if z, i := s.find(w, r); i >= 0 {
		writeJSON(w, z.records[i])
	}
}

func (s *Server) updateRecord(w http.ResponseWriter, r *http.Request, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z, i := s.find(w, r)
	if i < 0 {
		return
	}
	var in struct {
		SubDomain *string `json:"subDomain"`
		Target    *string `json:"target"`
		TTL       *int64  `json:"ttl"`
		// Read-only: accepted only unchanged.
		FieldType *string `json:"fieldType"`
		ID        *int64  `json:"id"`
		Zone      *string `json:"zone"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		badRequest(w, "Invalid JSON body: "+err.Error())
		return
	}
	rec := *z.records[i]
	var readOnly []string
	if in.FieldType != nil && *in.FieldType != "" && !strings.EqualFold(*in.FieldType, rec.FieldType) {
		readOnly = append(readOnly, "fieldType")
	}
	if in.ID != nil && *in.ID != 0 && *in.ID != rec.ID {
		readOnly = append(readOnly, "id")
	}
	if in.Zone != nil && *in.Zone != "" && normName(*in.Zone) != rec.Zone {
		readOnly = append(readOnly, "zone")
	}
	if len(readOnly) > 0 {
		badRequest(w, "Try to alter read-only properties: "+strings.Join(readOnly, ", "))
		return
	}
	if in.SubDomain != nil {
		rec.SubDomain = *in.SubDomain
	}
	if in.Target != nil {
		rec.Target = *in.Target
	}
	if in.TTL != nil {
		rec.TTL = *in.TTL
	}
	if msg := validate(&rec); msg != "" {
		badRequest(w, msg)
		return
	}
	if msg := z.cnameConflict(rec); msg != "" {
		badRequest(w, msg)
		return
	}
	z.records[i] = &rec
	z.dirty = true
	z.logWrite(r)
	writeJSON(w, nil)
}

func (s *Server) deleteRecord(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z, i := s.find(w, r)
	if i < 0 {
		return
	}
	z.records = slices.Delete(z.records, i, i+1)
	z.dirty = true
	z.logWrite(r)
	writeJSON(w, nil)
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneFor(w, r)
	if z == nil {
		return
	}
	z.refreshes++
	z.dirty = false
	writeJSON(w, nil)
}
