package queue

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
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

// ParseSTSPolicy parses an MTA-STS policy text (RFC 8461 section 3.2).
func ParseSTSPolicy(r io.Reader) (*STSPolicy, error) {
	p := &STSPolicy{}
	sc := bufio.NewScanner(r)
	version := ""
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "version":
			version = v
		case "mode":
			p.Mode = v
		case "mx":
			p.MX = append(p.MX, v)
		case "max_age":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("MTA-STS policy: bad max_age %q", v)
			}
			p.MaxAge = min(n, 31557600)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read MTA-STS policy: %w", err)
	}
	if version != "STSv1" {
		return nil, fmt.Errorf("MTA-STS policy: version %q", version)
	}
	switch p.Mode {
	case "enforce", "testing", "none":
	default:
		return nil, fmt.Errorf("MTA-STS policy: mode %q", p.Mode)
	}
	if p.Mode != "none" && len(p.MX) == 0 {
		return nil, fmt.Errorf("MTA-STS policy: no mx")
	}
	return p, nil
}
