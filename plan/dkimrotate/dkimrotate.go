// Package dkimrotate plans and applies DKIM key rotations (RFC 6376
// section 3.6.1: a selector per key, so that keys change without breaking
// mail signed with the previous one).
//
// The state is kept on the server (server/dkim, rotation.json): which
// selectors exist, which one signs, when each was created and retired.
// The server reports it with its public keys; from it and the domain's
// dkim block (rotate_every, grace_period) Plan derives the steps of a
// rotation, as one resource "dkim.DOMAIN" of type dkim:
//
//  1. rotate: a new selector's keys are generated on the server, pending
//     (by `mailctl dkim rotate`, or by apply when rotate_every is due);
//  2. its TXT records are published like any other DNS change;
//  3. activate: once every authoritative name server serves them, signing
//     switches to the new selector, and the old one is retired;
//  4. remove: after the grace period, the first apply deletes the retired
//     selector's records, then its keys on the server.
//
// Every step is idempotent on the server, so an interrupted apply is
// finished by the next one. The package does not know how servers are
// reached or how propagation is checked: apply passes them in (Server,
// the wait function), so the apply engine can live anywhere.
package dkimrotate

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

// sel is a base selector of a domain as the server reports it.
type sel struct {
	base, state      string
	created, retired time.Time
	names            []string // published selectors (base-ed25519, base-rsa)
}

// selectors groups the keys of domain by base selector, in the order the
// server reported them.
func selectors(keys []desired.DKIMKey, domain string) []*sel {
	var out []*sel
	by := map[string]*sel{}
	for _, k := range keys {
		if k.Domain != domain {
			continue
		}
		b := contract.DKIMBase(k.Selector)
		s := by[b]
		if s == nil {
			s = &sel{base: b, state: k.State, created: k.Created, retired: k.Retired}
			by[b] = s
			out = append(out, s)
		}
		s.names = append(s.names, k.Selector)
	}
	return out
}

// NextSelector returns the base selector a rotation started at now
// creates for a domain whose configured selector is configured:
// "CONFIGURED-YYYYMMDD", with "-2", "-3"... when that one is in used.
func NextSelector(configured string, now time.Time, used []string) (string, error) {
	name := configured + "-" + now.UTC().Format("20060102")
	cand := name
	for i := 2; slices.Contains(used, cand); i++ {
		cand = fmt.Sprintf("%s-%d", name, i)
	}
	for _, s := range contract.DKIMSelectors(cand) {
		if len(s.Name) > 63 {
			return "", fmt.Errorf("the rotated selector %s is longer than a DNS label (63): choose a shorter dkim selector than %q", s.Name, configured)
		}
	}
	return cand, nil
}

// UsedSelectors returns the base selectors of domain the server reports.
func UsedSelectors(keys []desired.DKIMKey, domain string) []string {
	var out []string
	for _, s := range selectors(keys, domain) {
		out = append(out, s.base)
	}
	return out
}

// Pending returns the pending base selector of domain, or "".
func Pending(keys []desired.DKIMKey, domain string) string {
	for _, s := range selectors(keys, domain) {
		if s.state == contract.DKIMStatePending {
			return s.base
		}
	}
	return ""
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }

func fmtDur(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// Plan completes the desired records sets of a plan made at now with the
// rotations of each domain whose server was read (servers), and returns
// them with one dkim change per domain that has steps to apply. keys are
// the DKIM keys the servers reported.
func Plan(cfg *config.Config, keys []desired.DKIMKey, servers map[string]bool, now time.Time, sets []desired.RRSet) ([]desired.RRSet, []plan.Change, error) {
	var changes []plan.Change
	var errs []string
	for _, d := range cfg.Domains {
		if d.Server == nil || d.DNS == nil || !servers[d.Server.Name] {
			continue
		}
		sels := selectors(keys, d.Name)
		var signing, pending *sel
		var retired []*sel
		for _, s := range sels {
			switch s.state {
			case contract.DKIMStateSigning:
				signing = s
			case contract.DKIMStatePending:
				pending = s
			case contract.DKIMStateRetired:
				retired = append(retired, s)
			}
		}
		if signing == nil {
			continue // not deployed yet, or a server without rotation support
		}
		grace := d.DKIM.Grace
		if grace <= 0 {
			grace = config.DefaultDKIMGrace
		}
		src := "server." + d.Server.Name
		var steps []plan.DKIMStep
		var notes []string
		note := func(base, n string) {
			for i := range sets {
				if sets[i].Domain == d.Name && sets[i].Type == "TXT" && strings.HasSuffix(sets[i].Name, "._domainkey."+d.Name) &&
					contract.DKIMBase(strings.TrimSuffix(sets[i].Name, "._domainkey."+d.Name)) == base {
					sets[i].Notes = append(sets[i].Notes, n)
				}
			}
		}
		due := signing.created.Add(d.DKIM.RotateEvery)
		if pending == nil && d.DKIM.RotateEvery > 0 && !signing.created.IsZero() && !now.Before(due) {
			next, err := NextSelector(d.DKIM.Selector, now, UsedSelectors(keys, d.Name))
			if err != nil {
				errs = append(errs, fmt.Sprintf("dkim.%s: %v", d.Name, err))
				continue
			}
			steps = append(steps, plan.DKIMStep{Action: plan.DKIMRotate, Selector: next})
			notes = append(notes, fmt.Sprintf("rotate: selector %s signs since %s, longer than rotate_every = %s: generate the keys of selector %s on %s",
				signing.base, day(signing.created), fmtDur(d.DKIM.RotateEvery), next, src))
			for _, s := range contract.DKIMSelectors(next) {
				r := desired.RRSet{Domain: d.Name, Provider: d.DNS.Addr(), Zone: d.Zone, TTL: d.TTL,
					Name: s.Name + "._domainkey." + d.Name, Type: "TXT", Source: src, Unknown: true}
				sets = append(sets, r)
			}
			pending = &sel{base: next, state: contract.DKIMStatePending}
		}
		if pending != nil {
			steps = append(steps, plan.DKIMStep{Action: plan.DKIMActivate, Selector: pending.base, From: signing.base})
			notes = append(notes, fmt.Sprintf("activate: once every authoritative name server serves the records of %s, signing switches from %s to %s; %s stays published for the grace period (%s), until about %s",
				pending.base, signing.base, pending.base, signing.base, fmtDur(grace), day(now.Add(grace))))
			note(pending.base, "new key: signing switches to it after propagation (dkim."+d.Name+")")
		}
		for _, r := range retired {
			end := r.retired.Add(grace)
			if now.Before(end) {
				note(r.base, fmt.Sprintf("retired on %s: deleted after the grace period, by the first apply from %s", day(r.retired), day(end)))
				continue
			}
			steps = append(steps, plan.DKIMStep{Action: plan.DKIMRemove, Selector: r.base})
			notes = append(notes, fmt.Sprintf("remove: selector %s, retired on %s, is past its grace period (%s): its records are deleted, then its keys on %s",
				r.base, day(r.retired), fmtDur(grace), src))
			for i := range sets {
				if sets[i].Domain == d.Name && slices.Contains(r.names, strings.TrimSuffix(sets[i].Name, "._domainkey."+d.Name)) {
					sets[i].Values, sets[i].Unknown = nil, false
					sets[i].Notes = append(sets[i].Notes, fmt.Sprintf("retired on %s, grace period ended on %s", day(r.retired), day(end)))
				}
			}
		}
		if len(steps) == 0 {
			if d.DKIM.RotateEvery > 0 && !signing.created.IsZero() {
				note(signing.base, fmt.Sprintf("signing since %s; the next rotation is due on %s (rotate_every = %s)", day(signing.created), day(due), fmtDur(d.DKIM.RotateEvery)))
			}
			continue
		}
		changes = append(changes, plan.Change{Address: "dkim." + d.Name, Type: plan.KindDKIM, Action: plan.Update, Domain: d.Name, Source: src, DKIM: steps, Notes: notes})
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return sets, changes, nil
}

// Server runs rotation steps on a server (plan/target.Conn does).
type Server interface {
	DKIM(ctx context.Context, action, domain, selector string) error
}

// WaitFunc returns once every authoritative name server serves the given
// DNS changes' After values.
type WaitFunc func(ctx context.Context, changes []plan.Change) error

// steps calls f for each step of action in p.
func steps(p *plan.Plan, action string, f func(c plan.Change, s plan.DKIMStep) error) error {
	for _, c := range p.Changes {
		if c.Type != plan.KindDKIM || c.Action == plan.NoOp {
			continue
		}
		for _, s := range c.DKIM {
			if s.Action == action {
				if err := f(c, s); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func server(servers map[string]Server, c plan.Change) (Server, error) {
	srv := servers[strings.TrimPrefix(c.Source, "server.")]
	if srv == nil {
		return nil, fmt.Errorf("%s: %s not connected", c.Address, c.Source)
	}
	return srv, nil
}

// Generate runs the rotate steps of p: the new keys are generated on the
// servers, not signing. It reports whether any ran: the caller then reads
// the keys back to fill the DNS changes that wait for them.
func Generate(ctx context.Context, p *plan.Plan, servers map[string]Server, progress io.Writer) (bool, error) {
	ran := false
	err := steps(p, plan.DKIMRotate, func(c plan.Change, s plan.DKIMStep) error {
		srv, err := server(servers, c)
		if err != nil {
			return err
		}
		if err := srv.DKIM(ctx, plan.DKIMRotate, c.Domain, s.Selector); err != nil {
			return fmt.Errorf("%s: generate selector %s: %w", c.Address, s.Selector, err)
		}
		fmt.Fprintf(progress, "%s: generated the keys of selector %s on %s (not signing yet)\n", c.Address, s.Selector, c.Source)
		ran = true
		return nil
	})
	return ran, err
}

// selectorChanges returns the DNS changes of p that publish base's
// records, as changes to check (a no-op is checked as well: the records
// may have been published by an earlier apply).
func selectorChanges(p *plan.Plan, domain, base string) ([]plan.Change, error) {
	var out []plan.Change
	for _, s := range contract.DKIMSelectors(base) {
		name := s.Name + "._domainkey." + domain
		found := false
		for _, c := range p.Changes {
			if c.Type != plan.KindDNSRRset || c.Domain != domain || c.RRType != "TXT" || !strings.HasPrefix(c.Address, "dns."+domain+"."+s.Name+"._domainkey.") {
				continue
			}
			if c.AfterUnknown || c.After.Empty() {
				return nil, fmt.Errorf("the record %s has no value yet", name)
			}
			if c.Action == plan.NoOp {
				c.Action = plan.Update
			}
			out = append(out, c)
			found = true
		}
		if !found {
			return nil, fmt.Errorf("the plan does not publish %s", name)
		}
	}
	return out, nil
}

// Activate runs the activate steps of p, after its DNS changes were
// applied: for each, it waits until every authoritative name server
// serves the new selector's records, then switches signing on the server.
// A nil wait defers the switch to a later apply (apply -wait=0).
func Activate(ctx context.Context, p *plan.Plan, servers map[string]Server, wait WaitFunc, progress io.Writer) error {
	return steps(p, plan.DKIMActivate, func(c plan.Change, s plan.DKIMStep) error {
		if wait == nil {
			fmt.Fprintf(progress, "%s: signing stays on %s: without the propagation wait (-wait=0) the switch to %s is left to a later apply\n", c.Address, s.From, s.Selector)
			return nil
		}
		srv, err := server(servers, c)
		if err != nil {
			return err
		}
		recs, err := selectorChanges(p, c.Domain, s.Selector)
		if err != nil {
			return fmt.Errorf("%s: switch signing to %s: %w", c.Address, s.Selector, err)
		}
		if err := wait(ctx, recs); err != nil {
			return fmt.Errorf("%s: signing stays on %s: %w", c.Address, s.From, err)
		}
		if err := srv.DKIM(ctx, plan.DKIMActivate, c.Domain, s.Selector); err != nil {
			return fmt.Errorf("%s: switch signing to %s: %w", c.Address, s.Selector, err)
		}
		fmt.Fprintf(progress, "%s: signing switched from %s to %s; %s stays published for the grace period\n", c.Address, s.From, s.Selector, s.From)
		return nil
	})
}

// Remove runs the remove steps of p, after its DNS changes (which delete
// the retired selectors' records) were applied: the keys are deleted on
// the servers.
func Remove(ctx context.Context, p *plan.Plan, servers map[string]Server, progress io.Writer) error {
	return steps(p, plan.DKIMRemove, func(c plan.Change, s plan.DKIMStep) error {
		srv, err := server(servers, c)
		if err != nil {
			return err
		}
		if err := srv.DKIM(ctx, plan.DKIMRemove, c.Domain, s.Selector); err != nil {
			return fmt.Errorf("%s: remove selector %s: %w", c.Address, s.Selector, err)
		}
		fmt.Fprintf(progress, "%s: removed the retired selector %s\n", c.Address, s.Selector)
		return nil
	})
}
