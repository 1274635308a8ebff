// Package hetzner sets reverse DNS (PTR records, RFC 1035 section 3.5 and
// RFC 3596 section 2.5) of Hetzner Cloud servers and Primary IPs through the
// Hetzner Cloud API with github.com/hetznercloud/hcloud-go/v2.
//
// Attributes: token (an API token of the project, Read & Write to apply,
// Read for plan) and endpoint (default https://api.hetzner.cloud/v1, for
// tests). No environment variable is read.
//
// Each call lists the project's servers and finds the one whose public IPv4
// is the address or whose IPv6 /64 holds it; failing that, the Primary IPs
// (an unassigned one can carry a PTR too). Set runs the resource's
// change_dns_ptr action and waits until it has completed (polling the
// actions API); it does nothing when the PTR already has the value. An
// empty hostname resets the PTR: an IPv4 address goes back to Hetzner's
// default name (static.<...>.clients.your-server.de), an IPv6 entry is
// removed. Hetzner does not require the hostname to resolve first.
package hetzner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailctl/mailctl/providers/base"
	"github.com/mailctl/mailctl/providers/ptr"
)

// Kind is the registered kind name.
const Kind = "hetzner"

// DefaultTimeout bounds one API call, retries included.
const DefaultTimeout = 30 * time.Second

// DefaultEndpoint is the Hetzner Cloud API.
const DefaultEndpoint = "https://api.hetzner.cloud/v1"

func init() {
	ptr.Register(ptr.Kind{
		Name: Kind,
		Attributes: []ptr.Attribute{
			{Name: "token", Required: true, Sensitive: true, Doc: "Hetzner Cloud API token of the project (Read & Write), from the console's Security > API tokens"},
			{Name: "endpoint", Doc: "API URL (default " + DefaultEndpoint + ")"},
			base.TimeoutAttribute(DefaultTimeout),
		},
		New: func(cfg ptr.Config) (ptr.Provider, error) {
			timeout, err := base.ParseTimeout(cfg.Get("timeout", ""), DefaultTimeout, ptr.ErrConfig)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ptr.ErrConfig, err)
			}
			p, err := New(cfg.Get("token", ""), cfg.Get("endpoint", DefaultEndpoint), cfg.Log())
			if err != nil {
				return nil, err
			}
			p.SetOptions(base.HTTPOptions{Timeout: timeout}, 0)
			return p, nil
		},
	})
}

// Provider sets reverse DNS for the servers and Primary IPs of one Hetzner
// Cloud project.
type Provider struct {
	token, endpoint string
	log             *slog.Logger

	mu sync.Mutex
	c  *hcloud.Client
}

var _ ptr.Provider = (*Provider)(nil)

// DefaultPollInterval is the first wait between two polls of an action; it
// doubles up to ten times that.
const DefaultPollInterval = 500 * time.Millisecond

// New returns a provider for the project of token. It does no I/O.
func New(token, endpoint string, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	if !strings.HasPrefix(endpoint, "https://") && !strings.HasPrefix(endpoint, "http://") {
		return nil, fmt.Errorf("%w: hetzner: endpoint %q is not an http(s) URL", ptr.ErrConfig, endpoint)
	}
	p := &Provider{token: token, endpoint: endpoint, log: log}
	p.SetOptions(base.HTTPOptions{}, 0)
	return p, nil
}

// SetOptions replaces the HTTP retry (429, 5xx) and timeout settings and the
// first action poll interval (0 means DefaultPollInterval).
func (p *Provider) SetOptions(o base.HTTPOptions, poll time.Duration) {
	if o.Logger == nil {
		o.Logger = p.log
	}
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	c := hcloud.NewClient(
		hcloud.WithToken(p.token),
		hcloud.WithEndpoint(p.endpoint),
		hcloud.WithApplication("mailctl", ""),
		// Retries of 429 and 5xx happen in the transport, with the
		// project's back-off; hcloud-go's own would multiply them.
		hcloud.WithHTTPClient(base.NewHTTPClient(o)),
		hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 0}),
		hcloud.WithPollOpts(hcloud.PollOpts{BackoffFunc: hcloud.ExponentialBackoffWithOpts(hcloud.ExponentialBackoffOpts{
			Base: poll, Multiplier: 2, Cap: 10 * poll,
		})}),
	)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.c = c
}

func (p *Provider) client() *hcloud.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.c
}

// wrap turns hcloud-go errors into ptr.APIError naming the credential.
func wrap(op string, err error) error {
	var he hcloud.Error
	if !errors.As(err, &he) {
		if strings.Contains(err.Error(), "token contains invalid characters") {
			return &ptr.APIError{Provider: Kind, Op: op, Status: http.StatusUnauthorized, Credential: "token", Message: "it contains characters not allowed in an HTTP header", Err: err}
		}
		return &ptr.APIError{Provider: Kind, Op: op, Err: err}
	}
	e := &ptr.APIError{Provider: Kind, Op: op, Message: fmt.Sprintf("%s (%s)", he.Message, he.Code), Err: err,
		Credential: "token", Permission: "Read & Write (a Read token can only plan)"}
	if r := he.Response(); r != nil && r.Response != nil {
		e.Status = r.StatusCode
	}
	switch he.Code {
	case hcloud.ErrorCodeUnauthorized:
		e.Status = http.StatusUnauthorized
	case hcloud.ErrorCodeForbidden:
		e.Status = http.StatusForbidden
	case hcloud.ErrorCodeNotFound:
		e.Status = http.StatusNotFound
	}
	if d, ok := he.Details.(hcloud.ErrorDetailsInvalidInput); ok {
		for _, f := range d.Fields {
			e.Message += fmt.Sprintf("; %s: %s", f.Name, strings.Join(f.Messages, " "))
		}
	}
	return e
}

// target is the resource holding an address.
type target struct {
	server *hcloud.Server
	pip    *hcloud.PrimaryIP
}

func (t target) rdns() hcloud.RDNSSupporter {
	if t.server != nil {
		return t.server
	}
	return t.pip
}

func (t target) String() string {
	if t.server != nil {
		return fmt.Sprintf("server %q", t.server.Name)
	}
	return fmt.Sprintf("Primary IP %q", t.pip.Name)
}

// find returns the server, or else the Primary IP, holding ip.
func (p *Provider) find(ctx context.Context, c *hcloud.Client, op string, ip netip.Addr) (target, error) {
	nip := net.IP(ip.AsSlice())
	servers, err := c.Server.All(ctx)
	if err != nil {
		return target{}, wrap(op+": list servers", err)
	}
	for _, s := range servers {
		v4, v6 := s.PublicNet.IPv4, s.PublicNet.IPv6
		if (ip.Is4() && v4.IP.Equal(nip)) || (ip.Is6() && v6.Network != nil && v6.Network.Contains(nip)) {
			return target{server: s}, nil
		}
	}
	pips, err := c.PrimaryIP.All(ctx)
	if err != nil {
		return target{}, wrap(op+": list Primary IPs", err)
	}
	for _, pi := range pips {
		if (pi.Type == hcloud.PrimaryIPTypeIPv4 && pi.IP.Equal(nip)) || (pi.Network != nil && pi.Network.Contains(nip)) {
			return target{pip: pi}, nil
		}
	}
	return target{}, &ptr.APIError{Provider: Kind, Op: op, Message: "no server or Primary IP of this Hetzner Cloud project holds it", Err: ptr.ErrNotFound}
}

// current returns the PTR of ip on t, "" when none is set.
func current(t target, ip netip.Addr) string {
	h, err := t.rdns().GetDNSPtrForIP(net.IP(ip.AsSlice()))
	if err != nil {
		return ""
	}
	return ptr.Canonical(h)
}

// Get returns the PTR of ip, "" when none is set.
func (p *Provider) Get(ctx context.Context, ip netip.Addr) (string, error) {
	ip = ip.Unmap()
	t, err := p.find(ctx, p.client(), fmt.Sprintf("read the PTR of %s", ip), ip)
	if err != nil {
		return "", err
	}
	return current(t, ip), nil
}

// Set makes hostname the PTR of ip and waits for the action to complete; an
// empty hostname resets it.
func (p *Provider) Set(ctx context.Context, ip netip.Addr, hostname string) error {
	ip = ip.Unmap()
	host := ptr.Canonical(hostname)
	op := fmt.Sprintf("set the PTR of %s to %s", ip, host)
	if host == "" {
		op = fmt.Sprintf("reset the PTR of %s", ip)
	}
	if err := ptr.CheckHostname(host); err != nil {
		return &ptr.APIError{Provider: Kind, Op: op, Err: err}
	}
	c := p.client()
	t, err := p.find(ctx, c, op, ip)
	if err != nil {
		return err
	}
	cur := current(t, ip)
	if cur == host && (host != "" || ip.Is6()) {
		return nil
	}
	var val *string
	if host != "" {
		val = &host
	}
	// change_dns_ptr sets a value: sending it twice is harmless.
	action, _, err := c.RDNS.ChangeDNSPtr(base.Idempotent(ctx), t.rdns(), net.IP(ip.AsSlice()), val)
	if err != nil {
		return wrap(fmt.Sprintf("%s (on %s)", op, t), err)
	}
	p.log.DebugContext(ctx, "hetzner: waiting for change_dns_ptr", "ip", ip, "host", host, "action", action.ID)
	if err := c.Action.WaitFor(ctx, action); err != nil {
		var ae hcloud.ActionError
		if errors.As(err, &ae) {
			return &ptr.APIError{Provider: Kind, Op: op, Message: fmt.Sprintf("action %d failed: %s (%s)", action.ID, ae.Message, ae.Code), Err: err}
		}
		return wrap(fmt.Sprintf("%s: wait for action %d", op, action.ID), err)
	}
	return nil
}
