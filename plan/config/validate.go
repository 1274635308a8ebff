package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// validate checks rules that span blocks: addresses inside declared
// domains, duplicates, alias targets and loops, domains' servers.
func (d *decoder) validate() {
	c := d.cfg
	domains := map[string]bool{}
	for _, dom := range c.Domains {
		domains[dom.Name] = true
	}
	declared := func() string {
		var names []string
		for _, dom := range c.Domains {
			names = append(names, dom.Name)
		}
		if len(names) == 0 {
			return "none"
		}
		return strings.Join(names, ", ")
	}
	domainOf := func(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

	// owner of each local address: where it was declared.
	type owner struct {
		what string
		rng  hcl.Range
	}
	owners := map[string]owner{}
	claim := func(addr, what string, rng hcl.Range) {
		if prev, dup := owners[addr]; dup {
			d.errf(rng.Ptr(), "Duplicate address", "%s is already declared as %s at %s.", addr, prev.what, rangeString(prev.rng))
			return
		}
		owners[addr] = owner{what, rng}
	}
	for _, u := range c.Users {
		if validMailbox(u.Address) && !domains[domainOf(u.Address)] {
			d.errf(u.DeclRange.Ptr(), "Address outside every domain",
				"The user %s is not in a declared domain (declared: %s). Add a domain %q block.", u.Address, declared(), domainOf(u.Address))
		}
		claim(u.Address, "a user", u.DeclRange)
		for _, al := range u.Aliases {
			if !domains[domainOf(al)] {
				d.errf(u.DeclRange.Ptr(), "Address outside every domain",
					"The alias %s of %s is not in a declared domain (declared: %s).", al, u.Address, declared())
			}
			claim(al, "an alias of "+u.Address, u.DeclRange)
		}
	}
	for _, a := range c.Aliases {
		if dom := domainOf(a.Address); (validMailbox(a.Address) || strings.HasPrefix(a.Address, "@")) && !domains[dom] {
			d.errf(a.DeclRange.Ptr(), "Address outside every domain",
				"The alias %s is not in a declared domain (declared: %s).", a.Address, declared())
		}
		claim(a.Address, "an alias", a.DeclRange)
	}
	// Alias targets inside a declared domain must exist; follow chains for loops.
	aliasTo := map[string][]string{}
	for _, a := range c.Aliases {
		aliasTo[a.Address] = a.To
	}
	for _, a := range c.Aliases {
		for _, t := range a.To {
			if domains[domainOf(t)] {
				if _, ok := owners[t]; !ok {
					if _, catch := owners["@"+domainOf(t)]; !catch {
						d.errf(a.DeclRange.Ptr(), "Unknown alias target",
							"The alias %s delivers to %s, which is neither a user nor an alias.", a.Address, t)
					}
				}
			}
		}
	}
	reported := map[string]bool{}
	for _, a := range c.Aliases {
		if path := aliasLoop(a.Address, aliasTo, nil); path != nil && path[0] == a.Address && !reported[a.Address] {
			for _, p := range path {
				reported[p] = true
			}
			d.errf(a.DeclRange.Ptr(), "Alias loop", "The aliases loop: %s.", strings.Join(append(path, path[0]), " -> "))
		}
	}
	// Every domain needs a server (a required attribute: reported by the
	// schema); a server's hostname should not collide across servers.
	hosts := map[string]*Server{}
	for _, s := range c.Servers {
		if s.Hostname == "" {
			continue
		}
		if o, dup := hosts[s.Hostname]; dup {
			d.errf(s.DeclRange.Ptr(), "Duplicate hostname", "The servers %q and %q both use the hostname %s.", o.Name, s.Name, s.Hostname)
		}
		hosts[s.Hostname] = s
	}
	d.validateMigrations()
	d.validateNodes()
	if len(c.Domains) == 0 && len(c.Servers)+len(c.Users)+len(c.Aliases) > 0 {
		rng := hcl.Range{}
		for _, f := range c.Files {
			rng = hcl.Range{Filename: f.Body.MissingItemRange().Filename, Start: hcl.InitialPos, End: hcl.InitialPos}
			break
		}
		d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No domain",
			Detail: "The configuration declares no domain block; mailctl needs at least one.", Subject: &rng})
	}
}

// aliasLoop returns the addresses of a loop reachable from start through
// alias targets, or nil.
func aliasLoop(start string, to map[string][]string, path []string) []string {
	for i, p := range path {
		if p == start {
			return path[i:]
		}
	}
	path = append(path, start)
	for _, t := range to[start] {
		if _, isAlias := to[t]; !isAlias {
			continue
		}
		if loop := aliasLoop(t, to, path); loop != nil {
			return loop
		}
	}
	return nil
}

// String formats a range as file:line:col for messages.
func rangeString(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
