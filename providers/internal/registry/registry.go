// Package registry is the table of provider kinds that the DNS
// (providers/dns) and reverse DNS (providers/ptr) packages each keep:
// adapters register in init functions, the configuration looks kinds up
// by name.
package registry

import (
	"slices"
	"sync"
)

// Registry maps kind names to K.
type Registry[K any] struct {
	what string // "dns", "ptr": the prefix of panics
	mu   sync.RWMutex
	m    map[string]K
}

// New returns an empty registry whose panics start with what.
func New[K any](what string) *Registry[K] {
	return &Registry[K]{what: what, m: map[string]K{}}
}

// Register adds kind name. It panics when the name is empty or taken:
// registration happens in init functions.
func (r *Registry[K]) Register(name string, k K) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "" {
		panic(r.what + ": Register with an empty name")
	}
	if _, dup := r.m[name]; dup {
		panic(r.what + ": Register called twice for kind " + name)
	}
	r.m[name] = k
}

// Lookup returns the kind registered as name.
func (r *Registry[K]) Lookup(name string) (K, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.m[name]
	return k, ok
}

// Names returns the registered names, sorted.
func (r *Registry[K]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
