package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/mailctl/mailctl/server/sieve"
)

// Vacation is a user's `vacation { ... }` block: an out-of-office reply
// for users who do not write Sieve, compiled to a Sieve script.
type Vacation struct {
	Subject   string
	Body      string
	From      string
	Until     string // YYYY-MM-DD, inclusive, UTC; "" for no end
	Addresses []string
	Days      int
}

var vacationSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "subject"}, {Name: "body", Required: true}, {Name: "from"}, {Name: "until"},
	{Name: "addresses"}, {Name: "days"},
}}

// userSieve decodes the sieve attribute and the vacation block of a user
// block into u.Sieve, and checks the script: every error in it becomes a
// diagnostic at the script's file:line:col.
func (d *decoder) userSieve(u *User, c *hcl.BodyContent) {
	a := c.Attributes["sieve"]
	blocks := c.Blocks.OfType("vacation")
	if len(blocks) > 1 {
		d.errf(blocks[1].DefRange.Ptr(), "Duplicate vacation block", "%s has more than one vacation block.", u.Address)
	}
	if a != nil && len(blocks) > 0 {
		d.errf(blocks[0].DefRange.Ptr(), "Both sieve and vacation",
			"%s has a sieve script and a vacation block: put the vacation command in the script (see docs/config.md).", u.Address)
		return
	}
	if len(blocks) > 0 {
		v, ok := d.vacation(blocks[0])
		if !ok {
			return
		}
		if v.From != "" && !strings.EqualFold(v.From, u.Address) && !slices.Contains(u.Aliases, strings.ToLower(v.From)) {
			d.errf(c.Blocks.OfType("vacation")[0].DefRange.Ptr(), "Invalid vacation sender",
				"from %q is neither %s nor one of its aliases: the reply is signed for the user's own addresses only.", v.From, u.Address)
			return
		}
		u.Vacation = v
		u.Sieve = v.Script()
		if _, err := sieve.Compile("vacation", u.Sieve); err != nil {
			d.errf(blocks[0].DefRange.Ptr(), "Invalid vacation", "The vacation block does not compile: %v.", err)
		}
		return
	}
	if a == nil {
		return
	}
	v, ok := d.str(a)
	if !ok {
		return
	}
	u.Sieve = v.Str
	name, base := d.sieveSource(a, v.Str)
	_, err := sieve.Compile(name, v.Str)
	var list sieve.ErrorList
	if !errors.As(err, &list) {
		return
	}
	for _, e := range list {
		p := hcl.Pos{Line: e.Pos.Line + base.Line - 1, Column: e.Pos.Col}
		if e.Pos.Line == 1 {
			p.Column += base.Column - 1
		}
		end := p
		end.Column++
		d.errf(&hcl.Range{Filename: name, Start: p, End: end}, "Invalid Sieve script", "%s (user %s).", e.Msg, u.Address)
	}
}

// sieveSource names where a script's text comes from, for its errors: the
// file of file("x.sieve") (whose text is then shown in snippets), or the
// HCL file with the position the inline text starts at.
func (d *decoder) sieveSource(a *hcl.Attribute, text string) (string, hcl.Pos) {
	if call, ok := a.Expr.(*hclsyntax.FunctionCallExpr); ok && call.Name == "file" && len(call.Args) == 1 {
		if pv, diags := call.Args[0].Value(d.ctx); !diags.HasErrors() && pv.IsKnown() && !pv.IsNull() && pv.Type().FriendlyName() == "string" {
			p := expandHome(pv.AsString())
			if !filepath.IsAbs(p) && d.cfg.Dir != "." && d.cfg.Dir != "" {
				p = filepath.Join(d.cfg.Dir, p)
			}
			if d.cfg.Files != nil {
				if _, taken := d.cfg.Files[p]; !taken {
					d.cfg.Files[p] = &hcl.File{Body: hcl.EmptyBody(), Bytes: []byte(text)}
				}
			}
			return p, hcl.Pos{Line: 1, Column: 1}
		}
	}
	// A quoted HCL string is on one line; a heredoc's text starts on the
	// line after its "<<EOT".
	r := a.Expr.Range()
	if r.End.Line > r.Start.Line {
		return r.Filename, hcl.Pos{Line: r.Start.Line + 1, Column: 1}
	}
	return r.Filename, hcl.Pos{Line: r.Start.Line, Column: r.Start.Column + 1}
}

func (d *decoder) vacation(b *hcl.Block) (*Vacation, bool) {
	c, diags := b.Body.Content(vacationSchema)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return nil, false
	}
	v := &Vacation{Days: 7}
	ok := true
	v.Subject = d.plainStr(c.Attributes["subject"])
	v.Body = d.plainStr(c.Attributes["body"])
	if a := c.Attributes["from"]; a != nil {
		v.From = d.plainStr(a)
		if !validMailbox(strings.ToLower(v.From)) {
			d.errf(a.Expr.Range().Ptr(), "Invalid e-mail address", "from %q is not an e-mail address like name@example.org.", v.From)
			ok = false
		}
	}
	if a := c.Attributes["until"]; a != nil {
		v.Until = d.plainStr(a)
		if _, err := time.Parse("2006-01-02", v.Until); err != nil {
			d.errf(a.Expr.Range().Ptr(), "Invalid date", "until %q is not a date like 2026-08-31.", v.Until)
			ok = false
		}
	}
	if a := c.Attributes["addresses"]; a != nil {
		for _, s := range d.strList(a) {
			if !validMailbox(strings.ToLower(s)) {
				d.errf(a.Expr.Range().Ptr(), "Invalid e-mail address", "%q is not an e-mail address like name@example.org.", s)
				ok = false
			}
			v.Addresses = append(v.Addresses, s)
		}
	}
	if a := c.Attributes["days"]; a != nil {
		n, nok := d.num(a, 1, 365)
		ok = ok && nok
		v.Days = n
	}
	return v, ok
}

// Script is the Sieve text of the vacation block (RFC 5230).
func (v *Vacation) Script() string {
	var b strings.Builder
	b.WriteString("# generated from the vacation block\n")
	b.WriteString(`require ["vacation", "date", "relational"];` + "\n")
	indent := ""
	if v.Until != "" {
		fmt.Fprintf(&b, "if currentdate :zone \"+0000\" :value \"le\" \"date\" %s {\n", sieveQuote(v.Until))
		indent = "  "
	}
	fmt.Fprintf(&b, "%svacation :days %d", indent, v.Days)
	if v.Subject != "" {
		fmt.Fprintf(&b, " :subject %s", sieveQuote(v.Subject))
	}
	if v.From != "" {
		fmt.Fprintf(&b, " :from %s", sieveQuote(v.From))
	}
	if len(v.Addresses) > 0 {
		q := make([]string, len(v.Addresses))
		for i, a := range v.Addresses {
			q[i] = sieveQuote(a)
		}
		fmt.Fprintf(&b, " :addresses [%s]", strings.Join(q, ", "))
	}
	fmt.Fprintf(&b, " %s;\n", sieveQuote(v.Body))
	if v.Until != "" {
		b.WriteString("}\n")
	}
	return b.String()
}

// sieveQuote writes s as a Sieve quoted string (RFC 5228 2.4.2).
func sieveQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
