// Package ovh is a DNS provider for zones hosted by OVHcloud, through the
// OVH API (/domain/zone), signing requests with github.com/ovh/go-ovh
// (providers/internal/ovhapi). It does not use github.com/libdns/ovh, for
// these reasons: that module builds its go-ovh client with ovh.NewClient,
// which also takes OVH_* environment variables and ovh.conf files into
// account, and it gives no access to the client's HTTP client, so every
// request gets go-ovh's fixed 180 s timeout and no retry of HTTP 429 and
// 5xx answers (its endpoint does accept a URL, so a test server can stand
// in for the API: that is not a reason). It also ignores TTL when comparing
// records, reads a zone one record at a time, and looks records up by
// fieldType=TXT, so it cannot see those that OVH's web UI stores as types
// SPF, DKIM or DMARC, which this adapter reports and deletes as TXT.
//
// Attributes: endpoint (ovh-eu, ovh-ca, ovh-us, ... or an API URL; default
// ovh-eu), application_key, application_secret, consumer_key, timeout (the
// longest wait for one API call with its retries, default 60s). The consumer
// key needs GET, POST, PUT and DELETE on /domain/zone/* (GET only for plan).
// The configured values are the only ones used: OVH_* environment variables
// and ovh.conf files are ignored.
//
// Limits: OVH's minimum TTL is 60 s, '"' is stripped from TXT data, no CNAME
// at the apex, and reading a zone costs one API call per record (made in
// parallel). Apply changes records in place (PUT) where it can and creates
// before it deletes, so that an RRset is never empty during a change. OVH
// has no call that changes several records: ApplyZone makes each RRset's
// calls in turn and then one POST /domain/zone/{zone}/refresh per zone.
package ovh

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"golang.org/x/sync/errgroup"

	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/internal/ovhapi"
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
			// PUT of target and TTL; OVH's SPF/DKIM/DMARC types take a
			// value of their kind.
			InPlace: true,
		},
		Attributes: []dns.Attribute{
			{Name: "endpoint", Doc: "ovh-eu, ovh-ca, ovh-us or an API URL (default ovh-eu)"},
			{Name: "application_key", Required: true, Doc: "application key from https://eu.api.ovh.com/createToken/"},
			{Name: "application_secret", Required: true, Sensitive: true, Doc: "application secret"},
			{Name: "consumer_key", Required: true, Sensitive: true, Doc: "consumer key with GET/POST/PUT/DELETE on /domain/zone/*"},
			dns.TimeoutAttribute(ovhapi.DefaultTimeout),
		},
		New: func(cfg dns.Config) (dns.Provider, error) {
			timeout, err := dns.ParseTimeout(cfg.Get("timeout", ""), ovhapi.DefaultTimeout)
			if err != nil {
				return nil, err
			}
			p, err := New(cfg.Get("endpoint", "ovh-eu"), cfg.Get("application_key", ""), cfg.Get("application_secret", ""), cfg.Get("consumer_key", ""), cfg.Log())
			if err != nil {
				return nil, err
			}
			p.SetHTTPOptions(dns.HTTPOptions{Timeout: timeout})
			return p, nil
		},
	})
}

// Provider manages zones of one OVH account.
type Provider struct {
	api *ovhapi.Client
	log *slog.Logger
}

var (
	_ dns.Provider    = (*Provider)(nil)
	_ dns.Zoner       = (*Provider)(nil)
	_ dns.ZoneApplier = (*Provider)(nil)
)

// New returns a provider for endpoint (a name such as "ovh-eu" or a URL).
// It reads no environment variable or configuration file.
func New(endpoint, appKey, appSecret, consumerKey string, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	api, err := ovhapi.New(endpoint, appKey, appSecret, consumerKey, log)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", dns.ErrConfig, err)
	}
	return &Provider{api: api, log: log}, nil
}

// SetHTTPOptions replaces the retry and timeout settings.
func (p *Provider) SetHTTPOptions(o dns.HTTPOptions) { p.api.SetHTTPOptions(o) }

// call signs and sends one request, decoding the answer into out.
func (p *Provider) call(ctx context.Context, op, method, path string, in, out any) error {
	if err := p.api.Call(ctx, method, path, in, out); err != nil {
		return p.wrap(op, err)
	}
	return nil
}

// wrap turns go-ovh errors into dns.APIError naming the credential.
func (p *Provider) wrap(op string, err error) error {
	f, ok := ovhapi.Explain(err)
	if !ok {
		return &dns.APIError{Provider: Kind, Op: op, Err: err}
	}
	return &dns.APIError{Provider: Kind, Op: op, Status: f.Status, Message: f.Message, Err: err,
		Credential: f.Credential, Permission: "an access rule for this call (GET/POST/PUT/DELETE /domain/zone/*)"}
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

// Apply changes the records of del into those of add so that no RRset is
// ever empty, nor holds both an old and a new single value (two SPF
// records, two CNAMEs), when its new contents are not. Per RRset (name and
// type): a record of del whose data is also in add only gets the new TTL,
// in place (PUT of its id: the TTL-only change of a migration's MX); each
// other record of del is changed in place into one of the records added
// (PUT of target and TTL: an MX replaced at cut-over; OVH's fieldType is
// read-only, so a record stored as SPF, DKIM or DMARC only takes a value of
// its kind); sets deleted entirely are deleted next, then the records left
// in add are created, and only then are the records left in del deleted.
// Records of del are found by name and type (TXT also among OVH's SPF,
// DKIM and DMARC types), matched on their data. A refresh of the zone ends
// the changes, so that OVH's name servers serve them.
func (p *Provider) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	return p.ApplyZone(ctx, zone, []dns.SetEdit{{Del: del, Add: add}})
}

// ApplyZone applies the edits of zone in order, each as Apply describes,
// and then refreshes the zone once (OVH has no call that changes several
// records: a refresh per RRset rebuilt and reloaded the zone on OVH's
// name servers once per RRset). Records OVH would refuse are rejected
// before any call. When an edit fails, the zone is still refreshed if
// anything was written, so that what changed is served (a later plan
// reads the stored records and would not refresh again), and the error
// is a *dns.PartialError counting the edits applied before it.
func (p *Provider) ApplyZone(ctx context.Context, zone string, edits []dns.SetEdit) error {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	all := make([][]dns.RRset, len(edits))
	for i, e := range edits {
		sets, err := dns.GroupRRsets(zone, e.Del, e.Add, func(c libdns.RR) (libdns.RR, error) {
			if c.Type == "CNAME" && c.Name == "@" {
				return c, fmt.Errorf("ovh: add CNAME at the apex of zone %q: OVH refuses CNAME records at the apex", zone)
			}
			if c.Type == "TXT" && strings.Contains(c.Data, `"`) {
				return c, fmt.Errorf("ovh: add TXT %s to zone %q: OVH strips '\"' from TXT data", c.Name, zone)
			}
			if c.TTL < 60*time.Second {
				c.TTL = 60 * time.Second
			}
			return c, nil
		})
		if err != nil {
			return err
		}
		all[i] = sets
	}
	applied, wrote := 0, 0
	var err error
	for _, sets := range all {
		if err = p.applySets(ctx, zone, sets, &wrote); err != nil {
			break
		}
		applied++
	}
	if wrote > 0 {
		rctx := ctx
		if err != nil {
			// The refresh also follows a failure or an interrupt.
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), ovhapi.DefaultTimeout)
			defer cancel()
		}
		// A refresh twice is a refresh: the POST may be sent again.
		if rerr := p.call(dns.Idempotent(rctx), fmt.Sprintf("refresh zone %q", zone), http.MethodPost, zonePath(zone)+"/refresh", nil, nil); rerr != nil {
			if err == nil {
				err = rerr
			} else {
				err = fmt.Errorf("%w; then the refresh failed too: %v", err, rerr)
			}
		}
	}
	if err != nil && applied > 0 {
		return &dns.PartialError{Applied: applied, Err: err}
	}
	if err == nil {
		p.log.DebugContext(ctx, "ovh zone apply", "zone", zone, "edits", len(edits), "writes", wrote)
	}
	return err
}

// applySets makes the calls of one edit (without the refresh), counting
// the calls that write in *wrote.
func (p *Provider) applySets(ctx context.Context, zone string, sets []dns.RRset, wrote *int) error {
	asRR := func(r record) libdns.RR { return toRR(r, zone) }
	fits := func(r record, a libdns.RR) bool { return holds(r.FieldType, a) }
	var creates []libdns.RR
	var emptied, deletes []record
	changed := 0
	for _, set := range sets {
		if len(set.Del) == 0 {
			creates = append(creates, set.Add...)
			continue
		}
		old, err := p.find(ctx, zone, set.Name, set.Type, set.Del)
		if err != nil {
			return err
		}
		if len(set.Add) == 0 {
			emptied = append(emptied, old...)
			continue
		}
		e := dns.PairEdits(old, set.Add, asRR, fits)
		for _, k := range e.Keep {
			if ttl := apiTTL(k.New.TTL); k.Old.TTL != ttl {
				op := fmt.Sprintf("set the TTL of %s %s record %q in zone %q", set.Name, set.Type, k.New.Data, zone)
				*wrote++
				if err := p.update(ctx, op, zone, k.Old.ID, map[string]any{"ttl": ttl}); err != nil {
					return err
				}
				changed++
			}
		}
		for _, c := range e.Change {
			op := fmt.Sprintf("change %s %s record %q to %q in zone %q", set.Name, set.Type, toRR(c.Old, zone).Data, c.New.Data, zone)
			*wrote++
			if err := p.update(ctx, op, zone, c.Old.ID, map[string]any{"target": c.New.Data, "ttl": apiTTL(c.New.TTL)}); err != nil {
				return err
			}
			changed++
		}
		creates = append(creates, e.Create...)
		deletes = append(deletes, e.Delete...)
	}
	// A set deleted entirely goes before the creations: a CNAME replaced by
	// records of another type at its name, which OVH refuses beside it.
	if err := p.delete(ctx, zone, emptied, wrote); err != nil {
		return err
	}
	for _, c := range creates {
		sub := c.Name
		if sub == "@" {
			sub = ""
		}
		rec := record{FieldType: c.Type, SubDomain: sub, Target: c.Data, TTL: apiTTL(c.TTL)}
		op := fmt.Sprintf("create %s %s record in zone %q", c.Name, c.Type, zone)
		// POST is not idempotent: when its answer is lost, the record is
		// read back before it is sent again (a second POST would make a
		// duplicate).
		create := func(ctx context.Context) error {
			*wrote++
			return p.call(ctx, op, http.MethodPost, zonePath(zone)+"/record", rec, nil)
		}
		exists := func(ctx context.Context) (bool, error) {
			found, err := p.find(ctx, zone, c.Name, c.Type, []libdns.RR{c})
			return len(found) > 0, err
		}
		if err := dns.CreateOnce(ctx, create, exists); err != nil {
			return err
		}
	}
	if err := p.delete(ctx, zone, deletes, wrote); err != nil {
		return err
	}
	p.log.DebugContext(ctx, "ovh apply", "zone", zone, "changed", changed, "added", len(creates), "deleted", len(emptied)+len(deletes))
	return nil
}

// find returns the records of the set name/typ of zone whose data is that
// of one of recs (TXT also among OVH's SPF, DKIM and DMARC types).
func (p *Provider) find(ctx context.Context, zone, name, typ string, recs []libdns.RR) ([]record, error) {
	keys := map[dns.Key]bool{}
	for _, c := range recs {
		keys[dns.KeyOf(c)] = true
	}
	sub := name
	if sub == "@" {
		sub = ""
	}
	types := []string{typ}
	if typ == "TXT" {
		types = []string{"TXT", "SPF", "DKIM", "DMARC"}
	}
	var ids []int64
	for _, ft := range types {
		op := fmt.Sprintf("find %s %s records in zone %q", name, ft, zone)
		got, err := p.ids(ctx, op, zone, ft, sub)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	found, err := p.fetch(ctx, zone, ids)
	if err != nil {
		return nil, err
	}
	var out []record
	for _, r := range found {
		// An empty subDomain filter is none: apex sets are sorted here.
		if c := toRR(r, zone); c.Name == name && keys[dns.KeyOf(c)] {
			out = append(out, r)
		}
	}
	return out, nil
}

// holds reports whether a record stored as fieldType can take the data of
// c in place: the same type, or a value of its kind for OVH's SPF, DKIM and
// DMARC types (their fieldType cannot change).
func holds(fieldType string, c libdns.RR) bool {
	ft := strings.ToUpper(fieldType)
	if ft == c.Type {
		return true
	}
	prefix, ok := map[string]string{"SPF": "v=spf1", "DKIM": "v=dkim1", "DMARC": "v=dmarc1"}[ft]
	return ok && c.Type == "TXT" && strings.HasPrefix(strings.ToLower(c.Data), prefix)
}

// apiTTL is a TTL as OVH takes it: seconds, at least 60.
func apiTTL(ttl time.Duration) int64 {
	return max(int64(ttl/time.Second), 60)
}

// update changes the fields of body of the record id (PUT
// /domain/zone/{zone}/record/{id}: subDomain, target and ttl may change,
// fieldType may not).
func (p *Provider) update(ctx context.Context, op, zone string, id int64, body map[string]any) error {
	return p.call(ctx, op, http.MethodPut, fmt.Sprintf("%s/record/%d", zonePath(zone), id), body, nil)
}

// delete deletes the records recs of zone, counting the calls in *wrote.
func (p *Provider) delete(ctx context.Context, zone string, recs []record, wrote *int) error {
	for _, r := range recs {
		*wrote++
		c := toRR(r, zone)
		op := fmt.Sprintf("delete %s %s record %q in zone %q", c.Name, c.Type, c.Data, zone)
		if err := p.call(ctx, op, http.MethodDelete, fmt.Sprintf("%s/record/%d", zonePath(zone), r.ID), nil, nil); err != nil {
			return err
		}
	}
	return nil
}
