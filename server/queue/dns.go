package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Resolver is the DNS the queue needs; *DNS and *net.Resolver implement it.
// A name that does not exist (or has no record of the type) is reported as a
// *net.DNSError with IsNotFound set; a temporary problem with IsTemporary.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// DNS is a stub resolver that sends queries (RFC 1035) with
// github.com/miekg/dns to configured recursive servers, or to an
// authoritative server in tests. Its methods have the shape of
// net.Resolver's, so it serves the queue, SPF (blitiri.com.ar/go/spf's
// DNSResolver), DKIM and DMARC lookups alike.
type DNS struct {
	// Servers are "host:port" addresses, tried in order; "tcp://host:port"
	// asks that server over TCP only (RFC 7766), e.g. through a tunnel
	// that carries no UDP.
	Servers []string
	// Timeout per query; default 5s.
	Timeout time.Duration
}

// NewDNS returns a resolver asking servers ("host:port"); with none, the
// nameservers of /etc/resolv.conf, or 127.0.0.1:53 when it names none (as
// the C library does).
func NewDNS(servers ...string) (*DNS, error) {
	if len(servers) == 0 {
		cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("read resolver config: %w", err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			// As the C library does: no nameserver line means the local one.
			servers = []string{"127.0.0.1:53"}
		}
	}
	return &DNS{Servers: servers}, nil
}

func (d *DNS) exchange(ctx context.Context, name string, qtype uint16) ([]mdns.RR, error) {
	qname := mdns.Fqdn(name)
	m := new(mdns.Msg)
	m.SetQuestion(qname, qtype)
	m.SetEdns0(4096, false)
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	derr := &net.DNSError{Name: name}
	for _, srv := range d.Servers {
		c := &mdns.Client{Timeout: timeout}
		if addr, ok := strings.CutPrefix(srv, "tcp://"); ok {
			c.Net, srv = "tcp", addr
		}
		r, _, err := c.ExchangeContext(ctx, m, srv)
		if err == nil && r.Truncated {
			c.Net = "tcp"
			r, _, err = c.ExchangeContext(ctx, m, srv)
		}
		if err != nil {
			derr.Err, derr.Server, derr.IsTemporary = err.Error(), srv, true
			var ne net.Error
			derr.IsTimeout = errors.As(err, &ne) && ne.Timeout()
			continue
		}
		switch r.Rcode {
		case mdns.RcodeSuccess:
		case mdns.RcodeNameError:
			return nil, &net.DNSError{Err: "no such host", Name: name, Server: srv, IsNotFound: true}
		default:
			derr.Err, derr.Server, derr.IsTemporary = "server misbehaving: "+mdns.RcodeToString[r.Rcode], srv, true
			continue
		}
		var out []mdns.RR
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == qtype {
				out = append(out, rr)
			}
		}
		if len(out) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: name, Server: srv, IsNotFound: true}
		}
		return out, nil
	}
	if derr.Err == "" {
		derr.Err = "no DNS server configured"
	}
	return nil, derr
}

// LookupMX returns the MX records of name, sorted by preference. A null MX
// (RFC 7505) has Host ".".
func (d *DNS) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := d.exchange(ctx, name, mdns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	sortMX(out)
	return out, nil
}

// LookupIPAddr returns the AAAA and A addresses of host.
func (d *DNS) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IPAddr{{IP: ip}}, nil
	}
	var out []net.IPAddr
	var firstErr error
	for _, t := range []uint16{mdns.TypeAAAA, mdns.TypeA} {
		rrs, err := d.exchange(ctx, host, t)
		if err != nil {
			var de *net.DNSError
			if firstErr == nil || (errors.As(firstErr, &de) && de.IsNotFound) {
				firstErr = err
			}
			continue
		}
		for _, rr := range rrs {
			switch r := rr.(type) {
			case *mdns.AAAA:
				out = append(out, net.IPAddr{IP: r.AAAA})
			case *mdns.A:
				out = append(out, net.IPAddr{IP: r.A})
			}
		}
	}
	if len(out) == 0 {
		return nil, firstErr
	}
	return out, nil
}

// LookupHost returns the addresses of host as strings.
func (d *DNS) LookupHost(ctx context.Context, host string) ([]string, error) {
	ips, err := d.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.IP.String()
	}
	return out, nil
}

// LookupTXT returns the TXT records of name, each one's strings joined.
func (d *DNS) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := d.exchange(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*mdns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupAddr returns the PTR names of an IP address.
func (d *DNS) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := mdns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := d.exchange(ctx, rev, mdns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*mdns.PTR).Ptr)
	}
	return out, nil
}

func sortMX(mx []*net.MX) {
	for i := 1; i < len(mx); i++ {
		for j := i; j > 0 && mx[j].Pref < mx[j-1].Pref; j-- {
			mx[j], mx[j-1] = mx[j-1], mx[j]
		}
	}
}

// notFound reports whether err says that a name or record does not exist.
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
