package queue

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mailctl/mailctl/server/mtasts"
)

// STSPolicy is an MTA-STS policy (RFC 8461 section 3.2); ID is the id of
// the TXT record it was fetched for.
type STSPolicy struct {
	ID      string
	Mode    string // enforce, testing, none
	MX      []string
	MaxAge  int
	expires time.Time
}

func (p *STSPolicy) matches(host string) bool {
	for _, pat := range p.MX {
		if matchHost(pat, host) {
			return true
		}
	}
	return false
}

// stsCache fetches and caches policies by max_age (RFC 8461 section 5.1).
type stsCache struct {
	client *http.Client
	res    Resolver
	clock  Clock

	mu sync.Mutex
	m  map[string]*STSPolicy
}

func newSTSCache(client *http.Client, res Resolver, clock Clock) *stsCache {
	return &stsCache{client: client, res: res, clock: clock, m: map[string]*STSPolicy{}}
}

// get returns the policy of domain, nil when it has none. A cached policy
// is used until it expires when the TXT record is gone, unchanged, or the
// new policy cannot be fetched.
func (c *stsCache) get(ctx context.Context, log logger, domain string) *STSPolicy {
	now := c.clock.Now()
	c.mu.Lock()
	cached := c.m[domain]
	c.mu.Unlock()
	if cached != nil && !now.Before(cached.expires) {
		cached = nil
	}
	id := ""
	txts, err := c.res.LookupTXT(ctx, "_mta-sts."+domain)
	if err == nil {
		for _, t := range txts {
			if v, ok := parseSTSRecord(t); ok {
				if id != "" {
					id = "" // several records: as if none (section 3.1)
					break
				}
				id = v
			}
		}
	}
	if id == "" || cached != nil && cached.ID == id {
		return cached
	}
	p, err := c.fetch(ctx, domain)
	if err != nil {
		log.Warn("fetch MTA-STS policy", "err", err)
		return cached
	}
	p.ID = id
	p.expires = now.Add(time.Duration(p.MaxAge) * time.Second)
	c.mu.Lock()
	c.m[domain] = p
	c.mu.Unlock()
	return p
}

// parseSTSRecord returns the id of a "v=STSv1; id=..." TXT record.
func parseSTSRecord(txt string) (string, bool) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", false
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k == "id" && v != "" {
			return v, true
		}
	}
	return "", false
}

func (c *stsCache) fetch(ctx context.Context, domain string) (*STSPolicy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return ParseSTSPolicy(io.LimitReader(resp.Body, 64<<10))
}

// ParseSTSPolicy parses an MTA-STS policy text (RFC 8461 section 3.2) as
// a sender does (mtasts.Lenient).
func ParseSTSPolicy(r io.Reader) (*STSPolicy, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read MTA-STS policy: %w", err)
	}
	p, err := mtasts.Parse(string(body), mtasts.Lenient)
	if err != nil {
		return nil, err
	}
	return &STSPolicy{Mode: p.Mode, MX: p.MX, MaxAge: p.MaxAge}, nil
}
