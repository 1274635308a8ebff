package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/dkimrotate"
	"github.com/mailctl/mailctl/plan/propagation"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/zonefile"
	"github.com/mailctl/mailctl/providers/ptr"
	"github.com/mailctl/mailctl/remote"
)

// Server is what the engine needs of a server: a *target.Conn.
type Server interface {
	Name() string
	Deploy(ctx context.Context, b target.Binary, configJSON []byte, restart []string) (remote.DeployResult, error)
	State(ctx context.Context) (*plan.ServerState, []desired.DKIMKey, error)
	Destroy(ctx context.Context, purge bool) (bool, error)
	// DKIM runs a DKIM rotation step (plan/dkimrotate).
	DKIM(ctx context.Context, action, domain, selector string) error
}

var _ Server = (*target.Conn)(nil)

// Engine applies a whole plan, or destroys what a destroy plan lists:
// servers, DNS, the propagation wait and reverse DNS, in that order, and
// counts what it did. The command line only parses flags, asks for
// confirmation and renders the Result.
type Engine struct {
	DNS     map[string]dns.Provider // by provider address
	PTR     map[string]ptr.Provider
	Servers map[string]Server // by server name
	// Binary is deployed to every server the plan changes, with its
	// generated configuration from Configs (server.json).
	Binary  target.Binary
	Configs map[string][]byte
	// Wait bounds the wait, after DNS changes, until every authoritative
	// name server serves them (0: no wait); Propagation gives its resolver,
	// addresses and terminal (its Timeout, Progress and Logger are set from
	// Wait and Options).
	Wait        time.Duration
	Propagation propagation.Options
	// Nodes is what servers sharing a store or a domain need around
	// their deployment (nodes.go); zero for servers on their own.
	Nodes Nodes
	Options
}

// Apply applies p: it deploys the servers that change and generates the
// keys of the DKIM rotations that are due, reads the servers' DKIM public
// keys back (filling in the DNS values known only then), applies the DNS
// changes, waits for their propagation, runs the rest of the DKIM
// rotations (signing switches once the new keys are served everywhere;
// retired keys go once their records are deleted), then sets reverse DNS
// (hosting APIs check the forward record first). It stops at the first
// step that fails; Result.NotApplied lists what is left.
func (e *Engine) Apply(ctx context.Context, p *plan.Plan) (Result, error) {
	keys, err := e.deploy(ctx, p)
	if err != nil {
		return Result{NotApplied: Pending(p, plan.KindDNSRRset, plan.KindDKIM, plan.KindPTR)}, err
	}
	res, err := DNS(ctx, p, e.DNS, e.Options)
	res.DKIMKeys = keys
	if err == nil && e.Wait > 0 {
		err = e.waitPropagation(ctx, p.Changes)
	}
	if err == nil {
		err = e.rotate(ctx, p)
		if err == nil && hasKind(p, plan.KindDKIM) {
			err = e.syncAllDKIM(ctx) // the rotations ran on the first servers
		}
	}
	if err != nil {
		res.Merge(Result{NotApplied: Pending(p, plan.KindDKIM)})
	}
	if err == nil {
		pres, perr := PTR(ctx, p, e.PTR, e.Options)
		res.Merge(pres)
		err = perr
	} else {
		res.Merge(Result{NotApplied: Pending(p, plan.KindPTR)})
	}
	for _, c := range p.Changes {
		if c.Type == plan.KindServer || c.Type == plan.KindUser || c.Type == plan.KindDKIM {
			res.count(c.Action)
		}
	}
	return res, err
}

// Destroy applies a destroy plan: DNS deletions, reverse DNS, then the
// servers the plan deletes (their mail data is kept unless purge).
func (e *Engine) Destroy(ctx context.Context, p *plan.Plan, purge bool) (Result, error) {
	res, err := DNS(ctx, p, e.DNS, e.Options)
	if err == nil {
		var pres Result
		pres, err = PTR(ctx, p, e.PTR, e.Options)
		res.Merge(pres)
	}
	if err != nil {
		return res, err
	}
	for _, c := range p.Changes {
		if c.Type != plan.KindServer || c.Action != plan.Delete {
			continue
		}
		conn := e.Servers[plan.ServerName(c.Address)]
		if conn == nil {
			return res, fmt.Errorf("%s: not connected", c.Address)
		}
		e.progress("%s: Destroying...", c.Address)
		if _, err := conn.Destroy(ctx, purge); err != nil {
			return res, fmt.Errorf("destroy %s: %w", c.Address, err)
		}
		e.progress("%s: destroy complete", c.Address)
		res.count(plan.Delete)
	}
	return res, nil
}

// progressWriter is Progress, or io.Discard without one.
func (e *Engine) progressWriter() io.Writer {
	if e.Progress == nil {
		return io.Discard
	}
	return e.Progress
}

func (e *Engine) progress(format string, a ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, format+"\n", a...)
	}
}

// deploy installs the servers the plan changes and generates the keys of
// the DKIM rotations that are due; when it did either, it reads the DKIM
// keys of every server back and fills them into p. It returns the keys
// read (nil when nothing was deployed or generated).
func (e *Engine) deploy(ctx context.Context, p *plan.Plan) ([]desired.DKIMKey, error) {
	var changes []plan.Change
	for _, c := range p.Changes {
		if c.Type == plan.KindServer && c.Action != plan.NoOp && plan.ServerName(c.Address) != "" {
			changes = append(changes, c)
		}
	}
	e.deployOrder(changes)
	// A server that fails is reported with its name and the others are
	// still deployed; every failure is returned.
	var errs []error
	deployed := false
	migrated := map[string]bool{}
	for _, c := range changes {
		name := plan.ServerName(c.Address)
		conn := e.Servers[name]
		if conn == nil {
			errs = append(errs, fmt.Errorf("%s: not connected", c.Address))
			continue
		}
		pr, err := e.beforeDeploy(ctx, name, conn, migrated)
		var stop stopApply
		if errors.As(err, &stop) {
			return nil, errors.Join(append(errs, stop.err)...)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("deploy %s: %w", c.Address, err))
			continue
		}
		e.progress("%s: deploying...", c.Address)
		var restart []string // what the plan said: the settings a reload would not apply
		if c.Server != nil && c.Server.After != nil {
			restart = c.Server.Before.RestartSettings(*c.Server.After)
		}
		if pr.storeURL && c.Action != plan.Create {
			restart = append(restart, "store.postgres_url_file")
		}
		res, err := conn.Deploy(ctx, e.Binary, e.Configs[name], restart)
		if err != nil {
			errs = append(errs, fmt.Errorf("deploy %s: %w", c.Address, err))
			continue
		}
		what := "nothing to do"
		if res.Changed() {
			what = strings.Join(res.Actions, ", ")
		}
		e.progress("%s: deployed release %s (%s)", c.Address, res.Release, what)
		deployed = true
		if pr.dkim && !slices.ContainsFunc(res.Actions, func(a string) bool { return a == "start" || a == "restart" || a == "reload" }) {
			if err := conn.(NodeServer).Reload(ctx); err != nil {
				errs = append(errs, fmt.Errorf("deploy %s: %w", c.Address, err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if deployed {
		if err := e.syncAllDKIM(ctx); err != nil {
			return nil, err
		}
	}
	generated, err := dkimrotate.Generate(ctx, p, e.rotators(), e.progressWriter())
	if err != nil {
		return nil, err
	}
	if !deployed && !generated {
		return nil, nil
	}
	keys := []desired.DKIMKey{}
	for _, conn := range e.Servers {
		_, k, err := conn.State(ctx)
		if err != nil {
			return nil, fmt.Errorf("read back server.%s: %w", conn.Name(), err)
		}
		keys = append(keys, k...)
	}
	FillKeys(p, keys)
	return keys, nil
}

// rotators are the servers, for the DKIM rotation steps.
func (e *Engine) rotators() map[string]dkimrotate.Server {
	m := make(map[string]dkimrotate.Server, len(e.Servers))
	for name, s := range e.Servers {
		m[name] = s
	}
	return m
}

// rotate runs the DKIM rotation steps that follow the DNS changes:
// activate, once every authoritative name server serves the new keys
// (without the wait, Wait 0, the switch is left to a later apply), then
// remove.
func (e *Engine) rotate(ctx context.Context, p *plan.Plan) error {
	var wait dkimrotate.WaitFunc
	if e.Wait > 0 {
		wait = e.waitPropagation
	}
	if err := dkimrotate.Activate(ctx, p, e.rotators(), wait, e.progressWriter()); err != nil {
		return err
	}
	return dkimrotate.Remove(ctx, p, e.rotators(), e.progressWriter())
}

// FillKeys completes the DNS changes whose values were known only after
// the server step: the DKIM public keys.
func FillKeys(p *plan.Plan, keys []desired.DKIMKey) {
	for i := range p.Changes {
		c := &p.Changes[i]
		if !c.AfterUnknown {
			continue
		}
		for _, k := range keys {
			if k.Server != "" && c.Source != "" && c.Source != "server."+k.Server {
				continue // another node's copy: the domain publishes its first server's keys
			}
			sel, _, _ := strings.Cut(c.Name, "._domainkey")
			if c.Domain == k.Domain && sel == k.Selector {
				c.After.Values = []string{k.Record}
				c.AfterUnknown = false
				c.Action = plan.Create
				if c.Before != nil && len(c.Before.Values) > 0 {
					c.Action = plan.Update
					if len(c.Before.Values) == 1 && c.Before.Values[0] == k.Record && c.Before.TTL == c.After.TTL {
						c.Action = plan.NoOp
					}
				}
			}
		}
	}
}

// waitPropagation waits until the authoritative name servers serve the
// DNS changes of all that DNS made. Zone files are left out: nothing
// serves them yet.
func (e *Engine) waitPropagation(ctx context.Context, all []plan.Change) error {
	var changes []plan.Change
	for _, c := range all {
		if c.Type != plan.KindDNSRRset || c.Action == plan.NoOp || c.AfterUnknown || providerKind(c.Provider) == zonefile.Kind {
			continue
		}
		changes = append(changes, c)
	}
	if len(changes) == 0 {
		return nil
	}
	opts := e.Propagation
	opts.Timeout, opts.Progress, opts.Logger = e.Wait, e.Progress, e.Logger
	if _, err := propagation.Wait(ctx, changes, opts); err != nil {
		if errors.Is(err, propagation.ErrTimeout) {
			return fmt.Errorf("%w\nthe records are applied at the DNS provider: run apply again with a longer -wait, or -wait=0 to skip the wait", err)
		}
		return err
	}
	return nil
}

// providerKind returns KIND of a provider address provider.KIND.NAME.
func providerKind(addr string) string {
	parts := strings.SplitN(addr, ".", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[1]
}

// hasKind reports whether p changes a resource of kind k.
func hasKind(p *plan.Plan, k plan.Kind) bool {
	return slices.ContainsFunc(p.Changes, func(c plan.Change) bool { return c.Type == k && c.Action != plan.NoOp })
}
