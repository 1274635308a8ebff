package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/mailctl/mailctl/internal/formatversion"
)

// jsonReport is the -json document.
type jsonReport struct {
	FormatVersion formatversion.Version `json:"format_version"`
	Results       []Result              `json:"results"`
	Summary       Summary               `json:"summary"`
}

// WriteJSON writes the report as one JSON document with format_version,
// results[] and summary counts.
func WriteJSON(w io.Writer, r Report) error {
	res := r.Results
	if res == nil {
		res = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport{FormatVersion: FormatVersion, Results: res, Summary: r.Summary()})
}

const (
	ansiReset  = "\x1b[0m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiDim    = "\x1b[2m"
	ansiBold   = "\x1b[1m"
)

func statusColor(s Status) string {
	switch s {
	case Pass:
		return ansiGreen
	case Warn:
		return ansiYellow
	case Fail:
		return ansiRed
	}
	return ansiDim
}

// WriteTable writes the report as a table (check, target, status, detail),
// with the fix line under each result that did not pass, then a summary
// line.
func WriteTable(w io.Writer, r Report, color bool) error {
	wc, wt := len("CHECK"), len("TARGET")
	for _, res := range r.Results {
		wc = max(wc, utf8.RuneCountInString(res.Check))
		wt = max(wt, utf8.RuneCountInString(res.Target))
	}
	var b strings.Builder
	pad := func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-utf8.RuneCountInString(s))) }
	head := pad("CHECK", wc) + "  " + pad("TARGET", wt) + "  " + pad("STATUS", 6) + "  DETAIL"
	if color {
		head = ansiBold + head + ansiReset
	}
	b.WriteString(head + "\n")
	for _, res := range r.Results {
		st := pad(res.Status.String(), 6)
		if color {
			st = statusColor(res.Status) + st + ansiReset
		}
		fmt.Fprintf(&b, "%s  %s  %s  %s\n", pad(res.Check, wc), pad(res.Target, wt), st, res.Detail)
		if res.Status != Pass && res.Fix != "" {
			fix := "fix: " + res.Fix
			if color {
				fix = ansiDim + fix + ansiReset
			}
			fmt.Fprintf(&b, "%s  %s\n", strings.Repeat(" ", wc+2+wt+2+6), fix)
		}
	}
	s := r.Summary()
	line := fmt.Sprintf("\n%d passed, %d warnings, %d failed, %d skipped.\n", s.Pass, s.Warn, s.Fail, s.Skip)
	if color && s.Fail > 0 {
		line = "\n" + ansiRed + strings.TrimPrefix(line, "\n") + ansiReset
	}
	b.WriteString(line)
	_, err := io.WriteString(w, b.String())
	return err
}
