// Package apply executes a plan. Engine runs a whole apply or destroy:
// the servers (deploy, DKIM keys read back), DNS changes through the
// providers (each zone's RRsets in one call where the provider can,
// dns.ZoneApplier, else one RRset at a time: exact deletes then adds;
// zones in parallel), the propagation wait and reverse DNS (PTR), and
// counts what was done. Every step is idempotent, so an interrupted apply
// converges when run again.
package apply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/ptr"
)

// Options tune Apply.
type Options struct {
	// Parallelism bounds the zones changed at once; default 10.
	Parallelism int
	// Progress receives one line per applied change, and Terraform's
	// "Still creating... [10s elapsed]" every StillEvery (default 10s)
	// while one takes long; nil discards.
	Progress   io.Writer
	StillEvery time.Duration
	Logger     *slog.Logger
}

// Result counts what was done.
type Result struct {
	Added, Changed, Destroyed int
	// Deferred lists changes that could not be applied yet (values known
	// only after a step that is not part of this apply).
	Deferred []string
	// NotApplied lists the changes left undone because of an error or an
	// interrupt (Ctrl-C), the failed one included, in address order.
	NotApplied []string
	// DKIMKeys are the DKIM public keys read back from the servers after
	// a deployment (Engine.Apply); nil when no server was deployed.
	DKIMKeys []desired.DKIMKey
}

// count counts one applied change of action a: a replacement is one
// resource added and one destroyed, as Terraform counts it.
func (r *Result) count(a plan.Action) {
	switch a {
	case plan.Create:
		r.Added++
	case plan.Update:
		r.Changed++
	case plan.Delete:
		r.Destroyed++
	case plan.Replace:
		r.Added++
		r.Destroyed++
	}
}

// Merge adds the counts and lists of o to r.
func (r *Result) Merge(o Result) {
	r.Added += o.Added
	r.Changed += o.Changed
	r.Destroyed += o.Destroyed
	r.Deferred = append(r.Deferred, o.Deferred...)
	r.NotApplied = append(r.NotApplied, o.NotApplied...)
	sort.Strings(r.NotApplied)
	if o.DKIMKeys != nil {
		r.DKIMKeys = o.DKIMKeys
	}
}

// DNS applies the DNS changes of p. It keeps going in other zones when one
// zone fails, and returns every error joined.
func DNS(ctx context.Context, p *plan.Plan, provs map[string]dns.Provider, opts Options) (Result, error) {
	byZone := map[string][]plan.Change{}
	var res Result
	for _, c := range p.Changes {
		if c.Type != plan.KindDNSRRset || c.Action == plan.NoOp {
			continue
		}
		if c.AfterUnknown {
			res.Deferred = append(res.Deferred, c.Address)
			continue
		}
		k := plan.ZoneKey(c.Provider, c.Zone)
		byZone[k] = append(byZone[k], c)
	}
	keys := make([]string, 0, len(byZone))
	for k := range byZone {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var mu sync.Mutex
	var errs []error
	progress := func(format string, a ...any) {
		if opts.Progress != nil {
			mu.Lock()
			fmt.Fprintf(opts.Progress, format+"\n", a...)
			mu.Unlock()
		}
	}
	var still *plan.Progress
	if opts.Progress != nil {
		every := cmp.Or(opts.StillEvery, 10*time.Second)
		still = &plan.Progress{W: opts.Progress, After: every, Every: every, Lock: &mu}
	}
	var g errgroup.Group
	limit := opts.Parallelism
	if limit <= 0 {
		limit = 10
	}
	g.SetLimit(limit)
	for _, k := range keys {
		changes := byZone[k]
		g.Go(func() error {
			// notApplied records changes[i:] as left undone.
			notApplied := func(i int) {
				mu.Lock()
				for _, c := range changes[i:] {
					res.NotApplied = append(res.NotApplied, c.Address)
				}
				mu.Unlock()
			}
			if err := ctx.Err(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("zone %s: interrupted before %s: %w", changes[0].Zone, changes[0].Address, err))
				mu.Unlock()
				notApplied(0)
				return nil
			}
			c0 := changes[0]
			prov, ok := provs[c0.Provider]
			if !ok {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: no provider %s", c0.Address, c0.Provider))
				mu.Unlock()
				notApplied(0)
				return nil
			}
			count := func(c plan.Change) {
				progress("%s: %s complete", c.Address, c.Action.Verb())
				mu.Lock()
				res.count(c.Action)
				mu.Unlock()
			}
			fail := func(i int, err error) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				notApplied(i)
			}
			za, whole := prov.(dns.ZoneApplier)
			if !whole {
				// One Apply per RRset, in order, each with its progress.
				for i, c := range changes {
					if err := ctx.Err(); err != nil {
						fail(i, fmt.Errorf("zone %s: interrupted before %s: %w", c.Zone, c.Address, err))
						return nil
					}
					del, add := plan.DNSEdits(c)
					progress("%s: %s...", c.Address, verbing(c.Action))
					done := still.Start(fmt.Sprintf("%s: Still %s", c.Address, strings.ToLower(verbing(c.Action))))
					err := prov.Apply(ctx, c.Zone, del, add)
					done()
					if err != nil {
						fail(i, fmt.Errorf("apply %s in zone %s: %w", c.Address, c.Zone, err))
						return nil // stop this zone, keep the others going
					}
					count(c)
				}
				return nil
			}
			// The whole zone in one call: one rewrite, serial bump and
			// reload of a zone file; one RFC 2136 UPDATE; Cloudflare's
			// batches. All or nothing, or the first changes as a
			// dns.PartialError counts them.
			edits := make([]dns.SetEdit, len(changes))
			for i, c := range changes {
				edits[i].Del, edits[i].Add = plan.DNSEdits(c)
				progress("%s: %s...", c.Address, verbing(c.Action))
			}
			what := fmt.Sprintf("%s: Still %s", c0.Address, strings.ToLower(verbing(c0.Action)))
			if len(changes) > 1 {
				what = fmt.Sprintf("zone %s: Still applying %d changes", c0.Zone, len(changes))
			}
			done := still.Start(what)
			err := za.ApplyZone(ctx, c0.Zone, edits)
			done()
			if err != nil {
				n := min(dns.Applied(err), len(changes))
				for _, c := range changes[:n] {
					count(c)
				}
				if len(changes) == 1 {
					fail(n, fmt.Errorf("apply %s in zone %s: %w", c0.Address, c0.Zone, err))
				} else {
					fail(n, fmt.Errorf("apply %d changes in zone %s: %w", len(changes), c0.Zone, err))
				}
				return nil // stop this zone, keep the others going
			}
			for _, c := range changes {
				count(c)
			}
			return nil
		})
	}
	_ = g.Wait()
	sort.Strings(res.NotApplied)
	return res, errors.Join(errs...)
}

// Pending lists the changes of p of the given kinds that are not no-ops:
// what is left undone when an earlier step fails.
func Pending(p *plan.Plan, types ...plan.Kind) []string {
	var out []string
	for _, c := range p.Changes {
		if c.Action != plan.NoOp && slices.Contains(types, c.Type) {
			out = append(out, c.Address)
		}
	}
	return out
}

func verbing(a plan.Action) string {
	switch a {
	case plan.Create:
		return "Creating"
	case plan.Update:
		return "Modifying"
	case plan.Delete:
		return "Destroying"
	case plan.Replace:
		return "Replacing"
	}
	return "Checking"
}

// PTR sets the reverse DNS of the plan's ptr changes, after DNS (hosting
// APIs refuse a PTR whose forward record does not resolve yet).
func PTR(ctx context.Context, p *plan.Plan, provs map[string]ptr.Provider, opts Options) (Result, error) {
	var res Result
	var errs []error
	for _, c := range p.Changes {
		if c.Type != plan.KindPTR || c.Action == plan.NoOp {
			continue
		}
		if err := ctx.Err(); err != nil {
			res.NotApplied = append(res.NotApplied, c.Address)
			continue
		}
		prov := provs[c.Provider]
		if prov == nil {
			errs = append(errs, fmt.Errorf("%s: no provider %s", c.Address, c.Provider))
			res.NotApplied = append(res.NotApplied, c.Address)
			continue
		}
		ip, err := netip.ParseAddr(c.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Address, err))
			continue
		}
		host := ""
		if c.After != nil && len(c.After.Values) > 0 {
			host = c.After.Values[0]
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%s: %s...\n", c.Address, verbing(c.Action))
		}
		if err := prov.Set(ctx, ip, host); err != nil {
			errs = append(errs, fmt.Errorf("set reverse DNS %s: %w", c.Address, err))
			res.NotApplied = append(res.NotApplied, c.Address)
			continue
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%s: %s complete\n", c.Address, c.Action.Verb())
		}
		res.count(c.Action)
	}
	if err := ctx.Err(); err != nil && len(res.NotApplied) > 0 {
		errs = append(errs, fmt.Errorf("reverse DNS: interrupted: %w", err))
	}
	return res, errors.Join(errs...)
}
