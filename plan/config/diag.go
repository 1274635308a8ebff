package config

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/mailctl/mailctl/internal/formatversion"
)

// WriteDiagnostics prints each diagnostic as one line
// "file:line:col: Summary: detail" followed by the source snippet with the
// range underlined. files maps file names to parsed files (Config.Files).
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, color bool) {
	red, yellow, bold, reset := "", "", "", ""
	if color {
		red, yellow, bold, reset = "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
	}
	for _, d := range sortDiags(diags) {
		sev, c := "Error", red
		if d.Severity == hcl.DiagWarning {
			sev, c = "Warning", yellow
		}
		line := d.Summary
		if d.Detail != "" {
			line += ": " + strings.TrimSuffix(d.Detail, "\n")
		}
		if d.Subject == nil {
			fmt.Fprintf(w, "%s%s%s: %s\n", c, sev, reset, line)
			continue
		}
		r := *d.Subject
		fmt.Fprintf(w, "%s%s:%d:%d:%s %s%s:%s %s\n", bold, r.Filename, r.Start.Line, r.Start.Column, reset, c, sev, reset, line)
		if f := files[r.Filename]; f != nil {
			writeSnippet(w, f.Bytes, r)
		}
	}
}

func writeSnippet(w io.Writer, src []byte, r hcl.Range) {
	lines := strings.Split(string(src), "\n")
	if r.Start.Line < 1 || r.Start.Line > len(lines) {
		return
	}
	text := strings.TrimRight(lines[r.Start.Line-1], "\r")
	fmt.Fprintf(w, "%5d | %s\n", r.Start.Line, text)
	start := r.Start.Column - 1
	end := r.End.Column - 1
	if r.End.Line != r.Start.Line {
		end = len(text)
	}
	if start < 0 || start > len(text) {
		return
	}
	if end <= start {
		end = start + 1
	}
	if end > len(text) {
		end = max(len(text), start+1)
	}
	// Keep tabs so the caret lines up.
	pad := []byte(text[:start])
	for i, b := range pad {
		if b != '\t' {
			pad[i] = ' '
		}
	}
	fmt.Fprintf(w, "      | %s%s\n", pad, strings.Repeat("^", end-start))
}

// JSON diagnostics (format_version "1.0"), in the shape of Terraform's
// validate -json.
type jsonPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

type jsonRange struct {
	Filename string  `json:"filename"`
	Start    jsonPos `json:"start"`
	End      jsonPos `json:"end"`
}

type jsonDiag struct {
	Severity string     `json:"severity"`
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Range    *jsonRange `json:"range,omitempty"`
	Snippet  string     `json:"snippet,omitempty"`
}

// ValidateResult is the document printed by `mailctl validate -json`.
type ValidateResult struct {
	FormatVersion formatversion.Version `json:"format_version"`
	Valid         bool                  `json:"valid"`
	ErrorCount    int                   `json:"error_count"`
	WarningCount  int                   `json:"warning_count"`
	Diagnostics   []jsonDiag            `json:"diagnostics"`
}

// WriteDiagnosticsJSON prints diags as a ValidateResult.
func WriteDiagnosticsJSON(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	res := ValidateResult{FormatVersion: formatversion.Current, Diagnostics: []jsonDiag{}}
	for _, d := range sortDiags(diags) {
		jd := jsonDiag{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
			res.WarningCount++
		} else {
			res.ErrorCount++
		}
		if r := d.Subject; r != nil {
			jd.Range = &jsonRange{Filename: r.Filename,
				Start: jsonPos{r.Start.Line, r.Start.Column, r.Start.Byte},
				End:   jsonPos{r.End.Line, r.End.Column, r.End.Byte}}
			if f := files[r.Filename]; f != nil {
				if lines := strings.Split(string(f.Bytes), "\n"); r.Start.Line >= 1 && r.Start.Line <= len(lines) {
					jd.Snippet = strings.TrimRight(lines[r.Start.Line-1], "\r")
				}
			}
		}
		res.Diagnostics = append(res.Diagnostics, jd)
	}
	res.Valid = res.ErrorCount == 0
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// sortDiags orders diagnostics by file and position, keeping the order of
// those without a range.
func sortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	out := slices.Clone(diags)
	slices.SortStableFunc(out, func(a, b *hcl.Diagnostic) int {
		switch {
		case a.Subject == nil && b.Subject == nil:
			return 0
		case a.Subject == nil:
			return -1
		case b.Subject == nil:
			return 1
		}
		if c := strings.Compare(a.Subject.Filename, b.Subject.Filename); c != 0 {
			return c
		}
		return a.Subject.Start.Byte - b.Subject.Start.Byte
	})
	return out
}
