package main

import (
	"strings"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
)

// markTakeovers records in p the domains whose live MX the plan takes
// away from another mail service without a migration block.
func markTakeovers(cfg *config.Config, p *plan.Plan) {
	var ours []string
	for _, s := range cfg.Servers {
		ours = append(ours, s.Hostname)
	}
	p.MXTakeovers = plan.FindMXTakeovers(p.Changes, ours, func(domain string) bool { return cfg.MigrationFor(domain) != nil })
}

// refuseTakeover returns an error code when p takes mail away from
// another service and -allow-mx-takeover was not given.
func refuseTakeover(e *env, p *plan.Plan, allowed bool) (int, bool) {
	if len(p.MXTakeovers) == 0 || allowed {
		return 0, false
	}
	return errorf(e, "not applying: this plan takes the incoming mail of %s away from the mail service its MX point to today (see the warning above). Add a migration block to move the mailboxes first, or run apply -allow-mx-takeover to take the mail over anyway.",
		strings.Join(plan.TakeoverDomains(p.MXTakeovers), ", ")), true
}
