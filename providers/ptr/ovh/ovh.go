// Package ovh sets reverse DNS (PTR records, RFC 1035 section 3.5 and RFC
// 3596 section 2.5) of addresses held by an OVHcloud account, through the
// OVH API's /ip/{block}/reverse endpoints with github.com/ovh/go-ovh.
//
// Attributes are those of the OVH DNS provider, so that one provider block
// serves both: endpoint (ovh-eu, ovh-ca, ovh-us, ... or an API URL; default
// ovh-eu), application_key, application_secret, consumer_key. The consumer
// key needs GET /ip, GET /ip/*, POST /ip/* and DELETE /ip/* (GET only for
// plan). The configured values are the only ones used: OVH_* environment
// variables and ovh.conf files are ignored.
//
// Each call first finds the account's IP block that holds the address
// (GET /ip?ip=..., the smallest matching block; a VPS address is its own
// /32). OVH refuses a reverse with HTTP 400 while the hostname does not
// resolve to the address (forward-confirmed reverse DNS); Set retries such
// refusals with back-off for Provider.ResolveTimeout (default 5 minutes)
// and then fails with an error wrapping ptr.ErrNotResolving.
package ovh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mailctl/mailctl/providers/base"
	"github.com/mailctl/mailctl/providers/internal/ovhapi"
	"github.com/mailctl/mailctl/providers/ptr"
)

// Kind is the registered kind name.
const Kind = "ovh"

func init() {
	ptr.Register(ptr.Kind{
		Name: Kind,
		Attributes: []ptr.Attribute{
			{Name: "endpoint", Doc: "ovh-eu, ovh-ca, ovh-us or an API URL (default ovh-eu)"},
			{Name: "application_key", Required: true, Doc: "application key from https://eu.api.ovh.com/createToken/"},
			{Name: "application_secret", Required: true, Sensitive: true, Doc: "application secret"},
			{Name: "consumer_key", Required: true, Sensitive: true, Doc: "consumer key with GET/POST/DELETE on /ip/* (and /domain/zone/* for DNS)"},
			base.TimeoutAttribute(ovhapi.DefaultTimeout),
		},
		New: func(cfg ptr.Config) (ptr.Provider, error) {
			timeout, err := base.ParseTimeout(cfg.Get("timeout", ""), ovhapi.DefaultTimeout, ptr.ErrConfig)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ptr.ErrConfig, err)
			}
			p, err := New(cfg.Get("endpoint", "ovh-eu"), cfg.Get("application_key", ""), cfg.Get("application_secret", ""), cfg.Get("consumer_key", ""), cfg.Log())
			if err != nil {
				return nil, err
			}
			p.SetHTTPOptions(base.HTTPOptions{Timeout: timeout})
			return p, nil
		},
	})
}

// Default retry bounds while OVH refuses a reverse whose hostname does not
// resolve yet.
const (
	DefaultResolveTimeout = 5 * time.Minute
	DefaultResolveMinWait = 5 * time.Second
	DefaultResolveMaxWait = 30 * time.Second
)

// Provider sets reverse DNS for the IP blocks of one OVH account.
type Provider struct {
	// ResolveTimeout bounds how long Set retries while OVH answers that
	// the hostname does not resolve to the address; ResolveMinWait and
	// ResolveMaxWait bound the exponential back-off between tries. Set
	// them before the first call; zero values take the defaults.
	ResolveTimeout, ResolveMinWait, ResolveMaxWait time.Duration

	api *ovhapi.Client
	log *slog.Logger
}

var _ ptr.Provider = (*Provider)(nil)

// New returns a provider for endpoint (a name such as "ovh-eu" or a URL).
// It reads no environment variable or configuration file and does no I/O.
func New(endpoint, appKey, appSecret, consumerKey string, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	api, err := ovhapi.New(endpoint, appKey, appSecret, consumerKey, log)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ptr.ErrConfig, err)
	}
	return &Provider{api: api, log: log}, nil
}

// SetHTTPOptions replaces the retry (HTTP 429 and 5xx) and timeout settings.
func (p *Provider) SetHTTPOptions(o base.HTTPOptions) { p.api.SetHTTPOptions(o) }

// call signs and sends one request, decoding the answer into out.
func (p *Provider) call(ctx context.Context, op, method, path string, in, out any) error {
	if err := p.api.Call(ctx, method, path, in, out); err != nil {
		return p.wrap(op, err)
	}
	return nil
}

const permission = "access rules GET /ip, GET /ip/*, POST /ip/* and DELETE /ip/*"

// wrap turns go-ovh errors into ptr.APIError naming the credential.
func (p *Provider) wrap(op string, err error) error {
	f, ok := ovhapi.Explain(err)
	if !ok {
		return &ptr.APIError{Provider: Kind, Op: op, Err: err}
	}
	return &ptr.APIError{Provider: Kind, Op: op, Status: f.Status, Message: f.Message, Err: err,
		Credential: f.Credential, Permission: permission}
}

// status returns the HTTP status of an APIError, 0 for other errors.
func status(err error) int {
	var ae *ptr.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// block returns the account's smallest IP block holding ip.
func (p *Provider) block(ctx context.Context, ip netip.Addr) (netip.Prefix, error) {
	op := fmt.Sprintf("find the IP block holding %s", ip)
	best := func(blocks []string) netip.Prefix {
		var b netip.Prefix
		for _, s := range blocks {
			pf, err := netip.ParsePrefix(s)
			if err != nil {
				if a, aerr := netip.ParseAddr(s); aerr == nil {
					pf = netip.PrefixFrom(a, a.BitLen())
				} else {
					continue
				}
			}
			if pf.Contains(ip) && (!b.IsValid() || pf.Bits() > b.Bits()) {
				b = pf.Masked()
			}
		}
		return b
	}
	var blocks []string
	if err := p.call(ctx, op, http.MethodGet, "/ip?ip="+url.QueryEscape(ip.String()), nil, &blocks); err != nil {
		return netip.Prefix{}, err
	}
	if b := best(blocks); b.IsValid() {
		return b, nil
	}
	// The filter's semantics are loosely documented: fall back to the
	// whole list before concluding.
	blocks = nil
	if err := p.call(ctx, op, http.MethodGet, "/ip", nil, &blocks); err != nil {
		return netip.Prefix{}, err
	}
	if b := best(blocks); b.IsValid() {
		return b, nil
	}
	return netip.Prefix{}, &ptr.APIError{Provider: Kind, Op: op, Message: "no IP block of this OVH account holds it", Err: ptr.ErrNotFound}
}

func reversePath(b netip.Prefix) string {
	return "/ip/" + url.PathEscape(b.String()) + "/reverse"
}

type reverse struct {
	IPReverse string `json:"ipReverse"`
	Reverse   string `json:"reverse"`
}

// Get returns the reverse of ip, "" when none is set.
func (p *Provider) Get(ctx context.Context, ip netip.Addr) (string, error) {
	ip = ip.Unmap()
	b, err := p.block(ctx, ip)
	if err != nil {
		return "", err
	}
	return p.get(ctx, b, ip)
}

// get reads the reverse of ip in block b.
func (p *Provider) get(ctx context.Context, b netip.Prefix, ip netip.Addr) (string, error) {
	var r reverse
	op := fmt.Sprintf("read the reverse of %s", ip)
	if err := p.call(ctx, op, http.MethodGet, reversePath(b)+"/"+url.PathEscape(ip.String()), nil, &r); err != nil {
		if status(err) == http.StatusNotFound {
			return "", nil
		}
		return "", err
	}
	return ptr.Canonical(r.Reverse), nil
}

// Set makes hostname the reverse of ip, retrying while OVH answers that the
// hostname does not resolve to ip; an empty hostname deletes the reverse.
// It reads the reverse first and makes no change when it already has the
// value.
func (p *Provider) Set(ctx context.Context, ip netip.Addr, hostname string) error {
	ip = ip.Unmap()
	host := ptr.Canonical(hostname)
	op := fmt.Sprintf("set the reverse of %s to %s", ip, host)
	if host == "" {
		op = fmt.Sprintf("delete the reverse of %s", ip)
	}
	if err := ptr.CheckHostname(host); err != nil {
		return &ptr.APIError{Provider: Kind, Op: op, Err: err}
	}
	b, err := p.block(ctx, ip)
	if err != nil {
		return err
	}
	// Re-posting the current value would fail, and wait, if the forward
	// record is broken meanwhile: a converged PTR needs no call.
	cur, err := p.get(ctx, b, ip)
	if err != nil {
		return err
	}
	if cur == host {
		return nil
	}
	if host == "" {
		err := p.call(ctx, op, http.MethodDelete, reversePath(b)+"/"+url.PathEscape(ip.String()), nil, nil)
		if status(err) == http.StatusNotFound {
			return nil
		}
		return err
	}
	return p.post(ctx, op, b, ip, host)
}

// notResolving reports whether err is OVH's refusal of a reverse whose
// hostname does not resolve to the address ("Cannot check if <ip> resolves
// to <host>").
func notResolving(err error) bool {
	var ae *ptr.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(strings.ToLower(ae.Message), "resolve")
}

func (p *Provider) post(ctx context.Context, op string, b netip.Prefix, ip netip.Addr, host string) error {
	timeout, lo, hi := p.ResolveTimeout, p.ResolveMinWait, p.ResolveMaxWait
	if timeout <= 0 {
		timeout = DefaultResolveTimeout
	}
	if lo <= 0 {
		lo = DefaultResolveMinWait
	}
	if hi < lo {
		hi = max(lo, DefaultResolveMaxWait)
	}
	start := time.Now()
	deadline := start.Add(timeout)
	body := reverse{IPReverse: ip.String(), Reverse: host + "."}
	wait := lo
	rr := "A"
	if ip.Is6() {
		rr = "AAAA"
	}
	var refused *ptr.APIError // OVH's last refusal
	attempt := 0
	giveUp := func(why string, cause error) error {
		return &ptr.APIError{Provider: Kind, Op: op, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("OVH refuses a reverse until %s resolves to %s (its %s record must exist and be served): %s after %d tries in %s; OVH said %q",
				host, ip, rr, why, attempt, time.Since(start).Round(time.Second), refused.Message),
			Err: errors.Join(ptr.ErrNotResolving, cause)}
	}
	for attempt = 1; ; attempt++ {
		// POST /ip/{block}/reverse sets the reverse of the address: sending
		// it twice is harmless.
		err := p.call(base.Idempotent(ctx), op, http.MethodPost, reversePath(b), body, nil)
		if err != nil && refused != nil && ctx.Err() != nil {
			// Ended during a retry: the cause is still the refusal.
			return giveUp("interrupted", ctx.Err())
		}
		if err == nil || !notResolving(err) {
			return err
		}
		errors.As(err, &refused)
		left := time.Until(deadline)
		if left <= 0 {
			return giveUp(fmt.Sprintf("gave up at the %s limit", timeout), nil)
		}
		wait = min(wait, left)
		p.log.DebugContext(ctx, "ovh: reverse refused until the hostname resolves; retrying", "ip", ip, "host", host, "attempt", attempt, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp("interrupted", ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, hi)
	}
}
