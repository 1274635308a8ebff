// Package ovh is a DNS provider for zones hosted by OVHcloud, through the
// OVH API (/domain/zone) with github.com/ovh/go-ovh. It does not use
// github.com/libdns/ovh: that module hides its HTTP client (no retries, no
// timeouts, no test endpoint), ignores TTL when comparing, and cannot see
// records that OVH's web UI stores as types SPF, DKIM or DMARC, which this
// adapter reports and deletes as TXT.
//
// Attributes: endpoint (ovh-eu, ovh-ca, ovh-us, ... or an API URL; default
// ovh-eu), application_key, application_secret, consumer_key. The consumer
// key needs GET, POST, PUT and DELETE on /domain/zone/* (GET only for plan).
// The configured values are the only ones used: OVH_* environment variables
// and ovh.conf files are ignored.
//
// Limits: OVH's minimum TTL is 60 s, '"' is stripped from TXT data, no CNAME
// at the apex, and reading a zone costs one API call per record (made in
// parallel). Changes are followed by POST /domain/zone/{zone}/refresh.
package ovh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	goovh "github.com/ovh/go-ovh/ovh"
	"golang.org/x/sync/errgroup"

	"github.com/mailctl/mailctl/providers/dns"
)

// Kind is the registered kind name.
const Kind = "ovh"

// Parallel is the number of concurrent record reads.
const Parallel = 8

func init() {
	dns.Register(dns.Kind{
		Name: Kind,
		Capabilities: dns.Capabilities{
			DNS:    true,
			PTR:    true,
			SRV:    true,
			MinTTL: 60 * time.Second,
		},
		Attributes: []dns.Attribute{
			{Name: "endpoint", Doc: "ovh-eu, ovh-ca, ovh-us or an API URL (default ovh-eu)"},
			{Name: "application_key", Required: true, Doc: "application key from https://eu.api.ovh.com/createToken/"},
			{Name: "application_secret", Required: true, Sensitive: true, Doc: "application secret"},
			{Name: "consumer_key", Required: true, Sensitive: true, Doc: "consumer key with GET/POST/PUT/DELETE on /domain/zone/*"},
		},
		New: func(cfg dns.Config) (dns.Provider, error) {
			return New(cfg.Get("endpoint", "ovh-eu"), cfg.Get("application_key", ""), cfg.Get("application_secret", ""), cfg.Get("consumer_key", ""), cfg.Log())
		},
	})
}

// Provider manages zones of one OVH account.
type Provider struct {
	// client signs requests; mu serialises its use because go-ovh's
	// NewRequest writes to its http.Client.
	mu     sync.Mutex
	client *goovh.Client
	hc     *http.Client
	log    *slog.Logger
}

var (
	_ dns.Provider = (*Provider)(nil)
	_ dns.Zoner    = (*Provider)(nil)
)

// New returns a provider for endpoint (a name such as "ovh-eu" or a URL).
// It reads no environment variable or configuration file.
func New(endpoint, appKey, appSecret, consumerKey string, log *slog.Logger) (*Provider, error) {
	u := endpoint
	if !strings.Contains(endpoint, "/") {
		var ok bool
		if u, ok = goovh.Endpoints[endpoint]; !ok {
			return nil, fmt.Errorf("%w: ovh: unknown endpoint %q (use ovh-eu, ovh-ca, ovh-us or a URL)", dns.ErrConfig, endpoint)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Built by hand rather than with goovh.NewClient, which would take
	// OVH_* variables and ovh.conf files into account.
	c := &goovh.Client{
		AppKey:      appKey,
		AppSecret:   appSecret,
		ConsumerKey: consumerKey,
		Client:      dns.NewHTTPClient(dns.HTTPOptions{Logger: log}),
	}
	if err := c.SetEndpoint(strings.TrimSuffix(u, "/")); err != nil {
		return nil, fmt.Errorf("%w: ovh: %v", dns.ErrConfig, err)
	}
	return &Provider{client: c, hc: dns.NewHTTPClient(dns.HTTPOptions{Logger: log}), log: log}, nil
}

// SetHTTPOptions replaces the retry and timeout settings.
func (p *Provider) SetHTTPOptions(o dns.HTTPOptions) {
	if o.Logger == nil {
		o.Logger = p.log
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Two clients with the same settings: go-ovh's NewRequest writes
	// client.Client.Timeout on every request, which would race with the
	// requests in flight on a shared client.
	p.client.Client = dns.NewHTTPClient(o)
	p.hc = dns.NewHTTPClient(o)
}

// call signs and sends one request, decoding the answer into out.
func (p *Provider) call(ctx context.Context, op, method, path string, in, out any) error {
	p.mu.Lock()
	req, err := p.client.NewRequest(method, path, in, true)
	hc := p.hc
	p.mu.Unlock()
	if err != nil {
		return p.wrap(op, err)
	}
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		return p.wrap(op, err)
	}
	if err := p.client.UnmarshalResponse(resp, out); err != nil {
		return p.wrap(op, err)
	}
	return nil
}

// wrap turns go-ovh errors into dns.APIError naming the credential.
func (p *Provider) wrap(op string, err error) error {
	var ae *goovh.APIError
	if !errors.As(err, &ae) {
		return &dns.APIError{Provider: Kind, Op: op, Err: err}
	}
	e := &dns.APIError{Provider: Kind, Op: op, Status: ae.Code, Message: ae.Message, Err: err,
		Credential: "consumer_key", Permission: "an access rule for this call (GET/POST/PUT/DELETE /domain/zone/*)"}
	switch {
	case strings.Contains(ae.Message, "application key is invalid"):
		e.Status, e.Credential = http.StatusUnauthorized, "application_key"
	case strings.Contains(ae.Message, "Invalid signature"):
		e.Status, e.Credential = http.StatusUnauthorized, "application_secret (or application_key)"
	case strings.Contains(ae.Message, "credential does not exist"), strings.Contains(ae.Message, "credential is not valid"),
		strings.Contains(ae.Message, "must login"):
		e.Status, e.Credential = http.StatusUnauthorized, "consumer_key (not validated, expired or revoked)"
	case strings.Contains(ae.Message, "out of time"):
		e.Message += ": the local clock is off"
	}
	return e
}

// Zones lists the account's zones.
func (p *Provider) Zones(ctx context.Context) ([]string, error) {
	var zones []string
	if err := p.call(ctx, "list zones", http.MethodGet, "/domain/zone", nil, &zones); err != nil {
		return nil, err
	}
	return zones, nil
}

type record struct {
	ID        int64  `json:"id,omitempty"`
	FieldType string `json:"fieldType"`
	SubDomain string `json:"subDomain"`
	Target    string `json:"target"`
	TTL       int64  `json:"ttl"`
}

func zonePath(zone string) string {
	return "/domain/zone/" + url.PathEscape(strings.ToLower(strings.TrimSuffix(zone, ".")))
}

// ids lists record ids with optional filters.
func (p *Provider) ids(ctx context.Context, op, zone, fieldType, subDomain string) ([]int64, error) {
	q := url.Values{}
	if fieldType != "" {
		q.Set("fieldType", fieldType)
	}
	if subDomain != "" {
		q.Set("subDomain", subDomain)
	}
	path := zonePath(zone) + "/record"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var ids []int64
	if err := p.call(ctx, op, http.MethodGet, path, nil, &ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// fetch reads records by id, Parallel at a time.
func (p *Provider) fetch(ctx context.Context, zone string, ids []int64) ([]record, error) {
	out := make([]record, len(ids))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(Parallel)
	for i, id := range ids {
		g.Go(func() error {
			op := fmt.Sprintf("read record %d of zone %q", id, zone)
			return p.call(ctx, op, http.MethodGet, fmt.Sprintf("%s/record/%d", zonePath(zone), id), nil, &out[i])
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func toRR(r record, zone string) libdns.RR {
	name := r.SubDomain
	if name == "" {
		name = "@"
	}
	rr := libdns.RR{Name: name, Type: dns.TXTLike(r.FieldType), TTL: time.Duration(r.TTL) * time.Second, Data: r.Target}
	if rr.Type == "TXT" {
		rr.Data = dns.PlainTXT(r.Target)
	}
	return dns.Canonical(rr, zone)
}

// Records reads the zone: one call for the ids, then one per record.
func (p *Provider) Records(ctx context.Context, zone string) ([]libdns.RR, error) {
	ids, err := p.ids(ctx, fmt.Sprintf("list records of zone %q", zone), zone, "", "")
	if err != nil {
		return nil, err
	}
	recs, err := p.fetch(ctx, zone, ids)
	if err != nil {
		return nil, err
	}
	out := make([]libdns.RR, 0, len(recs))
	for _, r := range recs {
		if dns.Hidden(r.FieldType) {
			continue
		}
		out = append(out, toRR(r, zone))
	}
	dns.Sort(out)
	return out, nil
}

// Apply deletes the records of del (found by name and type, TXT also among
// OVH's SPF, DKIM and DMARC types, matched on data), creates those of add,
// then refreshes the zone so that OVH's name servers serve the change.
func (p *Provider) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	if len(del) == 0 && len(add) == 0 {
		return nil
	}
	type rrset struct{ name, typ string }
	want := map[rrset]map[dns.Key]bool{}
	for _, r := range del {
		c := dns.Canonical(r, zone)
		k := rrset{c.Name, c.Type}
		if want[k] == nil {
			want[k] = map[dns.Key]bool{}
		}
		want[k][dns.KeyOf(c)] = true
	}
	for set, keys := range want {
		sub := set.name
		if sub == "@" {
			sub = ""
		}
		types := []string{set.typ}
		if set.typ == "TXT" {
			types = []string{"TXT", "SPF", "DKIM", "DMARC"}
		}
		var ids []int64
		for _, ft := range types {
			op := fmt.Sprintf("find %s %s records in zone %q", set.name, ft, zone)
			got, err := p.ids(ctx, op, zone, ft, sub)
			if err != nil {
				return err
			}
			ids = append(ids, got...)
		}
		recs, err := p.fetch(ctx, zone, ids)
		if err != nil {
			return err
		}
		for _, r := range recs {
			c := toRR(r, zone)
			if c.Name != set.name || !keys[dns.KeyOf(c)] {
				continue
			}
			op := fmt.Sprintf("delete %s %s record %q in zone %q", set.name, set.typ, c.Data, zone)
			if err := p.call(ctx, op, http.MethodDelete, fmt.Sprintf("%s/record/%d", zonePath(zone), r.ID), nil, nil); err != nil {
				return err
			}
		}
	}
	for _, r := range add {
		c := dns.Canonical(r, zone)
		sub := c.Name
		if sub == "@" {
			sub = ""
		}
		if c.Type == "CNAME" && sub == "" {
			return fmt.Errorf("ovh: add CNAME at the apex of zone %q: OVH refuses CNAME records at the apex", zone)
		}
		ttl := int64(c.TTL / time.Second)
		if ttl < 60 {
			ttl = 60
		}
		target := c.Data
		if c.Type == "TXT" {
			if strings.Contains(target, `"`) {
				return fmt.Errorf("ovh: add TXT %s to zone %q: OVH strips '\"' from TXT data", c.Name, zone)
			}
		}
		rec := record{FieldType: c.Type, SubDomain: sub, Target: target, TTL: ttl}
		op := fmt.Sprintf("create %s %s record in zone %q", c.Name, c.Type, zone)
		if err := p.call(ctx, op, http.MethodPost, zonePath(zone)+"/record", rec, nil); err != nil {
			return err
		}
	}
	if err := p.call(ctx, fmt.Sprintf("refresh zone %q", zone), http.MethodPost, zonePath(zone)+"/refresh", nil, nil); err != nil {
		return err
	}
	p.log.DebugContext(ctx, "ovh apply", "zone", zone, "deleted", len(del), "added", len(add))
	return nil
}
