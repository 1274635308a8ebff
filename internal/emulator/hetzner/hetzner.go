// Package hetzner emulates the parts of the Hetzner Cloud API
// (https://api.hetzner.cloud/v1, https://docs.hetzner.cloud) that set reverse
// DNS: servers and their public network, Primary IPs, the change_dns_ptr
// actions of both, and the actions API to wait for them.
//
// Served endpoints: GET /servers (page, per_page, name; meta.pagination),
// GET /servers/{id}, POST /servers/{id}/actions/change_dns_ptr,
// GET /primary_ips (page, per_page, name, ip), GET /primary_ips/{id},
// POST /primary_ips/{id}/actions/change_dns_ptr, GET /actions (id, required)
// and GET /actions/{id}. Calls need "Authorization: Bearer <token>"; a
// read-only token may only GET. Errors use the API's body
// {"error": {"code": ..., "message": ..., "details": ...}}.
//
// A server's public IPv4 and IPv6 are Primary IPs assigned to it, so a PTR
// changed through either resource shows in both. A change_dns_ptr action
// starts "running" and the PTR changes only when it completes: after it has
// been read ActionPolls times (GET /actions or /actions/{id}), as the real
// API applies it asynchronously. A reset (dns_ptr null) restores the IPv4
// default name (static.<reversed IPv4>.clients.your-server.de) and removes
// an IPv6 entry.
package hetzner

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
const Root = "/v1"

type primaryIP struct {
	id       int64
	name     string
	v4       netip.Addr   // for type ipv4
	v6       netip.Prefix // for type ipv6 (a /64)
	ptr      map[netip.Addr]string
	assignee int64 // server id, 0 when unassigned
	created  time.Time
}

func (p *primaryIP) holds(a netip.Addr) bool {
	if p.v4.IsValid() {
		return p.v4 == a
	}
	return p.v6.Contains(a)
}

type server struct {
	id      int64
	name    string
	v4, v6  *primaryIP
	created time.Time
}

type action struct {
	id        int64
	command   string
	status    string
	resources []resourceRef
	reads     int
	started   time.Time
	finished  *time.Time
	apply     func()
	err       *actionError
}

type resourceRef struct {
	ID   int64  `json:"id"`
	Type string `json:"type"`
}

type actionError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Server is a running Hetzner Cloud API emulator.
type Server struct {
	// Endpoint is the API base URL to give hcloud-go (like
	// https://api.hetzner.cloud/v1).
	Endpoint string
	// Token may do everything; ReadOnlyToken may only GET.
	Token, ReadOnlyToken string
	// Recorder counts calls per endpoint ("GET /v1/servers") and
	// injects faults.
	emulator.Recorder

	srv *httptest.Server

	mu          sync.Mutex
	servers     []*server
	ips         []*primaryIP
	actions     map[int64]*action
	nextID      int64
	actionPolls int
	failNext    *actionError
	onPTR       func(ip netip.Addr, ptr string)
	published   []func() // OnPTR calls waiting for s.mu to be released
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// New starts an emulator with an empty project; it stops when the test ends.
func New(t testing.TB) *Server {
	s := &Server{
		Token:         randHex(32),
		ReadOnlyToken: randHex(32),
		actions:       map[int64]*action{},
		nextID:        1000,
		actionPolls:   1,
	}
	mux := http.NewServeMux()
	h := func(pattern string, f http.HandlerFunc) {
		method, p, _ := strings.Cut(pattern, " ")
		mux.Handle(method+" "+Root+p, s.Wrap(s.auth(s.publishing(f)), errorBody))
	}
	h("GET /servers", s.listServers)
	h("GET /servers/{id}", s.getServer)
	h("POST /servers/{id}/actions/change_dns_ptr", s.changeServerPtr)
	h("GET /primary_ips", s.listPrimaryIPs)
	h("GET /primary_ips/{id}", s.getPrimaryIP)
	h("POST /primary_ips/{id}/actions/change_dns_ptr", s.changePrimaryIPPtr)
	h("GET /actions", s.listActions)
	h("GET /actions/{id}", s.getAction)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "not found")
	})
	s.srv = httptest.NewServer(mux)
	s.Endpoint = s.srv.URL + Root
	t.Cleanup(s.srv.Close)
	return s
}

// SetActionPolls sets how many reads of a change_dns_ptr action it takes to
// complete (default 1: the first poll sees it finished; 0 completes it at
// creation).
func (s *Server) SetActionPolls(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actionPolls = n
}

// OnPTR calls f (outside the emulator's lock) each time a change_dns_ptr
// action completes, with the IP and its new PTR ("" when an IPv6 PTR is
// removed): what Hetzner's reverse DNS servers then serve. Tests use it to
// publish the PTR in a real DNS server.
func (s *Server) OnPTR(f func(ip netip.Addr, ptr string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPTR = f
}

// publishing runs the OnPTR calls of the actions that f completed, after
// f released the lock and before its response is sent.
func (s *Server) publishing(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		f(rec, r)
		s.mu.Lock()
		calls := s.published
		s.published = nil
		s.mu.Unlock()
		for _, c := range calls {
			c()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}
}

// FailNextAction makes the next change_dns_ptr action end in status "error"
// with code and message, leaving the PTR unchanged.
func (s *Server) FailNextAction(code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = &actionError{Code: code, Message: message}
}

// DefaultPTR is the PTR Hetzner gives an IPv4 address.
func DefaultPTR(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("static.%d.%d.%d.%d.clients.your-server.de", b[3], b[2], b[1], b[0])
}

func (s *Server) newPrimaryIP(name, ip string) *primaryIP {
	s.nextID++
	p := &primaryIP{id: s.nextID, name: name, ptr: map[netip.Addr]string{}, created: time.Now().UTC().Truncate(time.Second)}
	if strings.Contains(ip, "/") {
		p.v6 = netip.MustParsePrefix(ip).Masked()
		if !p.v6.Addr().Is6() {
			panic("hetzner emulator: a prefix must be an IPv6 /64: " + ip)
		}
	} else {
		p.v4 = netip.MustParseAddr(ip)
		if !p.v4.Is4() {
			panic("hetzner emulator: a single address must be IPv4 (IPv6 Primary IPs are /64 networks): " + ip)
		}
		p.ptr[p.v4] = DefaultPTR(p.v4)
	}
	s.ips = append(s.ips, p)
	return p
}

// AddServer creates a server with a public IPv4 address and, unless ipv6 is
// empty, an IPv6 /64 ("2001:db8:1:2::/64"), both as Primary IPs assigned to
// it. It returns the server id. It panics on malformed input.
func (s *Server) AddServer(name, ipv4, ipv6 string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	srv := &server{id: s.nextID, name: name, created: time.Now().UTC().Truncate(time.Second)}
	if ipv4 != "" {
		srv.v4 = s.newPrimaryIP("primary_ip-"+name+"-v4", ipv4)
		srv.v4.assignee = srv.id
	}
	if ipv6 != "" {
		srv.v6 = s.newPrimaryIP("primary_ip-"+name+"-v6", ipv6)
		srv.v6.assignee = srv.id
	}
	s.servers = append(s.servers, srv)
	return srv.id
}

// AddPrimaryIP creates an unassigned Primary IP (an IPv4 address or an IPv6
// /64) and returns its id.
func (s *Server) AddPrimaryIP(name, ip string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newPrimaryIP(name, ip).id
}

// PTR returns the reverse DNS of ip, "" when none is set or the project does
// not hold ip.
func (s *Server) PTR(ip string) string {
	a := netip.MustParseAddr(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.ips {
		if p.holds(a) {
			return p.ptr[a]
		}
	}
	return ""
}

// RunningActions returns how many actions have not completed.
func (s *Server) RunningActions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.actions {
		if a.status == "running" {
			n++
		}
	}
	return n
}

// ---- HTTP plumbing ----

type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details any    `json:"details"`
	} `json:"error"`
}

func errorBody(status int) string {
	var e errorJSON
	switch {
	case status == http.StatusTooManyRequests:
		e.Error.Code, e.Error.Message = "rate_limit_exceeded", "limit of 3600 requests per hour reached"
	case status == http.StatusServiceUnavailable:
		e.Error.Code, e.Error.Message = "maintenance", "cannot perform operation due to maintenance"
	case status == http.StatusBadGateway:
		e.Error.Code, e.Error.Message = "bad_gateway", "the request could not be answered by the API backend"
	case status >= 500:
		e.Error.Code, e.Error.Message = "server_error", "error within the API backend"
	case status == http.StatusUnauthorized:
		e.Error.Code, e.Error.Message = "unauthorized", "unable to authenticate"
	case status == http.StatusForbidden:
		e.Error.Code, e.Error.Message = "forbidden", "insufficient permissions for this request"
	case status == http.StatusNotFound:
		e.Error.Code, e.Error.Message = "not_found", "not found"
	default:
		e.Error.Code, e.Error.Message = "invalid_input", http.StatusText(status)
	}
	b, _ := json.Marshal(e)
	return string(b)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeErrorDetails(w, status, code, message, nil)
}

func writeErrorDetails(w http.ResponseWriter, status int, code, message string, details any) {
	var e errorJSON
	e.Error.Code, e.Error.Message, e.Error.Details = code, message, details
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Correlation-Id", randHex(8))
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func invalidField(w http.ResponseWriter, field, msg string) {
	details := map[string]any{"fields": []map[string]any{{"name": field, "messages": []string{msg}}}}
	writeErrorDetails(w, http.StatusBadRequest, "invalid_input", fmt.Sprintf("invalid input in field '%s'", field), details)
}

// auth checks the Bearer token: unknown tokens get 401, the read-only
// token 403 on anything but GET.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit-Limit", "3600")
		w.Header().Set("RateLimit-Remaining", "3599")
		w.Header().Set("RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10))
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case !ok || (tok != s.Token && tok != s.ReadOnlyToken):
			writeError(w, http.StatusUnauthorized, "unauthorized", "unable to authenticate")
		case tok == s.ReadOnlyToken && r.Method != http.MethodGet:
			writeError(w, http.StatusForbidden, "forbidden", "insufficient permissions for this request")
		default:
			next(w, r)
		}
	}
}

// ---- JSON views ----

type paginationJSON struct {
	Page         int  `json:"page"`
	PerPage      int  `json:"per_page"`
	PreviousPage *int `json:"previous_page"`
	NextPage     *int `json:"next_page"`
	LastPage     int  `json:"last_page"`
	TotalEntries int  `json:"total_entries"`
}

type metaJSON struct {
	Pagination paginationJSON `json:"pagination"`
}

// paginate returns the page of items the query asks for: per_page defaults
// to 25, at most 50.
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T) ([]T, metaJSON, bool) {
	q := r.URL.Query()
	page, perPage := 1, 25
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			invalidField(w, "page", "must be a positive integer")
			return nil, metaJSON{}, false
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			invalidField(w, "per_page", "must be a positive integer")
			return nil, metaJSON{}, false
		}
		perPage = min(n, 50)
	}
	last := max(1, (len(items)+perPage-1)/perPage)
	m := paginationJSON{Page: page, PerPage: perPage, LastPage: last, TotalEntries: len(items)}
	if page > 1 {
		p := page - 1
		m.PreviousPage = &p
	}
	if page < last {
		n := page + 1
		m.NextPage = &n
	}
	lo := min((page-1)*perPage, len(items))
	hi := min(lo+perPage, len(items))
	return items[lo:hi], metaJSON{Pagination: m}, true
}

type ptrJSON struct {
	IP     string `json:"ip"`
	DNSPtr string `json:"dns_ptr"`
}

func (p *primaryIP) ptrList() []ptrJSON {
	out := []ptrJSON{}
	for a, h := range p.ptr {
		if p.v4.IsValid() {
			continue
		}
		out = append(out, ptrJSON{IP: a.String(), DNSPtr: h})
	}
	slices.SortFunc(out, func(a, b ptrJSON) int { return strings.Compare(a.IP, b.IP) })
	return out
}

type ipv4JSON struct {
	ID      int64  `json:"id"`
	IP      string `json:"ip"`
	Blocked bool   `json:"blocked"`
	DNSPtr  string `json:"dns_ptr"`
}

type ipv6JSON struct {
	ID      int64     `json:"id"`
	IP      string    `json:"ip"`
	Blocked bool      `json:"blocked"`
	DNSPtr  []ptrJSON `json:"dns_ptr"`
}

type serverJSON struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Created   string `json:"created"`
	PublicNet struct {
		IPv4        *ipv4JSON `json:"ipv4"`
		IPv6        *ipv6JSON `json:"ipv6"`
		FloatingIPs []int64   `json:"floating_ips"`
		Firewalls   []any     `json:"firewalls"`
	} `json:"public_net"`
	PrivateNet []any             `json:"private_net"`
	Labels     map[string]string `json:"labels"`
	Locked     bool              `json:"locked"`
	Protection struct {
		Delete  bool `json:"delete"`
		Rebuild bool `json:"rebuild"`
	} `json:"protection"`
	Volumes       []int64 `json:"volumes"`
	LoadBalancers []int64 `json:"load_balancers"`
}

func (srv *server) json() serverJSON {
	var j serverJSON
	j.ID, j.Name, j.Status, j.Created = srv.id, srv.name, "running", srv.created.Format(time.RFC3339)
	j.PublicNet.FloatingIPs, j.PublicNet.Firewalls = []int64{}, []any{}
	j.PrivateNet, j.Labels, j.Volumes, j.LoadBalancers = []any{}, map[string]string{}, []int64{}, []int64{}
	if p := srv.v4; p != nil {
		j.PublicNet.IPv4 = &ipv4JSON{ID: p.id, IP: p.v4.String(), DNSPtr: p.ptr[p.v4]}
	}
	if p := srv.v6; p != nil {
		j.PublicNet.IPv6 = &ipv6JSON{ID: p.id, IP: p.v6.String(), DNSPtr: p.ptrList()}
	}
	return j
}

type primaryIPJSON struct {
	ID           int64             `json:"id"`
	Name         string            `json:"name"`
	IP           string            `json:"ip"`
	Type         string            `json:"type"`
	DNSPtr       []ptrJSON         `json:"dns_ptr"`
	AssigneeID   *int64            `json:"assignee_id"`
	AssigneeType string            `json:"assignee_type"`
	AutoDelete   bool              `json:"auto_delete"`
	Blocked      bool              `json:"blocked"`
	Created      string            `json:"created"`
	Labels       map[string]string `json:"labels"`
	Protection   struct {
		Delete bool `json:"delete"`
	} `json:"protection"`
}

func (p *primaryIP) json() primaryIPJSON {
	j := primaryIPJSON{ID: p.id, Name: p.name, AssigneeType: "server", Created: p.created.Format(time.RFC3339), Labels: map[string]string{}}
	if p.assignee != 0 {
		id := p.assignee
		j.AssigneeID = &id
	}
	if p.v4.IsValid() {
		j.Type, j.IP = "ipv4", p.v4.String()
		j.DNSPtr = []ptrJSON{{IP: p.v4.String(), DNSPtr: p.ptr[p.v4]}}
	} else {
		j.Type, j.IP, j.DNSPtr = "ipv6", p.v6.String(), p.ptrList()
	}
	return j
}

type actionJSON struct {
	ID        int64         `json:"id"`
	Command   string        `json:"command"`
	Status    string        `json:"status"`
	Progress  int           `json:"progress"`
	Started   string        `json:"started"`
	Finished  *string       `json:"finished"`
	Resources []resourceRef `json:"resources"`
	Error     *actionError  `json:"error"`
}

func (a *action) json() actionJSON {
	j := actionJSON{ID: a.id, Command: a.command, Status: a.status, Started: a.started.Format(time.RFC3339), Resources: a.resources, Error: a.err}
	if a.finished != nil {
		f := a.finished.Format(time.RFC3339)
		j.Finished = &f
		j.Progress = 100
	}
	return j
}

// read counts a read of a and completes it once it was read actionPolls
// times, applying its change.
func (s *Server) read(a *action) {
	a.reads++
	if a.status == "running" && a.reads >= s.actionPolls {
		s.complete(a)
	}
}

func (s *Server) complete(a *action) {
	now := time.Now().UTC()
	a.finished = &now
	if a.err != nil {
		a.status = "error"
		return
	}
	a.status = "success"
	if a.apply != nil {
		a.apply()
	}
}

// ---- handlers ----

func pathID(w http.ResponseWriter, r *http.Request, what string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s with ID '%s' not found", what, r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func (s *Server) findServer(w http.ResponseWriter, r *http.Request) *server {
	id, ok := pathID(w, r, "server")
	if !ok {
		return nil
	}
	for _, srv := range s.servers {
		if srv.id == id {
			return srv
		}
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("server with ID '%d' not found", id))
	return nil
}

func (s *Server) findPrimaryIP(w http.ResponseWriter, r *http.Request) *primaryIP {
	id, ok := pathID(w, r, "primary_ip")
	if !ok {
		return nil
	}
	for _, p := range s.ips {
		if p.id == id {
			return p
		}
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("primary_ip with ID '%d' not found", id))
	return nil
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.URL.Query().Get("name")
	var all []serverJSON
	for _, srv := range s.servers {
		if name == "" || srv.name == name {
			all = append(all, srv.json())
		}
	}
	page, meta, ok := paginate(w, r, all)
	if !ok {
		return
	}
	if page == nil {
		page = []serverJSON{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"servers": page, "meta": meta})
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if srv := s.findServer(w, r); srv != nil {
		writeJSON(w, http.StatusOK, map[string]any{"server": srv.json()})
	}
}

func (s *Server) listPrimaryIPs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	name, ip := q.Get("name"), q.Get("ip")
	var all []primaryIPJSON
	for _, p := range s.ips {
		j := p.json()
		if (name != "" && p.name != name) || (ip != "" && j.IP != ip) {
			continue
		}
		all = append(all, j)
	}
	page, meta, ok := paginate(w, r, all)
	if !ok {
		return
	}
	if page == nil {
		page = []primaryIPJSON{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"primary_ips": page, "meta": meta})
}

func (s *Server) getPrimaryIP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.findPrimaryIP(w, r); p != nil {
		writeJSON(w, http.StatusOK, map[string]any{"primary_ip": p.json()})
	}
}

// validPTR reports whether h is a host name Hetzner accepts.
func validPTR(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 || !strings.Contains(h, ".") {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// changePtr validates a change_dns_ptr request against the Primary IPs of
// the resource and starts the action.
func (s *Server) changePtr(w http.ResponseWriter, r *http.Request, ref resourceRef, ips []*primaryIP) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var in struct {
		IP     *string `json:"ip"`
		DNSPtr *string `json:"dns_ptr"`
	}
	if err != nil || json.Unmarshal(b, &in) != nil {
		writeError(w, http.StatusBadRequest, "json_error", "invalid JSON in request body")
		return
	}
	if in.IP == nil {
		invalidField(w, "ip", "Missing data for required field.")
		return
	}
	a, err := netip.ParseAddr(*in.IP)
	if err != nil {
		invalidField(w, "ip", "Not a valid IP address.")
		return
	}
	var target *primaryIP
	for _, p := range ips {
		if p != nil && p.holds(a) {
			target = p
		}
	}
	if target == nil {
		invalidField(w, "ip", fmt.Sprintf("IP %s is not assigned to this %s", a, ref.Type))
		return
	}
	if in.DNSPtr != nil && !validPTR(*in.DNSPtr) {
		invalidField(w, "dns_ptr", "Not a valid hostname.")
		return
	}
	s.nextID++
	act := &action{id: s.nextID, command: "change_dns_ptr", status: "running", resources: []resourceRef{ref}, started: time.Now().UTC()}
	act.err, s.failNext = s.failNext, nil
	act.apply = func() {
		switch {
		case in.DNSPtr != nil:
			target.ptr[a] = *in.DNSPtr
		case a.Is4():
			target.ptr[a] = DefaultPTR(a)
		default:
			delete(target.ptr, a)
		}
		if f := s.onPTR; f != nil {
			ptr := target.ptr[a]
			// complete runs under s.mu: publish once it is released,
			// before the response that shows the action finished.
			s.published = append(s.published, func() { f(a, ptr) })
		}
	}
	s.actions[act.id] = act
	if s.actionPolls <= 0 {
		s.complete(act)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"action": act.json()})
}

func (s *Server) changeServerPtr(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if srv := s.findServer(w, r); srv != nil {
		s.changePtr(w, r, resourceRef{ID: srv.id, Type: "server"}, []*primaryIP{srv.v4, srv.v6})
	}
}

func (s *Server) changePrimaryIPPtr(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.findPrimaryIP(w, r); p != nil {
		s.changePtr(w, r, resourceRef{ID: p.id, Type: "primary_ip"}, []*primaryIP{p})
	}
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	if len(q["id"]) == 0 {
		invalidField(w, "id", "at least one id is required")
		return
	}
	var all []actionJSON
	for _, v := range q["id"] {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			invalidField(w, "id", "Not a valid integer.")
			return
		}
		if a := s.actions[id]; a != nil {
			s.read(a)
			all = append(all, a.json())
		}
	}
	page, meta, ok := paginate(w, r, all)
	if !ok {
		return
	}
	if page == nil {
		page = []actionJSON{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"actions": page, "meta": meta})
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := pathID(w, r, "action")
	if !ok {
		return
	}
	a := s.actions[id]
	if a == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("action with ID '%d' not found", id))
		return
	}
	s.read(a)
	writeJSON(w, http.StatusOK, map[string]any{"action": a.json()})
}
