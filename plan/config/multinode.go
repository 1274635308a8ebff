package config

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	serverconfig "github.com/mailctl/mailctl/server/config"
)

// Several servers per domain (issue 20): a domain names its nodes with
// `servers = [server.a, server.b]` instead of `server = server.a`, and
// nodes that serve the same domains share one mail store, a PostgreSQL
// database named in each server's `store { postgres = "..." }` block.

// DefaultMXPriority is the MX preference of every node of a domain whose
// mx_priority does not say otherwise: equal preferences spread incoming
// mail over the nodes (RFC 5321 section 5.1).
const DefaultMXPriority = 10

// Store is a server's `store` block: where it keeps mail. Nil on the
// server: the embedded store in its data directory.
type Store struct {
	// Postgres is the connection URL of the PostgreSQL database, always
	// sensitive (it holds the database password). Empty when it was not
	// known (validate without secrets).
	Postgres Value
	// QueueLease is how long a node holds an outbound message it is
	// sending before another node of the store may take it over; 0: the
	// server's default (2m).
	QueueLease time.Duration
	DeclRange  hcl.Range
}

// sameStore reports whether servers a and b keep their mail in the same
// store, or may (a URL unknown without secrets is taken as the same).
func sameStore(a, b *Server) bool {
	if a.Store == nil || b.Store == nil {
		return false
	}
	pa, pb := a.Store.Postgres.Str, b.Store.Postgres.Str
	return pa == "" || pb == "" || pa == pb
}

// PostgresStoreAvailable reports whether `mailctl serve` of this build
// runs on a PostgreSQL store; until it does, a store block is refused so
// that no half-built feature is reachable. It asks the server's own
// configuration check (server/config), so that both sides agree. A
// variable so that the tests of the provisioning side can run before the
// server side is there.
var PostgresStoreAvailable = func() bool {
	sc := &serverconfig.Config{FormatVersion: serverconfig.FormatVersion, Hostname: "probe.invalid",
		Store: &serverconfig.Store{PostgresURLFile: "/probe"}}
	err := sc.Validate()
	var ve *serverconfig.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return err == nil
	}
	for _, p := range ve.Problems {
		if strings.HasPrefix(p, "store.") && strings.Contains(p, "not available") {
			return false
		}
	}
	return true
}

// store decodes a server's store block.
func (d *decoder) store(b *hcl.Block) *Store {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "postgres", Required: true}, {Name: "queue_lease"}}})
	d.diags = append(d.diags, diags...)
	st := &Store{DeclRange: b.DefRange}
	if !PostgresStoreAvailable() {
		d.errf(b.DefRange.Ptr(), "Store not available yet",
			"The PostgreSQL store is not available in this mailctl yet: remove the store block (the server keeps its mail in its data directory).")
		return nil
	}
	if a := c.Attributes["queue_lease"]; a != nil {
		st.QueueLease = d.durationAttr(a, serverconfig.MinQueueLease, serverconfig.MaxQueueLease, "2m")
	}
	a := c.Attributes["postgres"]
	if a == nil {
		return st
	}
	v, ok := d.str(a)
	if !ok {
		return st // reported, or unknown without secrets
	}
	st.Postgres = Value{Str: v.Str, Sensitive: true}
	if u, err := url.Parse(v.Str); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		// Never the value: it holds the database password.
		d.errf(a.Expr.Range().Ptr(), "Invalid PostgreSQL URL",
			`store.postgres must be a URL like "postgres://mailctl:PASSWORD@db.example.org:5432/mail" (the value is not shown: it is a secret).`)
	}
	return st
}

// domainServers decodes a domain's server, servers and mx_priority
// attributes: exactly one of server and servers.
func (d *decoder) domainServers(b *hcl.Block, content *hcl.BodyContent, dom *Domain) {
	one, many := content.Attributes["server"], content.Attributes["servers"]
	var refs []string
	var refAttr *hcl.Attribute
	switch {
	case one != nil && many != nil:
		d.serverErrf(many.NameRange.Ptr(), "Conflicting attributes",
			"Set either server = server.NAME (one server) or servers = [server.A, server.B] (several), not both.")
		return
	case one == nil && many == nil:
		d.serverErrf(b.DefRange.Ptr(), "Missing server",
			"The domain %q needs the server that receives its mail: server = server.NAME, or servers = [server.A, server.B] for several.", dom.Name)
		return
	case one != nil:
		parts, ok := d.ref(one, "server", 1)
		if !ok {
			return
		}
		refs, refAttr = parts, one
	default:
		refAttr = many
		exprs, diags := hcl.ExprList(many.Expr)
		if diags.HasErrors() {
			d.serverErrf(many.Expr.Range().Ptr(), "Invalid reference",
				"The attribute \"servers\" must be a list of references like [server.A, server.B], without quotes.")
			return
		}
		if len(exprs) == 0 {
			d.serverErrf(many.Expr.Range().Ptr(), "No server", "The attribute \"servers\" must name at least one server.")
			return
		}
		for _, e := range exprs {
			tr, diags := hcl.AbsTraversalForExpr(e)
			if diags.HasErrors() || tr.RootName() != "server" || len(tr) != 2 {
				d.serverErrf(e.Range().Ptr(), "Invalid reference", "Each server of \"servers\" must be a reference like server.NAME, without quotes.")
				continue
			}
			ta, ok := tr[1].(hcl.TraverseAttr)
			if !ok {
				d.serverErrf(e.Range().Ptr(), "Invalid reference", "Each server of \"servers\" must be a reference like server.NAME.")
				continue
			}
			if slices.Contains(refs, ta.Name) {
				d.serverErrf(e.Range().Ptr(), "Duplicate server", "The server %q is listed twice.", ta.Name)
				continue
			}
			refs = append(refs, ta.Name)
		}
	}
	prio := d.mxPriority(content.Attributes["mx_priority"], refs)
	d.refs = append(d.refs, func() {
		for _, name := range refs {
			s := d.cfg.ServerByName(name)
			if s == nil {
				d.serverErrf(refAttr.Expr.Range().Ptr(), "Reference to undeclared server", "No server %q is declared.", name)
				continue
			}
			dom.Servers = append(dom.Servers, s)
		}
		if len(dom.Servers) > 0 && len(dom.Servers) == len(refs) {
			dom.Server = dom.Servers[0]
			dom.MXPriority = prio
		} else {
			dom.Servers = nil
		}
	})
}

// mxPriority decodes mx_priority = { a = 10, b = 20 }: every listed server
// and no other, each from 0 to 65535. Nil when absent or invalid.
func (d *decoder) mxPriority(a *hcl.Attribute, servers []string) map[string]int {
	if a == nil {
		return nil
	}
	v, _, ok := d.eval(a.Expr)
	if !ok {
		return nil
	}
	mv, err := convert.Convert(v, cty.Map(cty.Number))
	if err != nil || mv.IsNull() {
		d.serverErrf(a.Expr.Range().Ptr(), "Incorrect attribute value type",
			"The attribute \"mx_priority\" must map server names to MX preferences, like { %s = 10 }.", first(servers, "mx1"))
		return nil
	}
	out := map[string]int{}
	bad := false
	for it := mv.ElementIterator(); it.Next(); {
		k, e := it.Element()
		name := k.AsString()
		if !slices.Contains(servers, name) {
			d.serverErrf(a.Expr.Range().Ptr(), "Unknown server in mx_priority",
				"mx_priority names %q, which is not one of the domain's servers (%s).", name, strings.Join(servers, ", "))
			bad = true
			continue
		}
		n, acc := e.AsBigFloat().Int64()
		if e.IsNull() || acc != 0 || n < 0 || n > 65535 {
			d.serverErrf(a.Expr.Range().Ptr(), "Invalid MX priority", "The MX priority of %q must be a whole number from 0 to 65535.", name)
			bad = true
			continue
		}
		out[name] = int(n)
	}
	var missing []string
	for _, s := range servers {
		if _, ok := out[s]; !ok {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 && !bad {
		d.serverErrf(a.Expr.Range().Ptr(), "Incomplete mx_priority",
			"mx_priority gives no priority to %s: give one to every server of the domain, or remove mx_priority for equal priorities (%d).",
			strings.Join(missing, ", "), DefaultMXPriority)
		return nil
	}
	if bad {
		return nil
	}
	return out
}

// serverErrf reports a mistake in a domain's servers: the checks across
// nodes are then left out, as they would only repeat it.
func (d *decoder) serverErrf(rng *hcl.Range, summary, format string, a ...any) {
	d.badServers = true
	d.errf(rng, summary, format, a...)
}

func first(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// MXPriorityOf returns the MX preference of server s for domain d.
func (d *Domain) MXPriorityOf(s *Server) int {
	if p, ok := d.MXPriority[s.Name]; ok {
		return p
	}
	return DefaultMXPriority
}

// ServedBy reports whether s is one of d's servers.
func (d *Domain) ServedBy(s *Server) bool {
	return slices.Contains(d.Servers, s)
}

// validateNodes checks what spans servers and domains of several nodes:
// the servers of a domain share a store, and servers that share a store
// serve the same domains (their users and mailboxes are one set).
func (d *decoder) validateNodes() {
	c := d.cfg
	for _, dom := range c.Domains {
		if len(dom.Servers) < 2 {
			continue
		}
		if !PostgresStoreAvailable() {
			d.errf(dom.DeclRange.Ptr(), "Several servers not available yet",
				"The domain %q lists several servers; they need a shared PostgreSQL store, which is not available in this mailctl yet: give it one server.", dom.Name)
			continue
		}
		for _, s := range dom.Servers[1:] {
			if !sameStore(dom.Servers[0], s) {
				d.errf(dom.DeclRange.Ptr(), "Servers without a shared store",
					"The domain %q is served by %s and %s, which do not share a store: each would keep part of the mail. Give both the same store { postgres = ... } block.",
					dom.Name, dom.Servers[0].Name, s.Name)
				break
			}
		}
	}
	served := func(s *Server) []string {
		var out []string
		for _, dom := range c.Domains {
			if dom.ServedBy(s) {
				out = append(out, dom.Name)
			}
		}
		return out
	}
	if d.badServers {
		return
	}
	reported := map[*Server]bool{}
	for i, a := range c.Servers {
		if a.Store == nil || reported[a] {
			continue
		}
		for _, b := range c.Servers[i+1:] {
			if reported[b] || !sameStore(a, b) {
				continue
			}
			if da, db := served(a), served(b); !slices.Equal(da, db) {
				d.errf(b.Store.DeclRange.Ptr(), "Different domains on one store",
					"The servers %q (%s) and %q (%s) share a PostgreSQL store but serve different domains: nodes of one store must serve the same domains, as they share their users and mailboxes.",
					a.Name, orNone(da), b.Name, orNone(db))
				reported[b] = true
			}
		}
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no domain"
	}
	return strings.Join(s, ", ")
}
