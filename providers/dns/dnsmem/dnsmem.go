// Package dnsmem is an in-memory DNS provider for tests of the engine and
// examples: a fake that holds data (zones of canonical records), passes the
// shared provider suite, counts calls and can be told to fail. It is not
// registered as a kind; tests construct it with New.
package dnsmem

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
)

// Provider holds zones in memory. It is safe for concurrent use.
type Provider struct {
	mu      sync.Mutex
	zones   map[string][]libdns.RR
	fail    map[string]error // zone -> error for every call
	records int              // Records calls
	applies int              // Apply calls
}

var (
	_ dns.Provider = (*Provider)(nil)
	_ dns.Zoner    = (*Provider)(nil)
)

// New returns a provider holding the given empty zones.
func New(zones ...string) *Provider {
	p := &Provider{zones: map[string][]libdns.RR{}, fail: map[string]error{}}
	for _, z := range zones {
		p.zones[norm(z)] = nil
	}
	return p
}

func norm(z string) string { return strings.ToLower(strings.TrimSuffix(z, ".")) }

// Seed adds records to zone (creating it), as if made outside mailctl.
func (p *Provider) Seed(zone string, rrs ...libdns.RR) {
	p.mu.Lock()
	defer p.mu.Unlock()
	z := norm(zone)
	for _, r := range rrs {
		p.zones[z] = append(p.zones[z], dns.Canonical(r, z))
	}
}

// Fail makes every call on zone return err (nil clears).
func (p *Provider) Fail(zone string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.fail, norm(zone))
		return
	}
	p.fail[norm(zone)] = err
}

// Calls returns how many Records and Apply calls were made.
func (p *Provider) Calls() (records, applies int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.records, p.applies
}

// Zones lists the zones held.
func (p *Provider) Zones(ctx context.Context) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for z := range p.zones {
		out = append(out, z)
	}
	slices.Sort(out)
	return out, nil
}

// Records returns a copy of the zone's records.
func (p *Provider) Records(ctx context.Context, zone string) ([]libdns.RR, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records++
	z := norm(zone)
	if err := p.fail[z]; err != nil {
		return nil, err
	}
	rrs, ok := p.zones[z]
	if !ok {
		return nil, fmt.Errorf("dnsmem: zone %q: %w", zone, dns.ErrNotFound)
	}
	out := dns.Visible(rrs, z)
	return out, nil
}

// Apply deletes del and adds add.
func (p *Provider) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applies++
	z := norm(zone)
	if err := p.fail[z]; err != nil {
		return err
	}
	rrs, ok := p.zones[z]
	if !ok {
		return fmt.Errorf("dnsmem: zone %q: %w", zone, dns.ErrNotFound)
	}
	drop := map[dns.Key]bool{}
	for _, r := range del {
		drop[dns.KeyOf(dns.Canonical(r, z))] = true
	}
	var out []libdns.RR
	for _, r := range rrs {
		if !drop[dns.KeyOf(r)] {
			out = append(out, r)
		}
	}
	for _, r := range add {
		out = append(out, dns.Canonical(r, z))
	}
	p.zones[z] = out
	return nil
}
