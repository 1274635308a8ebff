// Package plantest holds test helpers for the plan engine: an in-memory DNS
// provider that holds records (a fake that holds data, not expectations).
package plantest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
)

// Memory is a DNS provider that keeps zones in memory. It is safe for
// concurrent use and counts calls.
type Memory struct {
	mu    sync.Mutex
	zones map[string][]libdns.RR
	// Calls counts Records and Apply calls.
	Calls int
}

var _ dns.Provider = (*Memory)(nil)
var _ dns.Zoner = (*Memory)(nil)

// NewMemory returns a provider holding the given (empty) zones.
func NewMemory(zones ...string) *Memory {
	m := &Memory{zones: map[string][]libdns.RR{}}
	for _, z := range zones {
		m.zones[z] = nil
	}
	return m
}

// Seed adds records to a zone (creating it).
func (m *Memory) Seed(zone string, rrs ...libdns.RR) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.zones[zone]; !ok {
		m.zones[zone] = []libdns.RR{}
	}
	for _, r := range rrs {
		m.zones[zone] = append(m.zones[zone], dns.Canonical(r, zone))
	}
}

// Zones lists the zones.
func (m *Memory) Zones(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for z := range m.zones {
		out = append(out, z)
	}
	slices.Sort(out)
	return out, nil
}

// Records returns a copy of the zone's records.
func (m *Memory) Records(ctx context.Context, zone string) ([]libdns.RR, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Calls++
	rrs, ok := m.zones[zone]
	if !ok {
		return nil, fmt.Errorf("zone %s not found", zone)
	}
	return slices.Clone(rrs), nil
}

// Apply deletes exactly del (by name, type, data) and adds add.
func (m *Memory) Apply(ctx context.Context, zone string, del, add []libdns.RR) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Calls++
	rrs, ok := m.zones[zone]
	if !ok {
		return fmt.Errorf("zone %s not found", zone)
	}
	for _, d := range del {
		d = dns.Canonical(d, zone)
		i := slices.IndexFunc(rrs, func(r libdns.RR) bool {
			return strings.EqualFold(r.Name, d.Name) && r.Type == d.Type && strings.EqualFold(r.Data, d.Data)
		})
		if i < 0 {
			return fmt.Errorf("delete %s %s %q: no such record", d.Name, d.Type, d.Data)
		}
		rrs = slices.Delete(rrs, i, i+1)
	}
	for _, a := range add {
		rrs = append(rrs, dns.Canonical(a, zone))
	}
	m.zones[zone] = rrs
	return nil
}
