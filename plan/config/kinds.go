package config

import (
	"slices"
	"sort"
)

// Kinds are the provider kinds mailctl knows, with what they can do and the
// attributes they take. The adapters live in providers/dns and providers/ptr.
var Kinds = map[string]ProviderKind{
	"cloudflare": {Name: "cloudflare", Caps: CapDNS,
		Required: []string{"api_token"}, Optional: []string{"endpoint", "timeout"}, Secret: []string{"api_token"}},
	"ovh": {Name: "ovh", Caps: CapDNS | CapPTR,
		Required: []string{"endpoint", "application_key", "application_secret", "consumer_key"}, Optional: []string{"timeout"},
		Secret: []string{"application_secret", "consumer_key"}},
	"rfc2136": {Name: "rfc2136", Caps: CapDNS,
		Required: []string{"server", "tsig_name", "tsig_key"}, Optional: []string{"tsig_alg", "timeout"}, Secret: []string{"tsig_key"}},
	"zonefile": {Name: "zonefile", Caps: CapDNS,
		Required: []string{"dir"}, Optional: []string{"reload_command", "nameserver"}},
	"hetzner": {Name: "hetzner", Caps: CapPTR,
		Required: []string{"token"}, Optional: []string{"endpoint", "timeout"}, Secret: []string{"token"}},
}

// KindNames lists the known provider kinds, sorted.
func KindNames() []string {
	names := make([]string, 0, len(Kinds))
	for n := range Kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// KindsWith lists the kinds that have capability c, sorted.
func KindsWith(c Capability) []string {
	var names []string
	for _, n := range KindNames() {
		if Kinds[n].Caps&c != 0 {
			names = append(names, n)
		}
	}
	return names
}

func (k ProviderKind) isSecret(attr string) bool { return slices.Contains(k.Secret, attr) }
