package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
)

// suggest returns the candidate closest to word by edit distance, or ""
// when none is close enough to be a likely typo: at most 2 edits (a
// swapped pair of letters counts 2), 3 for words of 9 letters or more.
func suggest(word string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := levenshtein.Distance(strings.ToLower(word), strings.ToLower(c), nil)
		if bestDist < 0 || d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	limit := 2
	if len([]rune(word)) >= 9 {
		limit = 3
	}
	if bestDist < 0 || bestDist > limit {
		return ""
	}
	return best
}

// didYouMean is " Did you mean X?" when a candidate is close to word, else "".
func didYouMean(word string, candidates []string) string {
	if s := suggest(word, candidates); s != "" {
		return fmt.Sprintf(" Did you mean %q?", s)
	}
	return ""
}

// listValid joins the valid values for an error message, shortening a long
// list.
func listValid(vals []string) string {
	vals = append([]string(nil), vals...)
	sort.Strings(vals)
	const maxShown = 12
	if len(vals) > maxShown {
		return strings.Join(vals[:maxShown], ", ") + fmt.Sprintf(", ... (%d in all)", len(vals))
	}
	return strings.Join(vals, ", ")
}
