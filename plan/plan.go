// Package plan is mailctl's plan model and diff engine: pure data that says
// how the real state (DNS records at providers, reverse DNS, the server)
// differs from the configuration, one Change per resource address, in a
// deterministic order that serialises to JSON and back.
//
// The diff engine compares RRsets (RFC 2181 section 5: one name, one type)
// after normalisation, and only at the names and types mailctl owns (see
// Owned): records of other names or types in a zone are never changed.
package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailctl/mailctl/internal/formatversion"
)

// FormatVersion is the version of the plan's JSON document.
const FormatVersion = formatversion.Current

// Action is what apply does to a resource. Its value is the symbol printed
// in the human plan.
type Action string

// Actions.
const (
	NoOp    Action = ""
	Create  Action = "+"
	Update  Action = "~"
	Delete  Action = "-"
	Replace Action = "-/+"
)

// Verb returns the JSON name of the action.
func (a Action) Verb() string {
	switch a {
	case Create:
		return "create"
	case Update:
		return "update"
	case Delete:
		return "delete"
	case Replace:
		return "replace"
	}
	return "no-op"
}

// MarshalText writes the action's verb.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.Verb()), nil }

// UnmarshalText reads a verb written by MarshalText.
func (a *Action) UnmarshalText(b []byte) error {
	for _, c := range []Action{NoOp, Create, Update, Delete, Replace} {
		if c.Verb() == string(b) {
			*a = c
			return nil
		}
	}
	return fmt.Errorf("plan: unknown action %q", b)
}

// Past returns the phrase used in "will be created".
func (a Action) Past() string {
	switch a {
	case Create:
		return "created"
	case Update:
		return "updated in-place"
	case Delete:
		return "destroyed"
	case Replace:
		return "replaced"
	}
	return "unchanged"
}

// RRSet is the desired or current content of one owned record set.
type RRSet struct {
	TTL    int      `json:"ttl"`
	Values []string `json:"values"`
}

// Empty reports whether the set holds no record.
func (s *RRSet) Empty() bool { return s == nil || len(s.Values) == 0 }

// Kind is the type of a resource, its address's first part.
type Kind string

// The kinds of resources a plan changes.
const (
	KindDNSRRset Kind = "dns_rrset" // a DNS record set at a provider
	KindPTR      Kind = "ptr"       // the reverse DNS of an address
	KindServer   Kind = "server"    // a deployed mail server
	KindUser     Kind = "user"      // a mailbox on a server
	KindDKIM     Kind = "dkim"      // a domain's DKIM key rotation
)

// Change is one resource's planned change.
type Change struct {
	// Address is the resource address, e.g. dns.example.org._dmarc.TXT.
	Address string `json:"address"`
	// Type is the resource type.
	Type   Kind   `json:"type"`
	Action Action `json:"action"`
	// Domain the resource belongs to (for -target matching).
	Domain string `json:"domain,omitempty"`

	// DNS resources.
	Provider string `json:"provider,omitempty"` // provider.KIND.NAME
	Zone     string `json:"zone,omitempty"`
	Name     string `json:"name,omitempty"` // relative to Zone, "@" for the apex
	RRType   string `json:"rrtype,omitempty"`
	Before   *RRSet `json:"before"`
	After    *RRSet `json:"after"`
	// AfterUnknown is true when After is only known once apply has run an
	// earlier step (DKIM keys generated on the server).
	AfterUnknown bool `json:"after_unknown,omitempty"`
	// Source names the resource whose apply makes After known.
	Source string `json:"source,omitempty"`

	// Server holds the before/after of a server resource.
	Server *ServerChange `json:"server,omitempty"`

	// DKIM holds the steps of a DKIM rotation resource (type dkim, see
	// plan/dkimrotate), in the order apply runs them.
	DKIM []DKIMStep `json:"dkim_steps,omitempty"`

	// Notes are human remarks shown under the change.
	Notes []string `json:"notes,omitempty"`
}

// Plan is what `mailctl plan` computes and `mailctl apply` executes.
type Plan struct {
	FormatVersion formatversion.Version `json:"format_version"`
	// ConfigDigest identifies the configuration the plan was made from.
	ConfigDigest string `json:"config_digest"`
	// State records a digest of each input that was read (one per zone,
	// per server), so that apply can refuse a stale plan.
	State   map[string]string `json:"state"`
	Targets []string          `json:"targets,omitempty"`
	// Refreshed is false for -refresh=false plans.
	Refreshed bool     `json:"refreshed"`
	Changes   []Change `json:"resource_changes"`
	// Warnings are problems worth telling that do not stop the plan.
	Warnings []string `json:"warnings,omitempty"`
	// MXTakeovers are the domains whose mail the plan takes away from
	// another mail service without a migration (FindMXTakeovers); apply
	// refuses them unless allowed.
	MXTakeovers []MXTakeover `json:"mx_takeovers,omitempty"`
}

// Counts returns how many resources the plan adds, changes and destroys; a
// replacement counts as one add and one destroy, as in Terraform.
func (p *Plan) Counts() (add, change, destroy int) {
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			add++
		case Update:
			change++
		case Delete:
			destroy++
		case Replace:
			add++
			destroy++
		}
	}
	return
}

// Notes returns the notes of the resources that do not change, each as
// "address: note", in address order: what the plan has to say besides its
// changes (a migration's next step, a policy that can now be raised). The
// notes of changing resources are shown with their change.
func (p *Plan) Notes() []string {
	var out []string
	for _, c := range p.Changes {
		if c.Action != NoOp {
			continue
		}
		for _, n := range c.Notes {
			out = append(out, c.Address+": "+n)
		}
	}
	return out
}

// HasChanges reports whether applying the plan would change anything.
func (p *Plan) HasChanges() bool {
	for _, c := range p.Changes {
		if c.Action != NoOp {
			return true
		}
	}
	return false
}

// Sort orders changes by address for a deterministic plan.
func (p *Plan) Sort() {
	slices.SortFunc(p.Changes, func(a, b Change) int {
		return cmp.Compare(a.Address, b.Address)
	})
}

// Selected reports whether a change matches the -target addresses: an
// address matches itself and every address that extends it after a "."
// separator, within the same domain.
func Selected(c Change, targets []string) bool {
	if len(targets) == 0 {
		return true
	}
	for _, t := range targets {
		if c.Address == t {
			return true
		}
		if !strings.HasPrefix(c.Address, t+".") {
			continue
		}
		// "dns.example.org" must not select "dns.example.org.uk.MX".
		if c.Domain != "" && strings.HasPrefix(t, "dns.") && len(t)-len("dns.") < len(c.Domain) {
			continue
		}
		return true
	}
	return false
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }
