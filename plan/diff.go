package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/providers/dns"
)

// DiffDNS compares each desired RRset (whose Zone is resolved) with the
// current records of its zone (keyed by ZoneKey) and returns one Change per
// RRset, NoOp when they already match. Only the records at the desired
// set's name and type, filtered by its ownership Prefix, are compared:
// every other record of the zone is left out of the diff, so apply never
// touches it.
func DiffDNS(want []desired.RRSet, current map[string][]libdns.RR) []Change {
	var out []Change
	for _, w := range want {
		rel := dns.RelativeName(w.Name, w.Zone)
		before := owned(current[ZoneKey(w.Provider, w.Zone)], rel, w.Type, w.Prefix)
		c := Change{
			Address:  w.Address(),
			Type:     KindDNSRRset,
			Domain:   w.Domain,
			Provider: w.Provider,
			Zone:     w.Zone,
			Name:     rel,
			RRType:   w.Type,
			Before:   before,
			Source:   w.Source,
			Notes:    slices.Clone(w.Notes),
		}
		if w.KeepValues {
			c.After, c.Notes = keep(w, before, c.Notes)
			c.Action = action(before, c.After)
			out = append(out, c)
			continue
		}
		if w.Unknown {
			c.AfterUnknown = true
			c.After = &RRSet{TTL: w.TTL}
			c.Action = Create
			if !before.Empty() {
				c.Action = Update
			}
			out = append(out, c)
			continue
		}
		if len(w.Values) > 0 {
			vals := make([]string, len(w.Values))
			for i, v := range w.Values {
				vals[i] = normValue(w.Type, v)
			}
			slices.Sort(vals)
			c.After = &RRSet{TTL: w.TTL, Values: slices.Compact(vals)}
		}
		c.Action = action(before, c.After)
		if c.Action == Replace && updatesInPlace(w.Provider) {
			c.Action = Update
		}
		out = append(out, c)
	}
	return out
}

// updatesInPlace reports whether the provider at address
// provider.KIND.NAME changes an RRset's values in place (see
// dns.Capabilities.UpdatesInPlace), so that a value change is "to change"
// rather than "to add" and "to destroy".
func updatesInPlace(provider string) bool {
	parts := strings.SplitN(provider, ".", 3)
	if len(parts) < 2 {
		return false
	}
	k, ok := dns.Lookup(parts[1])
	return ok && k.Capabilities.UpdatesInPlace()
}

// keep is the After of a set that owns only its TTL: the current values
// with the desired TTL, or the current set unchanged when the desired set
// is emptied (destroy: the values were never mailctl's). It adds how long
// to wait before KeepUntil, from the TTL resolvers may still cache.
func keep(w desired.RRSet, before *RRSet, notes []string) (*RRSet, []string) {
	until := cmp.Or(w.KeepUntil, "the values change")
	switch {
	case before.Empty():
		return nil, append(notes, fmt.Sprintf("there is no %s record to keep: none is created before %s", w.Type, until))
	case len(w.Values) == 0:
		return before, notes
	case before.TTL > w.TTL:
		notes = append(notes, fmt.Sprintf("wait %s (the old %s TTL) after this apply before %s", FormatTTL(before.TTL), w.Type, until))
	default:
		notes = append(notes, fmt.Sprintf("the %s TTL is already %s: go on with %s once the apply that lowered it is older than the old TTL", w.Type, FormatTTL(before.TTL), until))
	}
	return &RRSet{TTL: w.TTL, Values: slices.Clone(before.Values)}, notes
}

// FormatTTL prints a TTL in seconds the short way: 3600 as "1h", 300 as
// "5m", 90 as "1m30s".
func FormatTTL(ttl int) string {
	s := secs(ttl).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ZoneKey identifies a zone at a provider.
func ZoneKey(provider, zone string) string { return provider + "/" + zone }

// owned returns the records at name/type whose data starts with prefix.
func owned(records []libdns.RR, name, typ, prefix string) *RRSet {
	var set *RRSet
	for _, r := range records {
		if !strings.EqualFold(r.Name, name) || !strings.EqualFold(dns.TXTLike(r.Type), typ) {
			continue
		}
		if prefix != "" && !strings.HasPrefix(strings.ToLower(r.Data), prefix) {
			continue
		}
		if set == nil {
			set = &RRSet{TTL: int(r.TTL.Seconds())}
		}
		// An RRset has one TTL (RFC 2181 section 5.2); keep the smallest
		// so a mixed set shows as a TTL change.
		set.TTL = min(set.TTL, int(r.TTL.Seconds()))
		set.Values = append(set.Values, normValue(typ, r.Data))
	}
	if set != nil {
		slices.Sort(set.Values)
		set.Values = slices.Compact(set.Values)
	}
	return set
}

func action(before, after *RRSet) Action {
	switch {
	case before.Empty() && after.Empty():
		return NoOp
	case before.Empty():
		return Create
	case after.Empty():
		return Delete
	case slices.Equal(before.Values, after.Values) && before.TTL == after.TTL:
		return NoOp
	}
	for _, v := range after.Values {
		if slices.Contains(before.Values, v) {
			return Update
		}
	}
	return Replace
}

// normValue puts record data in the form the diff compares: TXT text as is,
// other types lower case with single spaces.
func normValue(typ string, v string) string {
	if strings.EqualFold(typ, "TXT") {
		return v
	}
	return strings.ToLower(strings.Join(strings.Fields(v), " "))
}

// DNSEdits returns what apply deletes and adds for a DNS change: for an
// unchanged TTL only the values that differ, otherwise the whole set.
func DNSEdits(c Change) (del, add []libdns.RR) {
	rr := func(ttl int, v string) libdns.RR {
		return libdns.RR{Name: c.Name, Type: c.RRType, TTL: secs(ttl), Data: v}
	}
	var bvals, avals []string
	bttl, attl := 0, 0
	if c.Before != nil {
		bvals, bttl = c.Before.Values, c.Before.TTL
	}
	if c.After != nil {
		avals, attl = c.After.Values, c.After.TTL
	}
	sameTTL := bttl == attl
	for _, v := range bvals {
		if !sameTTL || !slices.Contains(avals, v) {
			del = append(del, rr(bttl, v))
		}
	}
	for _, v := range avals {
		if !sameTTL || !slices.Contains(bvals, v) {
			add = append(add, rr(attl, v))
		}
	}
	return del, add
}

// PTRAction is the action for a reverse DNS change: a PTR holds one name,
// so a different name is an update, not a replacement.
func PTRAction(before, after *RRSet) Action {
	a := action(before, after)
	if a == Replace {
		return Update
	}
	return a
}
