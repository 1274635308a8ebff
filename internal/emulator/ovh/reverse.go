package ovh

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// The /ip endpoints: an account holds IP blocks (a /32 for a VPS address,
// a /64 for its IPv6, larger failover blocks) and sets the reverse DNS of
// single addresses within them:
//
//	GET    /ip                              blocks, filtered by ?ip= (equals or contains)
//	GET    /ip/{block}/reverse              addresses of the block with a reverse
//	POST   /ip/{block}/reverse              {"ipReverse": ip, "reverse": "host."}
//	GET    /ip/{block}/reverse/{ipReverse}  {"ipReverse": ip, "reverse": "host."}
//	DELETE /ip/{block}/reverse/{ipReverse}
//
// The block is a path segment, so its '/' is escaped (1.2.3.4%2F32). Like
// OVH, the POST is refused with HTTP 400 while the hostname does not resolve
// to the address (see SetForwardCheck, AddForward, SetResolver), and the
// reverse is stored with a trailing dot.

// ipState is the /ip part of the emulator, guarded by Server.mu.
type ipState struct {
	blocks []*ipBlock
	// noForwardCheck disables the forward resolution check of POST.
	noForwardCheck bool
	// forwards holds the names marked as resolving, lower case without
	// trailing dot.
	forwards map[string][]netip.Addr
	resolver func(host string) []netip.Addr
}

type ipBlock struct {
	prefix   netip.Prefix
	reverses map[netip.Addr]string
}

// NotResolvingMessage is the message of OVH's HTTP 400 answer to a reverse
// whose hostname does not resolve to the address.
func NotResolvingMessage(ip netip.Addr, reverse string) string {
	return fmt.Sprintf("Cannot check if %s resolves to %s", ip, reverse)
}

func (s *Server) handleReverse() {
	s.Handle("GET /ip", s.listIPs)
	s.Handle("GET /ip/{block}/reverse", s.listReverses)
	s.Handle("POST /ip/{block}/reverse", s.createReverse)
	s.Handle("GET /ip/{block}/reverse/{ipReverse}", s.getReverse)
	s.Handle("DELETE /ip/{block}/reverse/{ipReverse}", s.deleteReverse)
}

// AddIPBlock gives the account an IP block ("203.0.113.10/32",
// "2001:db8:1:2::/64"; a bare address is a /32 or /128). It panics on a
// malformed block: it is a test helper.
func (s *Server) AddIPBlock(block string) {
	p, err := parseBlock(block)
	if err != nil {
		panic("ovh emulator: AddIPBlock: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findBlock(p) == nil {
		s.ip.blocks = append(s.ip.blocks, &ipBlock{prefix: p, reverses: map[netip.Addr]string{}})
	}
}

// Reverse returns the reverse of ip as stored (with its trailing dot), or ""
// when none is set.
func (s *Server) Reverse(ip string) string {
	a := netip.MustParseAddr(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.blockOf(a); b != nil {
		return b.reverses[a]
	}
	return ""
}

// SetReverse stores a reverse as the web UI would, without any check. It
// panics when no block of the account holds ip.
func (s *Server) SetReverse(ip, reverse string) {
	a := netip.MustParseAddr(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blockOf(a)
	if b == nil {
		panic("ovh emulator: SetReverse of an address outside the account's blocks: " + ip)
	}
	b.reverses[a] = reverse
}

// SetForwardCheck turns the forward resolution check of POST
// /ip/{block}/reverse on (the default, as OVH does) or off.
func (s *Server) SetForwardCheck(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ip.noForwardCheck = !on
}

// AddForward marks host as resolving to ips, as if its A/AAAA records were
// served: POSTs of a reverse naming host for one of ips are then accepted.
func (s *Server) AddForward(host string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ip.forwards == nil {
		s.ip.forwards = map[string][]netip.Addr{}
	}
	h := normName(host)
	for _, ip := range ips {
		s.ip.forwards[h] = append(s.ip.forwards[h], netip.MustParseAddr(ip))
	}
}

// RemoveForward forgets what AddForward said about host.
func (s *Server) RemoveForward(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ip.forwards, normName(host))
}

// SetResolver replaces the forward check's resolution: f returns the
// addresses host (lower case, no trailing dot) resolves to. It is called
// without the emulator's lock held. By default a host resolves to the
// addresses given with AddForward and to the A/AAAA records of the zones
// the emulator holds.
func (s *Server) SetResolver(f func(host string) []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ip.resolver = f
}

func parseBlock(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (s *Server) findBlock(p netip.Prefix) *ipBlock {
	for _, b := range s.ip.blocks {
		if b.prefix == p {
			return b
		}
	}
	return nil
}

// blockOf returns the smallest block holding a.
func (s *Server) blockOf(a netip.Addr) *ipBlock {
	var best *ipBlock
	for _, b := range s.ip.blocks {
		if b.prefix.Contains(a) && (best == nil || b.prefix.Bits() > best.prefix.Bits()) {
			best = b
		}
	}
	return best
}

// resolvesLocked returns the addresses host resolves to without a resolver
// hook: AddForward's and the A/AAAA records of the emulator's zones.
func (s *Server) resolvesLocked(host string) []netip.Addr {
	out := slices.Clone(s.ip.forwards[host])
	for _, z := range s.zones {
		sub, ok := strings.CutSuffix(host, "."+z.name)
		if !ok {
			if host != z.name {
				continue
			}
			sub = ""
		}
		for _, r := range z.records {
			if r.SubDomain != sub || (r.FieldType != "A" && r.FieldType != "AAAA") {
				continue
			}
			if a, err := netip.ParseAddr(r.Target); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// blockFor finds the path's block, answering 404 when the account has none.
func (s *Server) blockFor(w http.ResponseWriter, r *http.Request) *ipBlock {
	v := r.PathValue("block")
	p, err := parseBlock(v)
	var b *ipBlock
	if err == nil {
		b = s.findBlock(p)
	}
	if b == nil {
		notFound(w, fmt.Sprintf("The requested object (ip = %s) does not exist", v))
	}
	return b
}

func (s *Server) listIPs(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	filter := r.URL.Query().Get("ip")
	var fp netip.Prefix
	if filter != "" {
		var err error
		if fp, err = parseBlock(filter); err != nil {
			badRequest(w, fmt.Sprintf("Invalid value for ip: %q is not a valid IP or block", filter))
			return
		}
	}
	out := []string{}
	for _, b := range s.ip.blocks {
		// "contains or equals": blocks holding the filter, or inside it.
		if filter != "" && !(b.prefix.Bits() <= fp.Bits() && b.prefix.Contains(fp.Addr())) && !(fp.Bits() <= b.prefix.Bits() && fp.Contains(b.prefix.Addr())) {
			continue
		}
		out = append(out, b.prefix.String())
	}
	writeJSON(w, out)
}

func (s *Server) listReverses(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blockFor(w, r)
	if b == nil {
		return
	}
	addrs := make([]netip.Addr, 0, len(b.reverses))
	for a := range b.reverses {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	writeJSON(w, out)
}

type reverseJSON struct {
	IPReverse string `json:"ipReverse"`
	Reverse   string `json:"reverse"`
}

// validReverse reports whether h (without trailing dot) is a host name.
func validReverse(h string) bool {
	if h == "" || len(h) > 253 {
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

func (s *Server) createReverse(w http.ResponseWriter, r *http.Request, body []byte) {
	var in reverseJSON
	if err := json.Unmarshal(body, &in); err != nil {
		badRequest(w, "Invalid JSON body: "+err.Error())
		return
	}
	s.mu.Lock()
	b := s.blockFor(w, r)
	if b == nil {
		s.mu.Unlock()
		return
	}
	a, err := netip.ParseAddr(in.IPReverse)
	if err != nil {
		s.mu.Unlock()
		badRequest(w, fmt.Sprintf("Invalid value for ipReverse: %q is not a valid IP", in.IPReverse))
		return
	}
	if !b.prefix.Contains(a) {
		s.mu.Unlock()
		badRequest(w, fmt.Sprintf("IP %s is not in block %s", a, b.prefix))
		return
	}
	host := strings.TrimSuffix(in.Reverse, ".")
	if !validReverse(host) {
		s.mu.Unlock()
		badRequest(w, fmt.Sprintf("Invalid reverse: %q is not a valid host name", in.Reverse))
		return
	}
	stored := strings.ToLower(host) + "."
	check, hook := !s.ip.noForwardCheck, s.ip.resolver
	var resolved []netip.Addr
	if check && hook == nil {
		resolved = s.resolvesLocked(strings.ToLower(host))
	}
	s.mu.Unlock()
	if check && hook != nil {
		resolved = hook(strings.ToLower(host))
	}
	if check && !slices.Contains(resolved, a) {
		badRequest(w, NotResolvingMessage(a, stored))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b.reverses[a] = stored
	writeJSON(w, reverseJSON{IPReverse: a.String(), Reverse: stored})
}

// reverseFor finds the path's block and address, answering 404 when either
// does not exist.
func (s *Server) reverseFor(w http.ResponseWriter, r *http.Request) (*ipBlock, netip.Addr, bool) {
	b := s.blockFor(w, r)
	if b == nil {
		return nil, netip.Addr{}, false
	}
	v := r.PathValue("ipReverse")
	a, err := netip.ParseAddr(v)
	if err == nil {
		if _, ok := b.reverses[a]; ok {
			return b, a, true
		}
	}
	notFound(w, fmt.Sprintf("The requested object (ipReverse = %s) does not exist", v))
	return nil, netip.Addr{}, false
}

func (s *Server) getReverse(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, a, ok := s.reverseFor(w, r); ok {
		writeJSON(w, reverseJSON{IPReverse: a.String(), Reverse: b.reverses[a]})
	}
}

func (s *Server) deleteReverse(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, a, ok := s.reverseFor(w, r); ok {
		delete(b.reverses, a)
		writeJSON(w, nil)
	}
}
