package plan

import (
	"fmt"
	"slices"
	"strings"
)

// MXTakeover is a domain whose live MX point to a mail service that the
// configuration does not manage (Google Workspace, Microsoft 365, another
// provider) and that the plan repoints to its own servers without a
// migration block: once applied, incoming mail stops reaching the
// mailboxes there. plan warns about it and apply refuses it unless told
// (-allow-mx-takeover).
type MXTakeover struct {
	Domain string `json:"domain"`
	// Current are the hosts the live MX point to.
	Current []string `json:"current_mx"`
	// Service names the provider of Current when known ("Google
	// Workspace", "Microsoft 365"); empty for another one.
	Service string `json:"service,omitempty"`
	// After are the hosts the plan points the MX to.
	After []string `json:"planned_mx"`
}

// FindMXTakeovers returns the apex MX changes that move mail away from
// hosts that are not ours (the configured servers' host names) for the
// domains where migrated is false. A set created where none existed, or a
// null MX (RFC 7505), is not a takeover.
func FindMXTakeovers(changes []Change, ours []string, migrated func(domain string) bool) []MXTakeover {
	own := map[string]bool{}
	for _, h := range ours {
		own[normHost(h)] = true
	}
	var out []MXTakeover
	for _, c := range changes {
		if c.RRType != "MX" || c.Name != "@" || c.Before == nil || c.Action == NoOp || c.Action == Create {
			continue
		}
		if migrated != nil && migrated(c.Domain) {
			continue
		}
		var foreign []string
		for _, v := range c.Before.Values {
			h := mxHost(v)
			if h != "" && h != "." && !own[h] {
				foreign = append(foreign, h)
			}
		}
		if len(foreign) == 0 {
			continue
		}
		t := MXTakeover{Domain: c.Domain, Current: foreign, Service: mailService(foreign)}
		if c.After != nil {
			for _, v := range c.After.Values {
				if h := mxHost(v); h != "" {
					t.After = append(t.After, h)
				}
			}
		}
		out = append(out, t)
	}
	return out
}

// mxHost is the exchange of an MX value "PREF HOST", lower case, without
// the final dot ("." for a null MX).
func mxHost(v string) string {
	f := strings.Fields(v)
	if len(f) != 2 {
		return ""
	}
	return normHost(f[1])
}

func normHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if h == "." {
		return h
	}
	return strings.TrimSuffix(h, ".")
}

// mailService names the provider of MX hosts it recognises.
func mailService(hosts []string) string {
	for _, h := range hosts {
		switch {
		case h == "smtp.google.com" || strings.HasSuffix(h, ".google.com") || strings.HasSuffix(h, ".googlemail.com"):
			return "Google Workspace"
		case strings.HasSuffix(h, ".mail.protection.outlook.com") || strings.HasSuffix(h, ".outlook.com"):
			return "Microsoft 365"
		}
	}
	return ""
}

// Describe is the warning's text: what happens to incoming mail, and the
// two ways forward.
func (t MXTakeover) Describe() []string {
	where := "another mail service"
	if t.Service != "" {
		where = t.Service
	}
	after := "this configuration's servers"
	if len(t.After) > 0 {
		after = strings.Join(t.After, ", ")
	}
	return []string{
		fmt.Sprintf("Mail for %s is delivered to %s today: its MX point to %s.", t.Domain, where, strings.Join(t.Current, ", ")),
		fmt.Sprintf("This plan points them to %s. Once applied, new mail goes there (as the old", after),
		"MX expire from resolvers' caches, within their TTL), and the mailboxes at " + where,
		"receive nothing more; what they hold stays there and is not copied.",
		"To move the mailboxes first, add a migration block for the domain (phase",
		`"presync" keeps the MX where they are while 'mailctl migrate' copies the mail;`,
		`see examples/migration). To take the mail over anyway: apply -allow-mx-takeover.`,
	}
}

// TakeoverDomains lists the domains of ts, sorted.
func TakeoverDomains(ts []MXTakeover) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Domain)
	}
	slices.Sort(out)
	return out
}
