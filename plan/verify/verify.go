// Package verify runs the live checks of `mailctl verify` (and of the last
// step of apply) against the real DNS and the deployed server:
//
//   - the planned records on every authoritative name server of each zone;
//   - A/AAAA of the server hostname, PTR and forward-confirmed reverse DNS
//     (RFC 1912 section 2.1), MX (RFC 5321 section 5);
//   - SPF (RFC 7208: one record, syntax, at most 10 DNS-querying terms per
//     section 4.6.4, and "pass" for each sending IP), DKIM keys (RFC 6376,
//     RFC 8463), DMARC (RFC 7489, with the external report authorisation of
//     section 7.1), MTA-STS (RFC 8461) and TLS-RPT (RFC 8460);
//   - TLS certificates on SMTP (STARTTLS, RFC 3207), submissions (RFC 8314),
//     IMAPS and HTTPS; the SMTP banner, AUTH only after TLS (RFC 4954
//     section 4), and that the server is not an open relay (RFC 5321
//     section 3.6.2);
//   - postmaster@ (RFC 5321 section 4.5.1) and abuse@ (RFC 2142) per domain;
//   - the server IPs on DNS blocklists (RFC 5782);
//   - a round trip: a probe submitted as a user comes back through IMAP
//     with spf, dkim and dmarc pass in Authentication-Results (RFC 8601).
//
// The checks, by name (Result.Check; Options.Only selects by name or
// target): dns.ns (per zone and name server), dns.a, dns.ptr, dns.mx, spf,
// dkim (per selector), dmarc, mta-sts, tls-rpt, addresses (per domain),
// tls (per host:port: 25, 465, 587, 143, 993, 443), smtp.banner, relay
// (port 25), smtp.auth (587, 465), dnsbl (per server IP), roundtrip (per
// probe recipient, RunAll), and outbound25 (per server: port 25 reachable
// from the server, which plan/preflight adds through Options.Extra).
//
// Root causes come first: when the resolver does not answer at all, one
// "resolver" failure is reported and the checks that ask it are skipped
// because of it; when a server answers on none of its ports, one "server"
// failure (not running, or unreachable) and its port checks skipped.
//
// During a migration's presync phase (plan/desired: the apex MX keep the
// old provider's values, only their TTL is owned, and MTA-STS is not
// published) dns.ns compares only the TTL of such sets and says so,
// dns.mx passes with the MX still at the old provider as long as their TTL
// is lowered, and mta-sts is skipped (it fails when this server's policy
// is published before the cut-over). From phase "cutover" on the normal
// checks apply.
//
// Every network endpoint comes from Options (a Resolver, DNSBL zones, a map
// of service addresses, TLS roots, a clock), so tests point the checks at
// local servers. Checks run in parallel, each under its own timeout, and
// return typed Results; the Report renders as a table or as JSON.
package verify

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailctl/mailctl/internal/formatversion"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

// FormatVersion is the version of the JSON report.
const FormatVersion = formatversion.Current

// Status is the outcome of one check.
type Status int

// Statuses, from best to worst (Skip sorts before Warn: it is not a problem).
const (
	Pass Status = iota
	Skip
	Warn
	Fail
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Skip:
		return "skip"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText writes the status name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a status name.
func (s *Status) UnmarshalText(b []byte) error {
	for _, c := range []Status{Pass, Skip, Warn, Fail} {
		if c.String() == string(b) {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("verify: unknown status %q", b)
}

// Result is the outcome of one check on one target.
type Result struct {
	// Check is the check's name, e.g. "dns.ns", "spf", "tls".
	Check string `json:"check"`
	// Target is what was checked: a domain, a host:port, an IP.
	Target string `json:"target"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Fix is one line telling the user what to do; empty on pass.
	Fix string `json:"fix,omitempty"`
}

// Check is one check to run. Run returns its results; those without Check
// or Target get the Check's. Run must return when ctx is done.
type Check struct {
	Name   string
	Target string
	Run    func(ctx context.Context) []Result
}

// Inputs are what the checks compare the live setup with.
type Inputs struct {
	Config *config.Config
	// Records are the desired records (desired.Records(cfg, keys)); DKIM
	// sets whose keys are unknown are Unknown and their checks skipped.
	// Nil means desired.Records(Config, nil).
	Records []desired.RRSet
}

// Options carry every endpoint the checks use. The zero value checks the
// real Internet through the system's resolver.
type Options struct {
	// Resolver answers the checks' DNS questions (recursively). Default:
	// the name servers of /etc/resolv.conf.
	Resolver Resolver
	// Nameservers, when set, gives the authoritative servers of a zone to
	// query directly; by default they are found through Resolver (NS, then
	// A/AAAA of each name, port 53, or the Addresses entry "name:53").
	Nameservers func(ctx context.Context, zone string) ([]NameServer, error)
	// DNSBLZones are the blocklists; nil means DefaultDNSBLZones, an empty
	// non-nil slice disables the check.
	DNSBLZones []string
	// DNSBLResolver answers the blocklist queries; default Resolver.
	DNSBLResolver Resolver
	// Addresses maps "host:port" to the address actually dialled (tests, or
	// checking a server before its DNS is published).
	Addresses map[string]string
	// Roots verify TLS certificates; nil means the system roots.
	Roots *x509.CertPool
	// Timeout bounds each check; default 20s.
	Timeout time.Duration
	// Now is the clock for certificate expiry; default time.Now.
	Now func() time.Time
	// HeloName is the name this client sends in EHLO; default localhost.
	HeloName string
	// Only, when set, selects the checks to run: an entry selects the
	// checks whose name or target equals it or starts with it followed by
	// '.', ':', ' ' or '@' ("dns" selects dns.ns, dns.a...; "example.org"
	// selects every check of that domain).
	Only []string
	// Extra checks run like the built-in ones (round trip, outbound port
	// 25, PTR through a hosting API).
	Extra []Check
	// Logger receives debug logs; nil discards.
	Logger *slog.Logger
}

// DefaultDNSBLZones are the blocklists checked by default.
var DefaultDNSBLZones = []string{
	"zen.spamhaus.org",
	"bl.spamcop.net",
	"b.barracudacentral.org",
	"dnsbl-1.uceprotect.net",
	"dnsbl-2.uceprotect.net",
	"dnsbl-3.uceprotect.net",
}

// Summary counts results per status.
type Summary struct {
	Pass int `json:"pass"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// Report is the outcome of Run, in a deterministic order.
type Report struct {
	Results []Result
}

// Summary counts the results per status.
func (r Report) Summary() Summary {
	var s Summary
	for _, res := range r.Results {
		switch res.Status {
		case Pass:
			s.Pass++
		case Warn:
			s.Warn++
		case Fail:
			s.Fail++
		case Skip:
			s.Skip++
		}
	}
	return s
}

// ExitCode is 0 when no check failed (warnings allowed), 2 otherwise.
func (r Report) ExitCode() int {
	if r.Summary().Fail > 0 {
		return 2
	}
	return 0
}

// Find returns the results of a check, optionally only for one target.
func (r Report) Find(check, target string) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Check == check && (target == "" || res.Target == target) {
			out = append(out, res)
		}
	}
	return out
}

// runner holds the normalised inputs and options of one Run.
type runner struct {
	cfg     *config.Config
	records []desired.RRSet
	o       Options
	log     *slog.Logger

	zmu   sync.Mutex
	zones map[string]zoneAnswer
}

type zoneAnswer struct {
	zone string
	err  error
}

// Run runs every check in parallel and returns their results in check
// order.
func Run(ctx context.Context, in Inputs, o Options) Report {
	r := &runner{cfg: in.Config, records: in.Records, o: o, zones: map[string]zoneAnswer{}}
	if r.records == nil && r.cfg != nil {
		r.records = desired.Records(r.cfg, nil)
	}
	if r.o.Resolver == nil {
		sys, err := SystemResolver()
		if err != nil {
			return Report{Results: []Result{{Check: "resolver", Target: "/etc/resolv.conf", Status: Fail,
				Detail: err.Error(), Fix: "configure a DNS resolver in /etc/resolv.conf"}}}
		}
		r.o.Resolver = sys
	}
	if r.o.DNSBLResolver == nil {
		r.o.DNSBLResolver = r.o.Resolver
	}
	if r.o.DNSBLZones == nil {
		r.o.DNSBLZones = DefaultDNSBLZones
	}
	if r.o.Timeout <= 0 {
		r.o.Timeout = 20 * time.Second
	}
	if r.o.Now == nil {
		r.o.Now = time.Now
	}
	if r.o.HeloName == "" {
		r.o.HeloName = "localhost"
	}
	r.log = r.o.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	checks := r.checks()
	checks = append(checks, r.o.Extra...)
	if len(r.o.Only) > 0 {
		checks = slices.DeleteFunc(checks, func(c Check) bool { return !selected(r.o.Only, c) })
	}
	causes, checks := r.rootCauses(ctx, checks)
	rep := runChecks(ctx, r.log, checks, r.o.Timeout)
	rep.Results = append(causes, rep.Results...)
	return rep
}

// runChecks runs checks in parallel, each under timeout.
func runChecks(ctx context.Context, log *slog.Logger, checks []Check, timeout time.Duration) Report {
	out := make([][]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			out[i] = runOne(ctx, c, timeout)
			for _, res := range out[i] {
				log.Debug("check done", "check", res.Check, "target", res.Target, "status", res.Status.String(), "duration", time.Since(start))
			}
		}()
	}
	wg.Wait()
	var rep Report
	for _, rs := range out {
		rep.Results = append(rep.Results, rs...)
	}
	return rep
}

func runOne(ctx context.Context, c Check, timeout time.Duration) []Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan []Result, 1)
	go func() { done <- c.Run(ctx) }()
	var rs []Result
	select {
	case rs = <-done:
	case <-ctx.Done():
		// A check that ignores ctx must not block the report.
		select {
		case rs = <-done:
		case <-time.After(time.Second):
		}
	}
	if len(rs) == 0 && ctx.Err() != nil {
		rs = []Result{{Status: Fail, Detail: fmt.Sprintf("no answer within %s", timeout),
			Fix: "check that the server and its DNS are reachable from here, then run mailctl verify again"}}
	}
	for i := range rs {
		if rs[i].Check == "" {
			rs[i].Check = c.Name
		}
		if rs[i].Target == "" {
			rs[i].Target = c.Target
		}
	}
	return rs
}

// checks lists the built-in checks for the configuration.
func (r *runner) checks() []Check {
	if r.cfg == nil {
		return nil
	}
	var cs []Check
	add := func(name, target string, run func(ctx context.Context) []Result) {
		cs = append(cs, Check{Name: name, Target: target, Run: run})
	}
	// Per zone: the planned records on every authoritative NS.
	for _, dom := range r.recordDomains() {
		add("dns.ns", dom, func(ctx context.Context) []Result { return r.checkNameservers(ctx, dom) })
	}
	for _, s := range r.cfg.Servers {
		add("dns.a", s.Hostname, r.named(s, func(ctx context.Context) []Result { return r.checkHostAddrs(ctx, s) }))
		for _, ip := range serverIPs(s) {
			add("dns.ptr", ip.String(), r.named(s, func(ctx context.Context) []Result { return one(r.checkPTR(ctx, s, ip)) }))
		}
	}
	for _, d := range r.cfg.Domains {
		if d.Server == nil {
			continue
		}
		add("dns.mx", d.Name, func(ctx context.Context) []Result { return one(r.checkMX(ctx, d)) })
		add("spf", d.Name, func(ctx context.Context) []Result { return one(r.checkSPF(ctx, d)) })
		add("dkim", d.Name, func(ctx context.Context) []Result { return r.checkDKIM(ctx, d) })
		add("dmarc", d.Name, func(ctx context.Context) []Result { return one(r.checkDMARC(ctx, d)) })
		add("mta-sts", d.Name, func(ctx context.Context) []Result { return one(r.checkMTASTS(ctx, d)) })
		add("tls-rpt", d.Name, func(ctx context.Context) []Result { return one(r.checkTLSRPT(ctx, d)) })
		add("addresses", d.Name, func(ctx context.Context) []Result { return one(r.checkAddresses(d)) })
	}
	for _, s := range r.cfg.Servers {
		for _, svc := range services(s) {
			target := net.JoinHostPort(s.Hostname, fmt.Sprint(svc.port))
			add("tls", target, r.named(s, func(ctx context.Context) []Result { return one(r.checkTLS(ctx, s, svc)) }))
		}
		if p := s.Ports.SMTP; p != 0 {
			target := net.JoinHostPort(s.Hostname, fmt.Sprint(p))
			add("smtp.banner", target, r.named(s, func(ctx context.Context) []Result { return one(r.checkBanner(ctx, s, p)) }))
			add("relay", target, r.named(s, func(ctx context.Context) []Result { return one(r.checkRelay(ctx, s, p)) }))
		}
		if p := s.Ports.Submission; p != 0 {
			target := net.JoinHostPort(s.Hostname, fmt.Sprint(p))
			add("smtp.auth", target, r.named(s, func(ctx context.Context) []Result { return one(r.checkSubmissionAuth(ctx, s, p, false)) }))
		}
		if p := s.Ports.Submissions; p != 0 {
			target := net.JoinHostPort(s.Hostname, fmt.Sprint(p))
			add("smtp.auth", target, r.named(s, func(ctx context.Context) []Result { return one(r.checkSubmissionAuth(ctx, s, p, true)) }))
		}
		for _, ip := range serverIPs(s) {
			if len(r.o.DNSBLZones) > 0 {
				add("dnsbl", ip.String(), r.named(s, func(ctx context.Context) []Result { return one(r.checkDNSBL(ctx, ip)) }))
			}
		}
	}
	return cs
}

// selected reports whether an Only entry selects c.
func selected(only []string, c Check) bool {
	match := func(s, p string) bool {
		if strings.EqualFold(s, p) {
			return true
		}
		return len(s) > len(p) && strings.EqualFold(s[:len(p)], p) && strings.ContainsRune(".: @", rune(s[len(p)]))
	}
	for _, p := range only {
		if match(c.Name, p) || match(c.Target, p) {
			return true
		}
	}
	return false
}

func one(r Result) []Result { return []Result{r} }

// recordDomains lists the domains that own records, sorted.
func (r *runner) recordDomains() []string {
	seen := map[string]bool{}
	var out []string
	for _, rs := range r.records {
		if !seen[rs.Domain] {
			seen[rs.Domain] = true
			out = append(out, rs.Domain)
		}
	}
	sort.Strings(out)
	return out
}

// finding is one problem found by a check.
type finding struct {
	status      Status
	detail, fix string
}

// combine turns findings into one result: the worst status, every detail,
// the fix of the first worst finding. With no finding it passes with ok.
func combine(ok string, fs []finding) Result {
	if len(fs) == 0 {
		return Result{Status: Pass, Detail: ok}
	}
	worst := fs[0]
	var details []string
	for _, f := range fs {
		if f.status > worst.status {
			worst = f
		}
		details = append(details, f.detail)
	}
	return Result{Status: worst.status, Detail: strings.Join(details, "; "), Fix: worst.fix}
}
