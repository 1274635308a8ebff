// Package dns is the interface between mailctl's diff engine and DNS hosting
// providers, with a registry of provider kinds and their capabilities.
//
// Records are github.com/libdns/libdns RR values: Name relative to the zone
// ("@" for the apex), Type in upper case, Data in zone-file presentation form
// (RFC 1035 section 5.1) with fully qualified targets, TTL in seconds. TXT
// data is the plain text of the record: the character-strings of RFC 1035
// section 3.3.14 unquoted and joined, so that a DKIM key longer than 255
// bytes (RFC 6376 section 3.6.2.2) compares equal however a provider splits
// it. SRV records follow RFC 2782.
//
// Adding a provider kind: write a package under providers/dns/<kind> whose
// type implements Provider (and Zoner when the account can list its zones),
// register it from an init function with Register, declaring its
// Capabilities and configuration Attributes, and run the shared suite in
// providers/dns/dnstest against it. Records must be returned in canonical
// form (see Canonical) and Apply must delete exactly the given records and add
// exactly the given ones, never touching other records at the same name.
// A kind that can change many RRsets of a zone in one operation (one file
// write, one UPDATE message) implements ZoneApplier too: apply then sends
// it each zone's changes at once. The shared suite checks both, and that
// no change ever leaves an RRset empty (dnstest.RunNeverEmpties). The
// configuration types and the HTTP client are those of providers/base.
package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/base"
	"github.com/mailctl/mailctl/providers/internal/registry"
)

// Provider reads and changes the records of DNS zones held by one account.
type Provider interface {
	// Records returns every record of zone (zone name without trailing
	// dot), in canonical form, with SOA, NS and DNSSEC records left out.
	// Providers that store TXT-like records under their own types (OVH's
	// SPF, DKIM, DMARC) report them as TXT.
	Records(ctx context.Context, zone string) ([]libdns.RR, error)
	// Apply changes one RRset (one name and type) of zone so that it ends
	// as the existing records, less exactly those in del (matched on name,
	// type and data, TTL aside), plus those in add. Other records,
	// including those at the same name and type, are left alone. The
	// order of the calls is the provider's: it may change a record in
	// place (a new TTL, or new data) or add before it deletes, so that a
	// set is never empty while its new contents are not (an MX set
	// emptied for a moment sends mail to the apex address). Providers
	// with Capabilities.Atomic do it all in one transaction (one RFC 2136
	// UPDATE message).
	Apply(ctx context.Context, zone string, del, add []libdns.RR) error
}

// Zoner is implemented by providers that can list the zones of the account,
// for zone discovery (see FindZone).
type Zoner interface {
	Zones(ctx context.Context) ([]string, error)
}

// Capabilities declares what a provider kind can hold and how it applies
// changes. The engine rejects records a provider cannot hold before any API
// call.
type Capabilities struct {
	// DNS is true for kinds that host forward zones.
	DNS bool
	// PTR is true for kinds that set reverse DNS (see providers/ptr).
	PTR bool
	// MinTTL is the smallest TTL the provider stores; lower TTLs are raised
	// to it, so the engine should raise them first to avoid endless diffs.
	MinTTL time.Duration
	// SRV is true when SRV records (RFC 2782) are supported.
	SRV bool
	// Atomic is true when Apply changes an RRset in one transaction.
	Atomic bool
	// InPlace is true when Apply changes a record's data in place (an
	// update of the record, not a delete and a create), so that a value
	// change of an RRset is an update in the plan, as for Atomic kinds.
	InPlace bool
	// ApexCNAME is false when the provider refuses a CNAME at the apex.
	ApexCNAME bool
}

// Attribute documents one configuration attribute of a provider kind (see
// base.Attribute: one provider block configures both registries).
type Attribute = base.Attribute

// Config is what a factory receives: the provider block's attributes as
// strings (secrets included: do not log them) and a logger.
type Config = base.Config

// Factory builds a provider from its configuration. It must not do network
// I/O: credentials are checked by the first call.
type Factory func(cfg Config) (Provider, error)

// Kind is a registered provider kind.
type Kind struct {
	// Name is the label used in `provider "<name>" "label" {}`.
	Name         string
	Capabilities Capabilities
	// Attributes lists every attribute the kind accepts.
	Attributes []Attribute
	New        Factory
}

var kinds = registry.New[Kind]("dns")

// ErrUnknownKind is returned by New for a kind nobody registered.
var ErrUnknownKind = errors.New("dns: unknown provider kind")

// ErrConfig is wrapped by factories when the configuration is incomplete.
var ErrConfig = errors.New("dns: invalid provider configuration")

// Register adds a provider kind. It panics when the name is taken or the
// kind is incomplete: registration happens in init functions.
func Register(k Kind) {
	if k.New == nil {
		panic("dns: Register with a nil factory for kind " + k.Name)
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
	return CheckAttributes(k.Name, k.Attributes, attrs, ErrConfig)
}

// CheckAttributes reports the required attributes of kind missing from
// given and the given ones kind does not declare, each wrapping errConfig
// (see base.CheckAttributes).
func CheckAttributes(kind string, declared []Attribute, given map[string]string, errConfig error) error {
	return base.CheckAttributes(kind, declared, given, errConfig)
}

// FindZone returns the longest zone of zones that contains domain (the
// domain itself or a parent on a label boundary), or "" when none does.
// Comparison ignores case and trailing dots; the zone is returned as given.
// To look up many domains in one list, build a ZoneIndex once.
func FindZone(domain string, zones []string) string {
	return NewZoneIndex(zones).Find(domain)
}

// ZoneIndex finds the zone of a domain in a list of zones in time
// proportional to the domain's labels, not to the list's length.
type ZoneIndex struct {
	zones map[string]string // normalized name: the first zone given so
}

// NewZoneIndex indexes zones for Find.
func NewZoneIndex(zones []string) *ZoneIndex {
	x := &ZoneIndex{zones: make(map[string]string, len(zones))}
	for _, z := range zones {
		zn := normName(z)
		if _, dup := x.zones[zn]; zn != "" && !dup {
			x.zones[zn] = z
		}
	}
	return x
}

// Find returns the longest indexed zone that contains domain, as FindZone.
func (x *ZoneIndex) Find(domain string) string {
	d := normName(domain)
	for d != "" {
		if z, ok := x.zones[d]; ok {
			return z
		}
		_, parent, found := strings.Cut(d, ".")
		if !found {
			break
		}
		d = parent
	}
	return ""
}

func normName(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

// ErrUnsupported is wrapped by Capabilities.Check for records a provider
// cannot hold.
var ErrUnsupported = errors.New("dns: record not supported by provider")

// Check reports why a provider with these capabilities cannot hold rr (a
// canonical record), so that the engine rejects it before any API call.
// TTLs below MinTTL are not an error: see RaiseTTL.
func (c Capabilities) Check(rr libdns.RR) error {
	switch {
	case !c.DNS:
		return fmt.Errorf("%w: %s %s: the provider does not host DNS zones", ErrUnsupported, rr.Name, rr.Type)
	case rr.Type == "SRV" && !c.SRV:
		return fmt.Errorf("%w: %s SRV: the provider has no SRV records", ErrUnsupported, rr.Name)
	case rr.Type == "CNAME" && rr.Name == "@" && !c.ApexCNAME:
		return fmt.Errorf("%w: CNAME at the zone apex", ErrUnsupported)
	case Hidden(rr.Type):
		return fmt.Errorf("%w: %s %s records are not managed by mailctl", ErrUnsupported, rr.Name, rr.Type)
	}
	return nil
}

// UpdatesInPlace reports whether a value change of an RRset is an update
// at this provider kind rather than a replacement.
func (c Capabilities) UpdatesInPlace() bool { return c.Atomic || c.InPlace }

// RaiseTTL returns rr with its TTL raised to MinTTL, as the provider would
// store it, so that the next plan does not see a difference.
func (c Capabilities) RaiseTTL(rr libdns.RR) libdns.RR {
	if rr.TTL < c.MinTTL {
		rr.TTL = c.MinTTL
	}
	return rr
}
