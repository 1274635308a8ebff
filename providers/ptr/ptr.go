// Package ptr is the interface between mailctl and the hosting APIs that set
// reverse DNS: the PTR record of an address in in-addr.arpa (RFC 1035
// section 3.5) or ip6.arpa (RFC 3596 section 2.5), which hosting providers
// keep in their own zones and let customers change only through their API.
// It holds a registry of provider kinds like providers/dns, sharing
// providers/base with it (and importing nothing of it).
//
// Hostnames are exchanged in canonical form (see Canonical): lower case,
// without the trailing dot. Adapters add or strip the dot as their API
// wants it. Most providers refuse a PTR whose hostname does not resolve
// forward to the same address (forward-confirmed reverse DNS, RFC 8601
// section 3 "iprev"), so PTRs are set after the A/AAAA records exist;
// adapters retry such refusals for a while (see ErrNotResolving).
//
// Adding a provider kind: write a package under providers/ptr/<kind> whose
// type implements Provider, register it from an init function with Register
// (declaring its configuration Attributes, the same ones as the kind's DNS
// provider when there is one, since both read the same provider block), add
// it to providers/ptr/all, and run the shared suite in providers/ptr/ptrtest
// against it.
package ptr

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mailctl/mailctl/providers/base"
	"github.com/mailctl/mailctl/providers/internal/registry"
)

// Provider reads and sets the reverse DNS of addresses held by one account.
type Provider interface {
	// Get returns the PTR hostname of ip in canonical form, or "" when
	// none is set. An address the account does not hold is an error
	// wrapping ErrNotFound.
	Get(ctx context.Context, ip netip.Addr) (string, error)
	// Set makes hostname the PTR of ip; it returns once the provider has
	// applied the change. Setting the current value again is not an error.
	// An empty hostname removes the PTR (or resets it to the provider's
	// default name where one always exists).
	Set(ctx context.Context, ip netip.Addr, hostname string) error
}

// Attribute documents one configuration attribute of a provider kind. It
// is the DNS registry's type too (providers/base): a provider block
// configures both.
type Attribute = base.Attribute

// Config is what a factory receives: the provider block's attributes (secrets
// included: do not log them) and a logger. It is the DNS registry's type
// too (providers/base), so one provider block configures both registries.
type Config = base.Config

// Factory builds a provider from its configuration. It must not do network
// I/O: credentials are checked by the first call.
type Factory func(cfg Config) (Provider, error)

// Kind is a registered provider kind.
type Kind struct {
	// Name is the label used in `provider "<name>" "label" {}`.
	Name string
	// Attributes lists every attribute the kind accepts.
	Attributes []Attribute
	New        Factory
}

var kinds = registry.New[Kind]("ptr")

// Sentinel errors.
var (
	// ErrUnknownKind is returned by New for a kind nobody registered.
	ErrUnknownKind = errors.New("ptr: unknown provider kind")
	// ErrConfig is wrapped when the configuration is incomplete or wrong.
	ErrConfig = errors.New("ptr: invalid provider configuration")
)

// Register adds a provider kind. It panics when the name is taken or the
// kind is incomplete: registration happens in init functions.
func Register(k Kind) {
	if k.New == nil {
		panic("ptr: Register with a nil factory for kind " + k.Name)
	}
	kinds.Register(k.Name, k)
}

// Lookup returns the registered kind name.
func Lookup(name string) (Kind, bool) { return kinds.Lookup(name) }

// Kinds returns the names of every registered kind, sorted.
func Kinds() []string { return kinds.Names() }

// New builds a provider of the registered kind after checking that every
// required attribute is set and no unknown attribute is given.
func New(kind string, cfg Config) (Provider, error) {
	k, ok := Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownKind, kind, strings.Join(Kinds(), ", "))
	}
	if err := k.Check(cfg.Attrs); err != nil {
		return nil, err
	}
	return k.New(cfg)
}

// Check reports missing required attributes and unknown ones.
func (k Kind) Check(attrs map[string]string) error {
	return base.CheckAttributes(k.Name, k.Attributes, attrs, ErrConfig)
}

// Canonical returns hostname as Get returns it: trimmed, lower case, without
// the trailing dot.
func Canonical(hostname string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(hostname), "."))
}

// CheckHostname reports why hostname cannot be a PTR target: it must be a
// fully qualified domain name of at least two labels, each of 1 to 63
// letters, digits, hyphens or underscores, 253 bytes at most (RFC 1035
// section 2.3.4). The empty name (remove the PTR) is accepted.
func CheckHostname(hostname string) error {
	h := Canonical(hostname)
	if h == "" {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("ptr: hostname %q is longer than 253 bytes", hostname)
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return fmt.Errorf("ptr: hostname %q is not fully qualified", hostname)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("ptr: hostname %q has an empty or too long label", hostname)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("ptr: hostname %q has the invalid character %q", hostname, c)
			}
		}
	}
	return nil
}
