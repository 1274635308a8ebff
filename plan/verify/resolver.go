package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/plan/dnsclient"
)

// Resolver answers DNS questions. A response with rcode NOERROR or NXDOMAIN
// is returned as is; any other rcode, or no answer, is an error.
type Resolver interface {
	Query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error)
}

// DNSClient is the Resolver that asks DNS servers (package dnsclient):
// Servers in order until one answers, over UDP with a TCP retry on
// truncation, interrupted when the context ends.
type DNSClient = dnsclient.Client

var _ Resolver = (*DNSClient)(nil)

// SystemResolver returns a recursive DNSClient on the name servers of
// /etc/resolv.conf.
func SystemResolver() (*DNSClient, error) {
	cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("read resolver configuration: %w", err)
	}
	c := &DNSClient{Recurse: true}
	for _, s := range cc.Servers {
		c.Servers = append(c.Servers, net.JoinHostPort(s, cc.Port))
	}
	if len(c.Servers) == 0 {
		return nil, errors.New("read resolver configuration: no nameserver in /etc/resolv.conf")
	}
	return c, nil
}

// publicResolvers are well-known public recursive resolvers, which most
// DNSBLs (Spamhaus first) refuse to answer.
var publicResolvers = []string{
	"8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
	"1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001",
	"9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",
	"208.67.222.222", "208.67.220.220", "94.140.14.14", "94.140.15.15",
	"76.76.2.0", "76.76.10.0", "185.228.168.9", "64.6.64.6", "64.6.65.6",
}

// publicServer returns the first well-known public resolver among a
// DNSClient's servers, or "".
func publicServer(r Resolver) string {
	c, ok := r.(*DNSClient)
	if !ok {
		return ""
	}
	for _, s := range c.Servers {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			host = s
		}
		if slices.Contains(publicResolvers, host) {
			return host
		}
	}
	return ""
}

// lookup returns the records of type qtype owned by name in the answer;
// NXDOMAIN and NODATA give none and no error.
func lookup(ctx context.Context, r Resolver, name string, qtype uint16) ([]mdns.RR, error) {
	m, err := r.Query(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	return answers(m, name, qtype), nil
}

// answers picks from m the records of qtype, following CNAMEs from name.
func answers(m *mdns.Msg, name string, qtype uint16) []mdns.RR {
	owner := strings.ToLower(mdns.Fqdn(name))
	var out []mdns.RR
	for range 8 {
		var next string
		for _, rr := range m.Answer {
			h := rr.Header()
			if strings.ToLower(h.Name) != owner {
				continue
			}
			if h.Rrtype == qtype {
				out = append(out, rr)
			} else if c, ok := rr.(*mdns.CNAME); ok && qtype != mdns.TypeCNAME {
				next = strings.ToLower(c.Target)
			}
		}
		if len(out) > 0 || next == "" {
			break
		}
		owner = next
	}
	return out
}

func lookupTXT(ctx context.Context, r Resolver, name string) ([]string, error) {
	rrs, err := lookup(ctx, r, name, mdns.TypeTXT)
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*mdns.TXT).Txt, ""))
	}
	return out, err
}

// lookupIPs returns the A (or AAAA when v6) addresses of name.
func lookupIPs(ctx context.Context, r Resolver, name string, v6 bool) ([]netip.Addr, error) {
	qt := mdns.TypeA
	if v6 {
		qt = mdns.TypeAAAA
	}
	rrs, err := lookup(ctx, r, name, qt)
	var out []netip.Addr
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *mdns.A:
			ip = rr.A
		case *mdns.AAAA:
			ip = rr.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, err
}

// withPrefix returns the records starting with prefix followed by a space
// or the end (case-insensitive), as RFC 7208 section 4.5 selects "v=spf1".
func withPrefix(txts []string, prefix string) []string {
	var out []string
	for _, t := range txts {
		if len(t) >= len(prefix) && strings.EqualFold(t[:len(prefix)], prefix) &&
			(len(t) == len(prefix) || t[len(prefix)] == ' ' || t[len(prefix)] == ';') {
			out = append(out, t)
		}
	}
	return out
}

// NameServer is one authoritative server of a zone.
type NameServer struct {
	Name string // host name, e.g. ns1.example.org
	Addr string // host:port dialled
}

func (n NameServer) String() string {
	if n.Name == "" {
		return n.Addr
	}
	return n.Name
}

// nameservers returns the authoritative servers of zone.
func (r *runner) nameservers(ctx context.Context, zone string) ([]NameServer, error) {
	if r.o.Nameservers != nil {
		return r.o.Nameservers(ctx, zone)
	}
	return FindNameservers(ctx, r.o.Resolver, r.o.Addresses, zone)
}

// FindNameservers returns the authoritative servers of zone: the names of
// its NS RRset, asked of the recursive resolver res, sorted, each at the
// addresses entry "name:53" (host names compare case-blind) or else at
// each of its A and AAAA addresses, port 53. A name without an address is
// returned with an empty Addr (the caller reports it, or asks again
// later). It fails when the NS query fails or finds no NS record.
func FindNameservers(ctx context.Context, res Resolver, addresses map[string]string, zone string) ([]NameServer, error) {
	zone = strings.TrimSuffix(zone, ".")
	rrs, err := lookup(ctx, res, zone, mdns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("look up NS of %s: %w", zone, err)
	}
	var names []string
	for _, rr := range rrs {
		names = append(names, strings.TrimSuffix(strings.ToLower(rr.(*mdns.NS).Ns), "."))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("look up NS of %s: no NS record", zone)
	}
	var out []NameServer
	for _, n := range names {
		if a, ok := addressOf(addresses, net.JoinHostPort(n, "53")); ok {
			out = append(out, NameServer{Name: n, Addr: a})
			continue
		}
		var ips []netip.Addr
		for _, v6 := range []bool{false, true} {
			got, _ := lookupIPs(ctx, res, n, v6)
			ips = append(ips, got...)
		}
		if len(ips) == 0 {
			out = append(out, NameServer{Name: n})
		}
		for _, ip := range ips {
			name := n
			if len(ips) > 1 {
				name = n + " (" + ip.String() + ")"
			}
			out = append(out, NameServer{Name: name, Addr: netip.AddrPortFrom(ip, 53).String()})
		}
	}
	return out, nil
}

// addressOf returns the addresses entry for key ("host:port"), the host
// compared case-blind.
func addressOf(addresses map[string]string, key string) (string, bool) {
	if a, ok := addresses[key]; ok {
		return a, true
	}
	for k, a := range addresses {
		if strings.EqualFold(k, key) {
			return a, true
		}
	}
	return "", false
}

// zoneOf returns the zone that holds name: the owner of the SOA in the
// answer or authority section of a SOA query.
func (r *runner) zoneOf(ctx context.Context, name string) (string, error) {
	r.zmu.Lock()
	if z, ok := r.zones[name]; ok {
		r.zmu.Unlock()
		return z.zone, z.err
	}
	r.zmu.Unlock()
	zone, err := func() (string, error) {
		m, err := r.o.Resolver.Query(ctx, name, mdns.TypeSOA)
		if err != nil {
			return "", fmt.Errorf("find the zone of %s: %w", name, err)
		}
		for _, sec := range [][]mdns.RR{m.Answer, m.Ns} {
			for _, rr := range sec {
				if soa, ok := rr.(*mdns.SOA); ok {
					return strings.TrimSuffix(strings.ToLower(soa.Hdr.Name), "."), nil
				}
			}
		}
		return "", fmt.Errorf("find the zone of %s: no SOA in the answer", name)
	}()
	if ctx.Err() == nil {
		r.zmu.Lock()
		r.zones[name] = zoneAnswer{zone, err}
		r.zmu.Unlock()
	}
	return zone, err
}

// dial connects to host:port: to the Options.Addresses entry when there
// is one; else to the configured IPs of the server named host (the server
// itself is checked, even before its DNS is published); else to the
// addresses Resolver gives for host.
func (r *runner) dial(ctx context.Context, host string, port int) (net.Conn, error) {
	key := net.JoinHostPort(host, fmt.Sprint(port))
	var targets []string
	if a, ok := r.o.Addresses[key]; ok {
		targets = []string{a}
	} else {
		var ips []netip.Addr
		for _, s := range r.cfg.Servers {
			if s.Hostname == host {
				ips = serverIPs(s)
			}
		}
		if len(ips) == 0 {
			for _, v6 := range []bool{false, true} {
				got, _ := lookupIPs(ctx, r.o.Resolver, host, v6)
				ips = append(ips, got...)
			}
		}
		for _, ip := range ips {
			targets = append(targets, netip.AddrPortFrom(ip, uint16(port)).String())
		}
		if len(targets) == 0 {
			targets = []string{key}
		}
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	var errs []error
	for _, t := range targets {
		c, err := d.DialContext(ctx, "tcp", t)
		if err == nil {
			if dl, ok := ctx.Deadline(); ok {
				c.SetDeadline(dl)
			}
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connect to %s: %w", key, errors.Join(errs...))
}

// dialAddr is dial for a "host:port" string (HTTP transports).
func (r *runner) dialAddr(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var p int
	fmt.Sscan(port, &p)
	return r.dial(ctx, host, p)
}

// spfResolver adapts a Resolver to blitiri.com.ar/go/spf's DNSResolver.
type spfResolver struct{ r Resolver }

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func dnsErr(name string, err error) error {
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

func (s spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := lookupTXT(ctx, s.r, name)
	if err != nil {
		return nil, dnsErr(name, err)
	}
	if len(txts) == 0 {
		return nil, notFound(name)
	}
	return txts, nil
}

func (s spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := lookup(ctx, s.r, name, mdns.TypeMX)
	if err != nil {
		return nil, dnsErr(name, err)
	}
	if len(rrs) == 0 {
		return nil, notFound(name)
	}
	var out []*net.MX
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

func (s spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	for _, v6 := range []bool{false, true} {
		ips, err := lookupIPs(ctx, s.r, host, v6)
		if err != nil {
			return nil, dnsErr(host, err)
		}
		for _, ip := range ips {
			out = append(out, net.IPAddr{IP: net.IP(ip.AsSlice())})
		}
	}
	if len(out) == 0 {
		return nil, notFound(host)
	}
	return out, nil
}

func (s spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := mdns.ReverseAddr(addr)
	if err != nil {
		return nil, err
	}
	rrs, err := lookup(ctx, s.r, rev, mdns.TypePTR)
	if err != nil {
		return nil, dnsErr(addr, err)
	}
	if len(rrs) == 0 {
		return nil, notFound(addr)
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*mdns.PTR).Ptr)
	}
	return out, nil
}
