package dav

import (
	"fmt"
	"strings"

	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav/carddav"
)

// matchCard reports whether card matches an addressbook-query filter
// (RFC 6352 10.5). go-webdav v0.6.0's carddav.Match looks at the first
// field of a name only, compares case-sensitively and ignores
// param-filter, so a contact whose second EMAIL matches, or that differs
// in case only, would be left out; and an empty filter matches nothing.
// This one looks at every field, folds case unless the collation is
// i;octet, and lets a filter without prop-filter match every card.
func matchCard(q *carddav.AddressBookQuery, fold bool, card vcard.Card) (bool, error) {
	if len(q.PropFilters) == 0 {
		return true, nil
	}
	all := q.FilterTest == carddav.FilterAllOf
	for i := range q.PropFilters {
		ok, err := matchCardProp(&q.PropFilters[i], fold, card)
		if err != nil {
			return false, err
		}
		if ok && !all {
			return true, nil
		}
		if !ok && all {
			return false, nil
		}
	}
	return all, nil
}

func matchCardProp(pf *carddav.PropFilter, fold bool, card vcard.Card) (bool, error) {
	fields := card[strings.ToUpper(pf.Name)]
	if len(fields) == 0 {
		return pf.IsNotDefined, nil
	}
	if pf.IsNotDefined {
		return false, nil
	}
	all := pf.Test == carddav.FilterAllOf
	n := len(pf.TextMatches) + len(pf.Params)
	if n == 0 {
		return true, nil
	}
	for _, tm := range pf.TextMatches {
		ok := false
		for _, f := range fields {
			m, err := matchCardText(tm, fold, f.Value)
			if err != nil {
				return false, err
			}
			if m {
				ok = true
				break
			}
		}
		if ok && !all {
			return true, nil
		}
		if !ok && all {
			return false, nil
		}
	}
	for _, p := range pf.Params {
		ok := false
		for _, f := range fields {
			vals := f.Params[strings.ToUpper(p.Name)]
			switch {
			case len(vals) == 0:
				ok = ok || p.IsNotDefined
			case p.IsNotDefined:
			case p.TextMatch == nil:
				ok = true
			default:
				for _, v := range vals {
					m, err := matchCardText(*p.TextMatch, fold, v)
					if err != nil {
						return false, err
					}
					ok = ok || m
				}
			}
		}
		if ok && !all {
			return true, nil
		}
		if !ok && all {
			return false, nil
		}
	}
	return all, nil
}

func matchCardText(tm carddav.TextMatch, fold bool, value string) (bool, error) {
	text := tm.Text
	if fold {
		text, value = strings.ToLower(text), strings.ToLower(value)
	}
	var ok bool
	switch tm.MatchType {
	case carddav.MatchEquals:
		ok = value == text
	case carddav.MatchContains, "":
		ok = strings.Contains(value, text)
	case carddav.MatchStartsWith:
		ok = strings.HasPrefix(value, text)
	case carddav.MatchEndsWith:
		ok = strings.HasSuffix(value, text)
	default:
		return false, fmt.Errorf("unknown match-type %q", tm.MatchType)
	}
	return ok != tm.NegateCondition, nil
}
