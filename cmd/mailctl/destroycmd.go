package main

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/render"
)

func init() {
	register(&command{name: "destroy", synopsis: "remove the owned DNS records and PTR, stop and remove the server (mail data kept)", run: runDestroy})
}

func runDestroy(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "destroy", "[-auto-approve] [-purge-data] [-target ADDR]...")
	autoApprove := fs.Bool("auto-approve", false, "destroy without asking for confirmation")
	purge := fs.Bool("purge-data", false, "also delete the servers' mail data (irreversible)")
	pf := addPlanFlags(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	s, code := setup(e, pf)
	if s == nil {
		return code
	}
	progress := &plan.Progress{W: e.Stderr}
	srv, err := readServers(ctx, e, s.cfg, pf.server, pf.targets, progress)
	if err != nil {
		srv.close()
		return printErrors(e, err)
	}
	defer srv.close()
	p, _, err := refresh.Plan(ctx, s.cfg, s.provs, refresh.Options{
		Targets: pf.targets, Parallelism: *pf.parallelism, Destroy: true, PTR: s.ptrs, Logger: logger(e), Progress: progress,
		// The servers' keys name the selectors that rotations added: their
		// records go too.
		Keys: srv.keys,
	})
	if err != nil {
		return printErrors(e, err)
	}
	// The servers that run something go too.
	for _, name := range sortedNames(srv.plans) {
		if srv.plans[name].Before != nil {
			note := "stop the service, remove its releases and configuration; the mail data is kept"
			if *purge {
				note = "stop the service and delete everything, the mail data too"
			}
			p.Changes = append(p.Changes, plan.Change{Address: "server." + name, Type: plan.KindServer, Action: plan.Delete, Notes: []string{note}})
		}
	}
	p.Sort()
	render.Plan(e.Stdout, p, render.Style{Color: e.Color})
	if !p.HasChanges() {
		return exitOK
	}
	if !*autoApprove {
		if code, ok := confirm(e, "destroy", "Do you really want to destroy this mail setup?", ""); !ok {
			return code
		}
	}
	fmt.Fprintln(e.Stdout)
	s.srv = srv
	res, err := s.engine(e, *pf.parallelism).Destroy(ctx, p, *purge)
	if err != nil {
		return errorf(e, "%v", err)
	}
	// A reverse DNS reset to the host's default counts as destroyed.
	fmt.Fprintf(e.Stdout, "\nDestroy complete! Resources: %d destroyed.\n", res.Destroyed+res.Changed)
	return exitOK
}

func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
