package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/render"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/ptr"
)

func init() {
	register(&command{name: "plan", synopsis: "show what apply would change (reads the real state)", run: runPlan})
	register(&command{name: "show", synopsis: "print a saved plan", run: runShow})
}

// targetFlags collects repeated -target ADDR flags.
type targetFlags []string

func (t *targetFlags) String() string { return strings.Join(*t, ",") }
func (t *targetFlags) Set(s string) error {
	if s == "" {
		return fmt.Errorf("-target wants an address like dns.example.org")
	}
	*t = append(*t, s)
	return nil
}

// planFlags are shared by plan and apply.
type planFlags struct {
	vars        varFlags
	targets     targetFlags
	parallelism *int
	server      *serverFlags
}

func addPlanFlags(fs *flag.FlagSet) *planFlags {
	pf := &planFlags{vars: addVarFlag(fs)}
	fs.Var(&pf.targets, "target", "limit to this resource `ADDR` and those under it (repeatable)")
	pf.parallelism = fs.Int("parallelism", 10, "read and change at most `N` zones at once")
	pf.server = addServerFlags(fs)
	return pf
}

// planSetup is a loaded configuration with its providers.
type planSetup struct {
	cfg   *config.Config
	provs map[string]dns.Provider
	ptrs  map[string]ptr.Provider
	srv   *servers // nil with -refresh=false
}

func setup(e *env, pf *planFlags) (*planSetup, int) {
	cfg := loadConfig(e, pf.vars)
	if cfg == nil {
		return nil, exitError
	}
	if err := checkTargets(cfg, pf.targets); err != nil {
		return nil, errorf(e, "%v", err)
	}
	provs, err := refresh.Providers(cfg, logger(e))
	if err != nil {
		return nil, errorf(e, "%v", err)
	}
	ptrs, err := refresh.PTRProviders(cfg, logger(e))
	if err != nil {
		return nil, errorf(e, "%v", err)
	}
	return &planSetup{cfg: cfg, provs: provs, ptrs: ptrs}, exitOK
}

// logger returns the logger for provider debug output: quiet unless
// MAILCTL_LOG=debug.
func logger(e *env) *slog.Logger {
	if strings.EqualFold(e.Getenv("MAILCTL_LOG"), "debug") {
		return slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// makePlan reads the real state and makes the plan. Every failed read is
// reported (the servers', the zones', the reverse DNS'), each on its own
// "Error:" line, as validate reports every configuration error.
func makePlan(ctx context.Context, e *env, s *planSetup, pf *planFlags, noRefresh bool) (*plan.Plan, int) {
	progress := &plan.Progress{W: e.Stderr}
	opts := refresh.Options{
		Targets: pf.targets, Parallelism: *pf.parallelism, NoRefresh: noRefresh, Logger: logger(e), PTR: s.ptrs,
		Progress: progress,
	}
	var errs []error
	if !noRefresh {
		if s.srv == nil {
			srv, err := readServers(ctx, e, s.cfg, pf.server, pf.targets, progress)
			if srv == nil {
				return nil, printErrors(e, err)
			}
			if err != nil {
				errs = append(errs, err)
			}
			s.srv = srv
		}
		opts.Servers, opts.Keys = s.srv.plans, s.srv.keys
	}
	p, _, err := refresh.Plan(ctx, s.cfg, s.provs, opts)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, printErrors(e, errors.Join(errs...))
	}
	if w := targetWarning(pf.targets); w != "" {
		p.Warnings = append(p.Warnings, w)
	}
	markTakeovers(s.cfg, p)
	return p, exitOK
}

// printErrors prints each line of err as an "Error:" line; an interrupt
// (Ctrl-C) is said once, in words.
func printErrors(e *env, err error) int {
	seen := map[string]bool{}
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || seen[line] {
			continue
		}
		seen[line] = true
		fmt.Fprintf(e.Stderr, "Error: %s\n", line)
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(e.Stderr, "Interrupted: nothing was changed.")
	}
	return exitError
}

// targetWarning is Terraform's warning for a plan limited by -target.
func targetWarning(targets []string) string {
	if len(targets) == 0 {
		return ""
	}
	return "Resource targeting is in effect (-target " + strings.Join(targets, ", -target ") + "): the plan may not show every change the configuration calls for. Use -target for exceptional situations only, such as recovering from an error; a routine plan has none."
}

func runPlan(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "plan", "[-out FILE] [-json] [-detailed-exitcode] [-target ADDR]... [-refresh=false] [-parallelism N] [-var NAME=VALUE]...")
	out := fs.String("out", "", "save the plan to `FILE` for 'mailctl apply FILE'")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	detailed := fs.Bool("detailed-exitcode", false, "exit 0 when there are no changes, 2 when there are, 1 on error")
	doRefresh := fs.Bool("refresh", true, "read the real state (false: plan against an empty state, no network)")
	pf := addPlanFlags(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "plan takes no arguments (got %q); use -chdir DIR for another directory", fs.Arg(0))
	}
	s, code := setup(e, pf)
	if s == nil {
		return code
	}
	defer func() { s.srv.close() }()
	p, code := makePlan(ctx, e, s, pf, !*doRefresh)
	if p == nil {
		return code
	}
	if *asJSON {
		if err := render.PlanJSON(e.Stdout, p); err != nil {
			return errorf(e, "write plan: %v", err)
		}
	} else {
		render.Plan(e.Stdout, p, render.Style{Color: e.Color})
	}
	if *out != "" {
		if err := plan.Save(*out, p); err != nil {
			return errorf(e, "%v", err)
		}
		if !*asJSON {
			fmt.Fprintf(e.Stdout, "\nSaved the plan to %s. To perform exactly these actions, run: mailctl apply %s\n", *out, *out)
		}
	}
	if *detailed && p.HasChanges() {
		return 2
	}
	return exitOK
}

func runShow(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "show", "[-json] PLANFILE")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return errorf(e, "show needs one plan file (from 'mailctl plan -out FILE')")
	}
	p, err := plan.Load(fs.Arg(0))
	if err != nil {
		return errorf(e, "%v", err)
	}
	if *asJSON {
		if err := render.PlanJSON(e.Stdout, p); err != nil {
			return errorf(e, "write plan: %v", err)
		}
		return exitOK
	}
	render.Plan(e.Stdout, p, render.Style{Color: e.Color})
	return exitOK
}
