package verify

import (
	"github.com/mailctl/mailctl/plan/desired"
)

// CheckNames are the names of the checks, for help texts and for the
// "did you mean" of a check that matches nothing: those of Run, the round
// trip, and those commands add through Options.Extra (dns.provider, ssh,
// outbound25, ptr).
var CheckNames = []string{
	"dns.ns", "dns.a", "dns.ptr", "dns.mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "addresses",
	"tls", "smtp.banner", "relay", "smtp.auth", "dnsbl", RoundTripCheck,
	"dns.provider", "ssh", "outbound25",
}

// Unmatched returns the entries of o.Only that select none of the checks
// RunAll would run for in with probe p (with o.Extra, and any check of
// CheckNames, which commands may add later), and the names and targets
// of those checks, so that the caller can report a typo rather than run
// nothing and print "0 passed".
func Unmatched(in Inputs, o Options, p *Probe) (unmatched, valid []string) {
	r := &runner{cfg: in.Config, records: in.Records, o: o}
	if r.records == nil && r.cfg != nil {
		r.records = desired.Records(r.cfg, nil)
	}
	if r.o.DNSBLZones == nil {
		r.o.DNSBLZones = DefaultDNSBLZones
	}
	checks := append(r.checks(), o.Extra...)
	for _, n := range CheckNames {
		checks = append(checks, Check{Name: n})
	}
	if p != nil && p.To != "" {
		checks = append(checks, Check{Name: RoundTripCheck, Target: p.To})
	} else if p != nil {
		checks = append(checks, Check{Name: RoundTripCheck, Target: p.User})
	}
	seen := map[string]bool{}
	for _, c := range checks {
		for _, s := range []string{c.Name, c.Target} {
			if s != "" && !seen[s] {
				seen[s] = true
				valid = append(valid, s)
			}
		}
	}
	for _, p := range o.Only {
		found := false
		for _, c := range checks {
			if selected([]string{p}, c) {
				found = true
				break
			}
		}
		if !found {
			unmatched = append(unmatched, p)
		}
	}
	return unmatched, valid
}
