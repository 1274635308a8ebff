// Package render prints plans, apply results and verify tables for people
// (Terraform-like text) and for programs (JSON with a format_version). Both
// views are rendered from the same plan data.
package render

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mailctl/mailctl/internal/formatversion"
	"github.com/mailctl/mailctl/plan"
)

// Style colours the human view; the zero value prints plain text.
type Style struct{ Color bool }

func (s Style) paint(code, text string) string {
	if !s.Color {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

func (s Style) symbol(a plan.Action) string {
	switch a {
	case plan.Create:
		return s.paint("32", "  +")
	case plan.Update:
		return s.paint("33", "  ~")
	case plan.Delete:
		return s.paint("31", "  -")
	case plan.Replace:
		return s.paint("35", "-/+")
	}
	return "   "
}

// Plan writes the human view of p.
func Plan(out io.Writer, p *plan.Plan, s Style) {
	// One write per line was a tenth of a 5000-domain plan's CPU (130 000
	// write calls): the plan is written through a buffer, flushed on return.
	w := bufio.NewWriterSize(out, 64<<10)
	defer w.Flush()
	if !p.Refreshed {
		fmt.Fprintln(w, "Note: -refresh=false: the real state was not read; every owned record is shown as it would be created.")
		fmt.Fprintln(w)
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "%s %s\n", s.paint("33", "Warning:"), warn)
	}
	if !p.HasChanges() {
		fmt.Fprintln(w, s.paint("32;1", "No changes.")+" Your mail setup matches the configuration.")
		writeNotes(w, p, s)
		return
	}
	fmt.Fprintln(w, "mailctl will perform the following actions:")
	for _, c := range p.Changes {
		if c.Action == plan.NoOp {
			continue
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  %s\n", s.paint("1", fmt.Sprintf("# %s will be %s", display(c.Address), c.Action.Past())))
		writeChange(w, c, s)
	}
	add, change, destroy := p.Counts()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%s %d to add, %d to change, %d to destroy.\n", s.paint("1", "Plan:"), add, change, destroy)
	writeNotes(w, p, s)
	writeTakeovers(w, p, s)
}

// writeTakeovers prints a framed warning per domain whose mail the plan
// takes away from another mail service (plan.MXTakeover), last, where it
// is seen before the confirmation.
func writeTakeovers(w io.Writer, p *plan.Plan, s Style) {
	for _, t := range p.MXTakeovers {
		where := t.Service
		if where == "" {
			where = "another mail service"
		}
		bar := s.paint("33", "│")
		fmt.Fprintln(w)
		fmt.Fprintln(w, s.paint("33", "╷"))
		fmt.Fprintf(w, "%s %s mail for %s is taken away from %s\n", bar, s.paint("33;1", "Warning:"), t.Domain, where)
		fmt.Fprintln(w, bar)
		for _, l := range t.Describe() {
			fmt.Fprintf(w, "%s %s\n", bar, l)
		}
		fmt.Fprintln(w, s.paint("33", "╵"))
	}
}

// writeNotes prints the notes of unchanged resources after the summary.
func writeNotes(w io.Writer, p *plan.Plan, s Style) {
	notes := p.Notes()
	if len(notes) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, s.paint("1", "Notes:"))
	for _, n := range notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
}

func writeChange(w io.Writer, c plan.Change, s Style) {
	switch c.Type {
	case plan.KindDNSRRset:
		fmt.Fprintf(w, "%s %s %s  (zone %s at %s)\n", s.symbol(c.Action), c.Name, c.RRType, c.Zone, strings.TrimPrefix(c.Provider, "provider."))
		var bvals, avals []string
		bttl, attl := 0, 0
		if c.Before != nil {
			bvals, bttl = c.Before.Values, c.Before.TTL
		}
		if c.After != nil {
			avals, attl = c.After.Values, c.After.TTL
		}
		for _, v := range bvals {
			if !slices.Contains(avals, v) {
				fmt.Fprintf(w, "      %s %s\n", s.paint("31", "-"), quote(c.RRType, v))
			}
		}
		for _, v := range avals {
			sym := s.paint("32", "+")
			if slices.Contains(bvals, v) {
				sym = " "
			}
			fmt.Fprintf(w, "      %s %s\n", sym, quote(c.RRType, v))
		}
		if c.AfterUnknown {
			src := ""
			if c.Source != "" {
				src = " (from " + c.Source + ")"
			}
			fmt.Fprintf(w, "      %s (known after apply)%s\n", s.paint("32", "+"), src)
		}
		switch {
		case c.Action == plan.Delete:
			fmt.Fprintf(w, "        ttl: %d\n", bttl)
		case c.Before != nil && bttl != attl:
			fmt.Fprintf(w, "        ttl: %d -> %d\n", bttl, attl)
		default:
			fmt.Fprintf(w, "        ttl: %d\n", attl)
		}
	case plan.KindPTR:
		fmt.Fprintf(w, "%s reverse DNS of %s  (at %s)\n", s.symbol(c.Action), c.Name, strings.TrimPrefix(c.Provider, "provider."))
		if c.Before != nil && len(c.Before.Values) > 0 {
			fmt.Fprintf(w, "      %s %s\n", s.paint("31", "-"), c.Before.Values[0])
		}
		if c.After != nil && len(c.After.Values) > 0 {
			fmt.Fprintf(w, "      %s %s\n", s.paint("32", "+"), c.After.Values[0])
		}
	default:
		fmt.Fprintf(w, "%s %s\n", s.symbol(c.Action), c.Address)
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "        # %s\n", n)
	}
}

func quote(typ, v string) string {
	if typ == "TXT" {
		return fmt.Sprintf("%q", v)
	}
	return v
}

// JSON document of a plan.
type jsonPlan struct {
	FormatVersion formatversion.Version `json:"format_version"`
	ConfigDigest  string                `json:"config_digest"`
	Refreshed     bool                  `json:"refreshed"`
	Targets       []string              `json:"targets,omitempty"`
	State         map[string]string     `json:"state"`
	Changes       []jsonChange          `json:"resource_changes"`
	Summary       jsonSummary           `json:"summary"`
	Warnings      []string              `json:"warnings,omitempty"`
	// MXTakeovers: see plan.MXTakeover.
	MXTakeovers []plan.MXTakeover `json:"mx_takeovers,omitempty"`
	// Notes are those of unchanged resources (plan.Plan.Notes); each
	// resource change carries its own.
	Notes []string `json:"notes,omitempty"`
}

type jsonChange struct {
	plan.Change
	Actions []string `json:"actions"`
}

type jsonSummary struct {
	Add     int `json:"add"`
	Change  int `json:"change"`
	Destroy int `json:"destroy"`
}

// PlanJSON writes the machine-readable plan: every owned resource, with
// actions ["no-op"] for those that already match.
func PlanJSON(w io.Writer, p *plan.Plan) error {
	add, change, destroy := p.Counts()
	doc := jsonPlan{
		FormatVersion: p.FormatVersion, ConfigDigest: p.ConfigDigest, Refreshed: p.Refreshed,
		Targets: p.Targets, State: p.State, Warnings: p.Warnings, Notes: p.Notes(), MXTakeovers: p.MXTakeovers,
		Summary: jsonSummary{add, change, destroy},
		Changes: []jsonChange{},
	}
	for _, c := range p.Changes {
		doc.Changes = append(doc.Changes, jsonChange{Change: c, Actions: actions(c.Action)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func actions(a plan.Action) []string {
	if a == plan.Replace {
		return []string{"delete", "create"}
	}
	return []string{a.Verb()}
}
