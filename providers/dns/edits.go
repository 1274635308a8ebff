package dns

import (
	"slices"

	"github.com/libdns/libdns"
)

// RRset is one RRset's share of a change: the records of del and of add at
// one name and type (RFC 2181 section 5), in Canonical form.
type RRset struct {
	Name, Type string
	Del, Add   []libdns.RR
}

// GroupRRsets sorts the records of del and add into RRsets, in the order in
// which each set first appears (del, then add), each record made Canonical
// for zone. prepare, when not nil, is given each canonical record of add and
// returns it as the provider will store it (a TTL raised to its minimum) or
// an error for a record the provider refuses, which GroupRRsets returns as
// is; it is for adapters that must change records one by one with no
// transaction, so that they can refuse a change before any call.
func GroupRRsets(zone string, del, add []libdns.RR, prepare func(libdns.RR) (libdns.RR, error)) ([]RRset, error) {
	type key struct{ name, typ string }
	index := map[key]int{}
	var sets []RRset
	get := func(c libdns.RR) *RRset {
		k := key{c.Name, c.Type}
		i, ok := index[k]
		if !ok {
			i = len(sets)
			index[k] = i
			sets = append(sets, RRset{Name: c.Name, Type: c.Type})
		}
		return &sets[i]
	}
	for _, r := range del {
		c := Canonical(r, zone)
		s := get(c)
		s.Del = append(s.Del, c)
	}
	for _, r := range add {
		c := Canonical(r, zone)
		if prepare != nil {
			var err error
			if c, err = prepare(c); err != nil {
				return nil, err
			}
		}
		s := get(c)
		s.Add = append(s.Add, c)
	}
	return sets, nil
}

// Edit pairs a record the provider stores (Old) with the canonical record
// it is to become (New).
type Edit[R any] struct {
	Old R
	New libdns.RR
}

// Edits is how one RRset changes when records cannot be replaced all at
// once, so that the set is never empty (an empty MX set sends mail to the
// domain's address records, RFC 5321 section 5.1) nor holds an old and a
// new single value side by side (two SPF records, RFC 7208 section 4.5):
// first the records of Keep and Change are changed in place, then Create
// is created, and only then is Delete deleted.
type Edits[R any] struct {
	// Keep holds the old records whose data is also added: at most their
	// TTL changes, to that of New (the adapter may skip an unchanged TTL).
	Keep []Edit[R]
	// Change holds old records to change in place into other data.
	Change []Edit[R]
	// Create holds the added records no old record could take.
	Create []libdns.RR
	// Delete holds the old records left over.
	Delete []R
}

// PairEdits pairs old, the records the provider stores for one RRset's Del
// (rr gives each one's Canonical form), with the set's records to add: an
// old record with the data of an added one is kept (Keep, in the order of
// add); each other added record, in order, changes in place the first old
// record left for which fits is true (Change; nil fits takes any, a
// provider that cannot change some records in place says so there); the
// added records left are created and the old records left deleted, in
// their orders. The result depends on its arguments' order only, so that a
// plan is applied the same way every time.
func PairEdits[R any](old []R, add []libdns.RR, rr func(R) libdns.RR, fits func(old R, add libdns.RR) bool) Edits[R] {
	var e Edits[R]
	left := slices.Clone(old)
	var rest []libdns.RR
	for _, a := range add {
		i := slices.IndexFunc(left, func(r R) bool { return KeyOf(rr(r)) == KeyOf(a) })
		if i < 0 {
			rest = append(rest, a)
			continue
		}
		e.Keep = append(e.Keep, Edit[R]{Old: left[i], New: a})
		left = slices.Delete(left, i, i+1)
	}
	for _, a := range rest {
		i := slices.IndexFunc(left, func(r R) bool { return fits == nil || fits(r, a) })
		if i < 0 {
			e.Create = append(e.Create, a)
			continue
		}
		e.Change = append(e.Change, Edit[R]{Old: left[i], New: a})
		left = slices.Delete(left, i, i+1)
	}
	if len(left) > 0 {
		e.Delete = left
	}
	return e
}
