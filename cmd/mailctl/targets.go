package main

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/verify"
)

// resourceAddresses lists the addresses of every resource the
// configuration can plan (DNS record sets, PTR, servers, mailboxes) with
// the domain of each DNS set, and the shorter addresses a -target can name
// (dns.example.org, server.mx1...): names holds every address, short the
// ones worth listing in an error (not each record set).
func resourceAddresses(cfg *config.Config) (changes []plan.Change, names, short []string) {
	seen := map[string]bool{}
	addName := func(a string) {
		if !seen[a] {
			seen[a] = true
			names = append(names, a)
			if !strings.HasPrefix(a, "dns.") {
				short = append(short, a)
			}
		}
	}
	changes = resourceChanges(cfg)
	for _, c := range changes {
		if c.Domain != "" {
			if !seen["dns."+c.Domain] {
				short = append(short, "dns."+c.Domain)
			}
			addName("dns." + c.Domain)
		}
		addName(c.Address)
	}
	sort.Strings(names)
	sort.Strings(short)
	return changes, names, short
}

// resourceChanges lists every resource the configuration can plan as a
// change holding its address (and the domain of a DNS set).
func resourceChanges(cfg *config.Config) []plan.Change {
	sets := desired.Records(cfg, nil)
	changes := make([]plan.Change, 0, len(sets)+3*len(cfg.Servers)+len(cfg.Users))
	for _, w := range sets {
		changes = append(changes, plan.Change{Address: w.Address(), Domain: w.Domain})
	}
	for _, s := range cfg.Servers {
		changes = append(changes, plan.Change{Address: "server." + s.Name})
		if s.PTR != nil {
			for _, ip := range []netip.Addr{s.IPv4, s.IPv6} {
				if ip.IsValid() {
					changes = append(changes, plan.Change{Address: "ptr." + ip.String()})
				}
			}
		}
		for _, u := range desired.ServerConfig(cfg, s).Users {
			changes = append(changes, plan.Change{Address: "user." + u.Address})
		}
	}
	// A domain's DKIM rotation (plan/dkimrotate) exists where its keys
	// are made on a server and published through a DNS provider.
	for _, d := range cfg.Domains {
		if d.Server != nil && d.DNS != nil {
			changes = append(changes, plan.Change{Address: "dkim." + d.Name})
		}
	}
	return changes
}

// checkTargets returns an error naming each -target that selects no
// resource of the configuration (a typo would otherwise plan nothing and
// report "No changes"), with the closest valid address.
func checkTargets(cfg *config.Config, targets []string) error {
	if len(targets) == 0 {
		return nil
	}
	// The resources' addresses are listed (names sorted, for the
	// message) only when a target matches none: at thousands of domains
	// that listing was a tenth of a plan.
	changes := resourceChanges(cfg)
	var unmatched []string
	for _, t := range targets {
		if !slices.ContainsFunc(changes, func(c plan.Change) bool { return plan.Selected(c, []string{t}) }) {
			unmatched = append(unmatched, t)
		}
	}
	if len(unmatched) == 0 {
		return nil
	}
	_, names, short := resourceAddresses(cfg)
	var bad []string
	for _, t := range unmatched {
		bad = append(bad, fmt.Sprintf("-target %s matches no resource of the configuration.%s", t, didYouMean(t, names)))
	}
	return fmt.Errorf("%s Valid addresses: %s", strings.Join(bad, " "), listValid(short))
}

// checkVerifyArgs returns an error naming each check or target of the
// command line that selects no check, with the closest valid one.
func checkVerifyArgs(cfg *config.Config, run verifyRun, only []string) error {
	if len(only) == 0 {
		return nil
	}
	o := run.Opts
	o.Only = only
	unmatched, valid := verify.Unmatched(verify.Inputs{Config: cfg}, o, run.Probe)
	if len(unmatched) == 0 {
		return nil
	}
	var bad []string
	for _, u := range unmatched {
		hint := didYouMean(u, valid)
		if _, last, ok := strings.Cut(u, "."); ok && hint == "" {
			hint = didYouMean(last, valid) // dns.spf: spf
		}
		bad = append(bad, fmt.Sprintf("%q matches no check.%s", u, hint))
	}
	return fmt.Errorf("%s Checks: %s; or a domain, host or address they check (mailctl verify -h)", strings.Join(bad, " "), strings.Join(verify.CheckNames, ", "))
}

// printCheckNames is the end of verify's usage.
func printCheckNames(w io.Writer) {
	fmt.Fprintln(w, "Arguments select checks by name (a prefix up to a dot: \"dns\" selects every")
	fmt.Fprintln(w, "dns.* check) or by what they check (a domain, host:port or IP):")
	fmt.Fprintf(w, "  %s\n", strings.Join(verify.CheckNames, " "))
	fmt.Fprintln(w, "Exit status: 0 when no check failed (warnings allowed), 2 when one failed, 1 on error.")
}
