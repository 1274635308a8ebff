// Package cloudflare is a DNS provider for Cloudflare's API v4. Records are
// created through github.com/libdns/cloudflare (which knows how Cloudflare
// wants MX, SRV and CAA data structured); reads, changes in place (PATCH of
// a record id) and deletions use the same API directly, because the library's DeleteRecords matches SRV records on
// name and type only and cannot find TXT records Cloudflare stored split in
// 255-byte strings (RFC 1035 section 3.3.14), and its SetRecords keeps one
// value of a multi-value RRset.
//
// Attributes: api_token (required; a scoped token with Zone:Read and
// DNS:Edit on the zones), endpoint (optional API base URL, default
// https://api.cloudflare.com/client/v4, for tests), timeout (optional, the
// longest wait for one API call with its retries, default 30s).
//
// Apply (one RRset) changes records in place, then creates, then deletes,
// one call each, so that an RRset that is not to be emptied never is, even
// for a moment (an empty MX set would send mail to the domain's A record,
// RFC 5321 section 5.1). ApplyZone, what apply uses, sends a zone's
// changes in batches (POST /zones/{zone_id}/dns_records/batch, one
// transaction each) of at most 200 operations: one request for a new
// domain (see batch.go).
//
// Limits: TTL 1 means automatic (reported as 300 s); the "proxied" flag is
// invisible here, so verify must check that the mail host resolves to the
// server's address.
package cloudflare

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	libcf "github.com/libdns/cloudflare"
	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
)

// Kind is the registered kind name.
const Kind = "cloudflare"

// DefaultTimeout bounds one API call, retries included: Cloudflare answers
// in well under a second, and a page of 1000 records in a few.
const DefaultTimeout = 30 * time.Second

// DefaultEndpoint is the public API base.
const DefaultEndpoint = "https://api.cloudflare.com/client/v4"

const (
	credential = "api_token"
	permission = "Zone:Read and DNS:Edit on the zone"
)

func init() {
	dns.Register(dns.Kind{
		Name: Kind,
		Capabilities: dns.Capabilities{
			DNS:       true,
			SRV:       true,
			MinTTL:    60 * time.Second,
			ApexCNAME: true,
			InPlace:   true,
		},
		Attributes: []dns.Attribute{
			{Name: "api_token", Required: true, Sensitive: true, Doc: "API token with Zone:Read and DNS:Edit"},
			{Name: "endpoint", Doc: "API base URL, default " + DefaultEndpoint},
			dns.TimeoutAttribute(DefaultTimeout),
		},
		New: func(cfg dns.Config) (dns.Provider, error) {
			timeout, err := dns.ParseTimeout(cfg.Get("timeout", ""), DefaultTimeout)
			if err != nil {
				return nil, err
			}
			p := New(cfg.Get("api_token", ""), cfg.Get("endpoint", DefaultEndpoint), cfg.Log())
			p.SetHTTPOptions(dns.HTTPOptions{Timeout: timeout})
			return p, nil
		},
	})
}

// Provider manages zones of one Cloudflare account.
type Provider struct {
	token    string
	endpoint string
	hc       *http.Client
	log      *slog.Logger
	lib      *libcf.Provider

	mu    sync.Mutex
	zones map[string]string // name -> id
}

var (
	_ dns.Provider = (*Provider)(nil)
	_ dns.Zoner    = (*Provider)(nil)
)

// New returns a provider using token against endpoint.
func New(token, endpoint string, log *slog.Logger) *Provider {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		token:    token,
		endpoint: strings.TrimSuffix(endpoint, "/"),
		hc:       dns.NewHTTPClient(dns.HTTPOptions{Logger: log}),
		log:      log,
		zones:    map[string]string{},
	}
	p.lib = &libcf.Provider{APIToken: token, HTTPClient: doer{p}}
	return p
}

// SetHTTPOptions replaces the HTTP client's retry and timeout settings.
func (p *Provider) SetHTTPOptions(o dns.HTTPOptions) {
	if o.Logger == nil {
		o.Logger = p.log
	}
	p.hc = dns.NewHTTPClient(o)
}

// doer is the libdns HTTPClient: it points the library's fixed base URL at
// the configured endpoint and turns API errors into dns.APIError.
type doer struct{ p *Provider }

func (d doer) Do(req *http.Request) (*http.Response, error) {
	if rest, ok := strings.CutPrefix(req.URL.String(), DefaultEndpoint); ok && d.p.endpoint != DefaultEndpoint {
		u, err := url.Parse(d.p.endpoint + rest)
		if err != nil {
			return nil, err
		}
		req.URL = u
		req.Host = u.Host
	}
	op := req.Method + " " + strings.TrimPrefix(req.URL.Path, "/client/v4")
	if req.Method == http.MethodPost {
		op = "create record in zone " + req.URL.Path
	}
	resp, err := d.p.hc.Do(req)
	if err != nil {
		return nil, &dns.APIError{Provider: Kind, Op: op, Err: err}
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, d.p.apiError(op, resp)
	}
	return resp, nil
}

type cfError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type envelope struct {
	Success    bool            `json:"success"`
	Errors     []cfError       `json:"errors"`
	Result     json.RawMessage `json:"result"`
	ResultInfo *struct {
		Page       int `json:"page"`
		PerPage    int `json:"per_page"`
		TotalCount int `json:"total_count"`
		TotalPages int `json:"total_pages"`
	} `json:"result_info"`
}

func (p *Provider) apiError(op string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env envelope
	json.Unmarshal(body, &env)
	var msgs []string
	status := resp.StatusCode
	for _, e := range env.Errors {
		msgs = append(msgs, fmt.Sprintf("%s (code %d)", e.Message, e.Code))
		switch e.Code {
		case 9109, 6003, 6111, 10001:
			// Invalid or missing token: the credential itself is refused.
			status = http.StatusUnauthorized
		}
	}
	if len(msgs) == 0 {
		msgs = append(msgs, strings.TrimSpace(string(body)))
	}
	return &dns.APIError{Provider: Kind, Op: op, Status: status, Credential: credential, Permission: permission, Message: strings.Join(msgs, "; ")}
}

// call does one API request without a body and decodes the envelope.
func (p *Provider) call(ctx context.Context, op, method, path string, q url.Values) (*envelope, error) {
	return p.do(ctx, op, method, path, q, nil)
}

// do does one API request, with body as JSON when not nil, and decodes
// the envelope.
func (p *Provider) do(ctx context.Context, op, method, path string, q url.Values, body any) (*envelope, error) {
	u := p.endpoint + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, &dns.APIError{Provider: Kind, Op: op, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return nil, p.apiError(op, resp)
	}
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return nil, &dns.APIError{Provider: Kind, Op: op, Err: fmt.Errorf("decode response: %w", err)}
	}
	if !env.Success {
		return nil, &dns.APIError{Provider: Kind, Op: op, Status: resp.StatusCode, Message: fmt.Sprint(env.Errors)}
	}
	return &env, nil
}

func (p *Provider) zoneID(ctx context.Context, zone string) (string, error) {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	p.mu.Lock()
	id, ok := p.zones[zone]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	op := fmt.Sprintf("look up zone %q", zone)
	env, err := p.call(ctx, op, http.MethodGet, "/zones", url.Values{"name": {zone}})
	if err != nil {
		return "", err
	}
	var zs []struct{ ID, Name string }
	if err := json.Unmarshal(env.Result, &zs); err != nil {
		return "", fmt.Errorf("%s: decode: %w", op, err)
	}
	if len(zs) != 1 {
		return "", &dns.APIError{Provider: Kind, Op: op, Status: http.StatusNotFound,
			Message: fmt.Sprintf("the account has no zone %q visible to this api_token (it needs Zone:Read on it)", zone)}
	}
	p.mu.Lock()
	p.zones[zone] = zs[0].ID
	p.mu.Unlock()
	return zs[0].ID, nil
}

// Zones lists the zones the token can see.
func (p *Provider) Zones(ctx context.Context) ([]string, error) {
	var out []string
	for page := 1; ; page++ {
		env, err := p.call(ctx, "list zones", http.MethodGet, "/zones", url.Values{"page": {strconv.Itoa(page)}, "per_page": {"50"}})
		if err != nil {
			return nil, err
		}
		var zs []struct{ ID, Name string }
		if err := json.Unmarshal(env.Result, &zs); err != nil {
			return nil, fmt.Errorf("list zones: decode: %w", err)
		}
		for _, z := range zs {
			out = append(out, z.Name)
		}
		if env.ResultInfo == nil || page >= env.ResultInfo.TotalPages || len(zs) == 0 {
			return out, nil
		}
	}
}

// record is the part of a DNS record the adapter reads.
type record struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Content  string  `json:"content"`
	Priority *uint16 `json:"priority"`
	TTL      int     `json:"ttl"`
	Proxied  bool    `json:"proxied"`
	Data     *struct {
		Priority uint16 `json:"priority"`
		Weight   uint16 `json:"weight"`
		Port     uint16 `json:"port"`
		Target   string `json:"target"`
	} `json:"data"`
}

const perPage = 1000

// list returns the zone's records matching q (type, name filters).
func (p *Provider) list(ctx context.Context, op, zoneID string, q url.Values) ([]record, error) {
	var out []record
	for page := 1; ; page++ {
		qq := url.Values{"page": {strconv.Itoa(page)}, "per_page": {strconv.Itoa(perPage)}}
		for k, v := range q {
			qq[k] = v
		}
		env, err := p.call(ctx, op, http.MethodGet, "/zones/"+zoneID+"/dns_records", qq)
		if err != nil {
			return nil, err
		}
		var recs []record
		if err := json.Unmarshal(env.Result, &recs); err != nil {
			return nil, fmt.Errorf("%s: decode: %w", op, err)
		}
		out = append(out, recs...)
		if env.ResultInfo == nil || page >= env.ResultInfo.TotalPages || len(recs) == 0 {
			return out, nil
		}
	}
}

// toRR converts an API record to a canonical record.
func toRR(r record, zone string) libdns.RR {
	ttl := time.Duration(r.TTL) * time.Second
	if r.TTL == 1 {
		ttl = 300 * time.Second // automatic
	}
	rr := libdns.RR{Name: r.Name, Type: strings.ToUpper(r.Type), TTL: ttl, Data: r.Content}
	switch rr.Type {
	case "TXT":
		rr.Data = dns.PlainTXT(r.Content)
	case "MX":
		var prio uint16
		if r.Priority != nil {
			prio = *r.Priority
		}
		rr.Data = fmt.Sprintf("%d %s.", prio, strings.TrimSuffix(r.Content, "."))
	case "CNAME", "NS", "PTR":
		rr.Data = strings.TrimSuffix(r.Content, ".") + "."
	case "SRV":
		if r.Data != nil {
			rr.Data = fmt.Sprintf("%d %d %d %s.", r.Data.Priority, r.Data.Weight, r.Data.Port, strings.TrimSuffix(r.Data.Target, "."))
		}
	}
	return dns.Canonical(rr, zone)
}

// Records lists every record of the zone (one zone lookup, cached, then one
// call per 1000 records).
func (p *Provider) Records(ctx context.Context, zone string) ([]libdns.RR, error) {
	id, err := p.zoneID(ctx, zone)
	if err != nil {
		return nil, err
	}
	recs, err := p.list(ctx, fmt.Sprintf("list records of zone %q", zone), id, nil)
	if err != nil {
		return nil, err
	}
	out := make([]libdns.RR, 0, len(recs))
	for _, r := range recs {
		if dns.Hidden(r.Type) {
			continue
		}
		out = append(out, toRR(r, zone))
	}
	dns.Sort(out)
	return out, nil
}

// Apply changes the records of del into those of add so that no RRset is
// ever empty, nor holds both an old and a new single value (two SPF
// records, two CNAMEs), when its new contents are not: per RRset, a record
// of del whose data is also in add only gets the new TTL, in place (PATCH
// of its id: the TTL-only change of a migration's MX); each other record
// of del is changed in place into one of the records added (PATCH: an MX
// replaced at cut-over); the records left in add are then created, and
// only then are the records left in del deleted. Records of del are found
// by name and type, matched on their data.
func (p *Provider) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	sets, err := dns.GroupRRsets(zone, del, add, func(c libdns.RR) (libdns.RR, error) {
		if c.TTL > 0 && c.TTL < 60*time.Second {
			c.TTL = 60 * time.Second
		}
		return c, nil
	})
	if err != nil {
		return err
	}
	asRR := func(r record) libdns.RR { return toRR(r, zone) }
	// A record whose new data has no known API form is created, not patched.
	patchable := func(_ record, a libdns.RR) bool {
		_, ok := recordBody(a, zone)
		return ok
	}
	var creates []libdns.RR
	var deletes []record
	var id string
	patched := 0
	for _, set := range sets {
		if len(set.Del) == 0 {
			creates = append(creates, set.Add...)
			continue
		}
		if id == "" {
			if id, err = p.zoneID(ctx, zone); err != nil {
				return err
			}
		}
		keys := map[dns.Key]bool{}
		for _, c := range set.Del {
			keys[dns.KeyOf(c)] = true
		}
		op := fmt.Sprintf("find %s %s records in zone %q", set.Name, set.Type, zone)
		found, err := p.list(ctx, op, id, url.Values{"type": {set.Type}, "name": {strings.TrimSuffix(dns.AbsoluteName(set.Name, zone), ".")}})
		if err != nil {
			return err
		}
		var old []record
		for _, r := range found {
			if keys[dns.KeyOf(toRR(r, zone))] {
				old = append(old, r)
			}
		}
		e := dns.PairEdits(old, set.Add, asRR, patchable)
		for _, k := range e.Keep {
			op := fmt.Sprintf("set the TTL of %s %s record %q in zone %q", set.Name, set.Type, k.New.Data, zone)
			if err := p.patch(ctx, op, id, k.Old.ID, map[string]any{"ttl": apiTTL(k.New.TTL)}); err != nil {
				return err
			}
			patched++
		}
		for _, c := range e.Change {
			body, _ := recordBody(c.New, zone)
			op := fmt.Sprintf("change %s %s record %q to %q in zone %q", set.Name, set.Type, toRR(c.Old, zone).Data, c.New.Data, zone)
			if err := p.patch(ctx, op, id, c.Old.ID, body); err != nil {
				return err
			}
			patched++
		}
		creates = append(creates, e.Create...)
		deletes = append(deletes, e.Delete...)
	}
	for _, c := range creates {
		parsed, err := c.Parse()
		if err != nil {
			return fmt.Errorf("cloudflare: add %s %s to zone %q: %w", c.Name, c.Type, zone, err)
		}
		// A create is not idempotent: when its answer is lost, the record
		// is read back before it is sent again.
		create := func(ctx context.Context) error {
			_, err := p.lib.AppendRecords(ctx, zone, []libdns.Record{parsed})
			return err
		}
		exists := func(ctx context.Context) (bool, error) {
			if id == "" {
				if id, err = p.zoneID(ctx, zone); err != nil {
					return false, err
				}
			}
			op := fmt.Sprintf("read back %s %s records in zone %q", c.Name, c.Type, zone)
			found, err := p.list(ctx, op, id, url.Values{"type": {c.Type}, "name": {strings.TrimSuffix(dns.AbsoluteName(c.Name, zone), ".")}})
			if err != nil {
				return false, err
			}
			for _, r := range found {
				if dns.KeyOf(toRR(r, zone)) == dns.KeyOf(c) {
					return true, nil
				}
			}
			return false, nil
		}
		if err := dns.CreateOnce(ctx, create, exists); err != nil {
			return fmt.Errorf("cloudflare: add %s %s to zone %q: %w", c.Name, c.Type, zone, err)
		}
	}
	for _, r := range deletes {
		rr := toRR(r, zone)
		op := fmt.Sprintf("delete %s %s record %q in zone %q", rr.Name, rr.Type, rr.Data, zone)
		if _, err := p.call(ctx, op, http.MethodDelete, "/zones/"+id+"/dns_records/"+r.ID, nil); err != nil {
			return err
		}
	}
	p.log.DebugContext(ctx, "cloudflare apply", "zone", zone, "changed", patched, "added", len(creates), "deleted", len(deletes))
	return nil
}

// apiTTL is a TTL as the API takes it: seconds, 1 for automatic.
func apiTTL(ttl time.Duration) int {
	if ttl <= 0 {
		return 1
	}
	return int(ttl / time.Second)
}

// recordBody is the JSON body that turns an existing record into the
// canonical record c, for the types whose API form is known here; ok is
// false for the others (they are created, then the old one deleted).
func recordBody(c libdns.RR, zone string) (body map[string]any, ok bool) {
	body = map[string]any{
		"type": c.Type,
		"name": strings.TrimSuffix(dns.AbsoluteName(c.Name, zone), "."),
		"ttl":  apiTTL(c.TTL),
	}
	parsed, err := c.Parse()
	if err != nil {
		return nil, false
	}
	switch r := parsed.(type) {
	case libdns.Address:
		body["content"] = r.IP.String()
	case libdns.CNAME:
		body["content"] = strings.TrimSuffix(r.Target, ".")
	case libdns.TXT:
		body["content"] = dns.QuoteTXT(r.Text)
	case libdns.MX:
		body["content"] = strings.TrimSuffix(r.Target, ".")
		body["priority"] = r.Preference
	case libdns.SRV:
		body["data"] = map[string]any{"priority": r.Priority, "weight": r.Weight, "port": r.Port, "target": strings.TrimSuffix(r.Target, ".")}
	default:
		return nil, false
	}
	return body, true
}

// patch updates the record id of the zone zoneID with the fields of body
// (PATCH /zones/{zone_id}/dns_records/{id}: fields left out keep their
// values, the proxied flag among them).
func (p *Provider) patch(ctx context.Context, op, zoneID, id string, body map[string]any) error {
	// The body sets absolute values: sending it twice is harmless.
	_, err := p.do(dns.Idempotent(ctx), op, http.MethodPatch, "/zones/"+zoneID+"/dns_records/"+id, nil, body)
	return err
}
