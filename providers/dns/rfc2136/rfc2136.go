// Package rfc2136 is a DNS provider for any authoritative server accepting
// RFC 2136 dynamic updates signed with RFC 8945 TSIG (BIND, Knot, PowerDNS).
// Records are read with an RFC 5936 zone transfer (AXFR) through
// github.com/libdns/rfc2136; each Apply is one UPDATE message, so an RRset
// change is atomic, and so is ApplyZone, the changes of a whole zone.
//
// Attributes: server (host:port, port 53 by default), tsig_name, tsig_alg
// (default hmac-sha256), tsig_key (base64 secret). The key needs the update
// and transfer rights on the zone.
package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/libdns/libdns"
	librfc2136 "github.com/libdns/rfc2136"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/providers/dns"
)

// Kind is the registered kind name.
const Kind = "rfc2136"

func init() {
	dns.Register(dns.Kind{
		Name: Kind,
		Capabilities: dns.Capabilities{
			DNS:    true,
			SRV:    true,
			Atomic: true,
		},
		Attributes: []dns.Attribute{
			{Name: "server", Required: true, Doc: "primary server address, host:port"},
			{Name: "tsig_name", Required: true, Doc: "TSIG key name"},
			{Name: "tsig_alg", Doc: "TSIG algorithm, default hmac-sha256"},
			{Name: "tsig_key", Required: true, Sensitive: true, Doc: "TSIG secret, base64"},
			dns.TimeoutAttribute(30 * time.Second),
		},
		New: func(cfg dns.Config) (dns.Provider, error) {
			timeout, err := dns.ParseTimeout(cfg.Get("timeout", ""), 30*time.Second)
			if err != nil {
				return nil, err
			}
			p, err := New(cfg.Get("server", ""), cfg.Get("tsig_name", ""), cfg.Get("tsig_alg", "hmac-sha256"), cfg.Get("tsig_key", ""), cfg.Log())
			if err != nil {
				return nil, err
			}
			p.Timeout = timeout
			return p, nil
		},
	})
}

// Provider talks RFC 2136 to one server.
type Provider struct {
	server, keyName, keyAlg, key string
	// Timeout bounds each exchange (default 30s).
	Timeout time.Duration
	log     *slog.Logger
}

var (
	_ dns.Provider    = (*Provider)(nil)
	_ dns.ZoneApplier = (*Provider)(nil)
)

var algorithms = map[string]string{
	"hmac-md5": mdns.HmacMD5, "hmac-sha1": mdns.HmacSHA1, "hmac-sha224": mdns.HmacSHA224,
	"hmac-sha256": mdns.HmacSHA256, "hmac-sha384": mdns.HmacSHA384, "hmac-sha512": mdns.HmacSHA512,
}

// New returns a provider for server with the TSIG key.
func New(server, keyName, keyAlg, key string, log *slog.Logger) (*Provider, error) {
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	alg, ok := algorithms[strings.ToLower(strings.TrimSuffix(keyAlg, "."))]
	if !ok {
		return nil, fmt.Errorf("%w: rfc2136: unknown tsig_alg %q (use hmac-sha256 or hmac-sha512)", dns.ErrConfig, keyAlg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{server: server, keyName: mdns.Fqdn(keyName), keyAlg: alg, key: key, Timeout: 30 * time.Second, log: log}, nil
}

func (p *Provider) lib() *librfc2136.Provider {
	return &librfc2136.Provider{KeyName: p.keyName, KeyAlg: p.keyAlg, Key: p.key, Server: p.server}
}

// Records transfers the zone (AXFR) and returns its records without SOA,
// NS and DNSSEC records.
func (p *Provider) Records(ctx context.Context, zone string) ([]libdns.RR, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	recs, err := p.lib().GetRecords(ctx, zone)
	if err != nil {
		return nil, p.wrap(fmt.Sprintf("transfer zone %q", zone), err)
	}
	rrs := make([]libdns.RR, 0, len(recs))
	for _, r := range recs {
		rrs = append(rrs, r.RR())
	}
	return dns.Visible(rrs, zone), nil
}

// Apply sends one UPDATE that deletes each record of del (RFC 2136 section
// 2.5.4) and adds each record of add (section 2.5.1).
func (p *Provider) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	return p.ApplyZone(ctx, zone, []dns.SetEdit{{Del: del, Add: add}})
}

// maxUpdate bounds the size of one UPDATE message, below the 64 KiB a DNS
// message can have over TCP (RFC 1035 section 4.2.2), TSIG included.
const maxUpdate = 60 << 10

// ApplyZone sends the edits in one UPDATE message, each edit's deletes
// then its adds, which the server applies in order and atomically (RFC
// 2136 section 3.4.2). Edits too many for one message (60 KiB) go in
// several, each atomic, never splitting an edit.
func (p *Provider) ApplyZone(ctx context.Context, zone string, edits []dns.SetEdit) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	var m *mdns.Msg
	ndel, nadd := 0, 0
	for _, e := range edits {
		var rem, ins []mdns.RR
		for _, r := range e.Del {
			rr, err := dns.ToRR(r, zone)
			if err != nil {
				return fmt.Errorf("delete from zone %q: %w", zone, err)
			}
			rem = append(rem, rr)
		}
		for _, r := range e.Add {
			rr, err := dns.ToRR(r, zone)
			if err != nil {
				return fmt.Errorf("add to zone %q: %w", zone, err)
			}
			ins = append(ins, rr)
		}
		if len(rem) == 0 && len(ins) == 0 {
			continue
		}
		if m != nil && m.Len()+editLen(rem, ins) > maxUpdate {
			if err := p.update(ctx, zone, m, ndel, nadd); err != nil {
				return err
			}
			m, ndel, nadd = nil, 0, 0
		}
		if m == nil {
			m = new(mdns.Msg)
			m.SetUpdate(mdns.Fqdn(zone))
		}
		if len(rem) > 0 {
			m.Remove(rem)
		}
		if len(ins) > 0 {
			m.Insert(ins)
		}
		ndel, nadd = ndel+len(rem), nadd+len(ins)
	}
	if m == nil {
		return nil
	}
	return p.update(ctx, zone, m, ndel, nadd)
}

// editLen is about the wire size of an edit's records.
func editLen(rem, ins []mdns.RR) int {
	n := 0
	for _, rr := range slices.Concat(rem, ins) {
		n += mdns.Len(rr)
	}
	return n
}

// update signs and sends one UPDATE message.
func (p *Provider) update(ctx context.Context, zone string, m *mdns.Msg, ndel, nadd int) error {
	m.SetTsig(p.keyName, p.keyAlg, 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{p.keyName: p.key}, Timeout: p.Timeout}
	r, _, err := c.ExchangeContext(ctx, m, p.server)
	op := fmt.Sprintf("update zone %q", zone)
	if err != nil {
		return p.wrap(op, err)
	}
	if r.Rcode != mdns.RcodeSuccess {
		return p.rcodeError(op, r.Rcode)
	}
	p.log.DebugContext(ctx, "rfc2136 update", "zone", zone, "deleted", ndel, "added", nadd)
	return nil
}

func (p *Provider) rcodeError(op string, rcode int) error {
	name := mdns.RcodeToString[rcode]
	e := &dns.APIError{Provider: Kind, Op: op, Message: "server answered " + name}
	switch rcode {
	case mdns.RcodeNotAuth, mdns.RcodeRefused, mdns.RcodeBadSig, mdns.RcodeBadKey, mdns.RcodeBadTime:
		e.Status = 403
		e.Credential = "TSIG key " + p.keyName + " (tsig_name, tsig_key)"
		e.Permission = "the update and transfer rights on the zone in the server's ACL"
	}
	return e
}

func (p *Provider) wrap(op string, err error) error {
	msg := err.Error()
	e := &dns.APIError{Provider: Kind, Op: op + " at " + p.server, Err: err}
	switch {
	case errors.Is(err, mdns.ErrSig), errors.Is(err, mdns.ErrSecret), errors.Is(err, mdns.ErrKey), errors.Is(err, mdns.ErrAuth),
		strings.Contains(msg, "NOTAUTH"), strings.Contains(msg, "REFUSED"), strings.Contains(msg, "bad signature"):
		e.Status = 403
		e.Credential = "TSIG key " + p.keyName + " (tsig_name, tsig_key)"
		e.Permission = "the update and transfer rights on the zone in the server's ACL"
		e.Message = msg
	}
	return e
}
