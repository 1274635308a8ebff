// Package propagation waits, after apply changed DNS records, until every
// authoritative name server of each changed zone serves the new records.
//
// The name servers of a zone are its NS RRset, found through a recursive
// resolver (or given by the caller); each one is queried directly, without
// recursion (RFC 1034 section 4.3.1), for the zone's SOA and for every
// changed RRset, which is compared with the plan as a set, TTL included
// (RFC 2181 section 5). A server lags while it serves an old or missing
// RRset, typically a secondary that has not transferred the new version of
// the zone yet (RFC 1996 NOTIFY, RFC 5936 AXFR, RFC 1995 IXFR); its SOA
// serial, compared with the other servers' in serial number arithmetic
// (RFC 1982), explains the lag. The records decide, not the serials: some
// providers' servers never agree on a serial.
//
// Wait polls with a growing interval, bounded by Options.Timeout, and
// prints its progress: on a terminal one line rewritten in place,
// otherwise a line each time the state changes.
package propagation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libdns/libdns"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/dnsclient"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/providers/dns"
)

// DefaultTimeout bounds Wait when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Minute

// Options tune Wait. Every endpoint is configurable so that tests point
// Wait at local name servers.
type Options struct {
	// Resolver is a recursive resolver that finds the NS records of each
	// zone and the addresses of the name servers. Default: the name
	// servers of /etc/resolv.conf.
	Resolver verify.Resolver
	// Nameservers, when set, gives the authoritative servers of a zone
	// instead of Resolver.
	Nameservers func(ctx context.Context, zone string) ([]verify.NameServer, error)
	// Addresses maps "host:53" to the address dialled for the name server
	// host (as verify.Options.Addresses; host names compare case-blind).
	Addresses map[string]string
	// Timeout bounds the whole wait; default DefaultTimeout.
	Timeout time.Duration
	// MinInterval is the pause after the first poll (default 2s); each
	// pause is half as long again as the previous one, up to MaxInterval
	// (default 10s).
	MinInterval, MaxInterval time.Duration
	// QueryTimeout bounds each DNS query; default 3s.
	QueryTimeout time.Duration
	// Progress receives the progress lines; nil discards.
	Progress io.Writer
	// Terminal rewrites one progress line in place (Progress is a
	// terminal); otherwise a line is printed when the state changes.
	Terminal bool
	// Width, when Terminal, is the terminal's width: longer lines are cut
	// so that they do not wrap (a wrapped line cannot be rewritten).
	Width int
	// Logger receives debug logs; nil discards.
	Logger *slog.Logger
}

// Server is the state of one authoritative server of one zone at the last
// complete poll.
type Server struct {
	Zone string
	verify.NameServer
	// Serial is the SOA serial it serves (0 when it did not answer).
	Serial uint32
	// Current is true once it serves every changed RRset as planned.
	Current bool
	// Problems say what it still serves differently, e.g. "example.org MX
	// old", or why it did not answer.
	Problems []string

	answered bool // it answered the SOA query, authoritatively
	netDown  bool // its address family is unreachable from here
}

// Result is the state of every server when Wait returned.
type Result struct {
	Servers []Server
	// Missing says, per zone whose name servers could not be found, why.
	Missing map[string]string
	// Polls counts the polls done; Elapsed is the time Wait took.
	Polls   int
	Elapsed time.Duration
}

// ErrTimeout is wrapped by the error of a wait that reached its bound.
var ErrTimeout = errors.New("propagation: timed out")

// rrset is one changed RRset, as the plan wants it after apply.
type rrset struct {
	name  string // absolute, lower case, trailing dot
	rtype uint16
	label string // "_dmarc.example.org TXT"
	want  []string
	ttl   int
	old   []string // the values before apply
}

// zone is the state of one zone during the wait.
type zone struct {
	name    string
	sets    []rrset
	servers []*Server // nil until found
	findErr error
}

// Wait returns once every authoritative name server of each zone changed
// by changes serves the planned records: deleted RRsets gone, others equal
// to After as a set with After's TTL. Changes that are no-ops, are not DNS
// RRsets or whose value is unknown (DKIM keys deferred) are skipped. It
// fails when ctx ends (wrapping ctx's error) or when Options.Timeout
// passes first (wrapping ErrTimeout, naming the servers that lag and what
// to check). The Result holds each server's state at the last poll. When
// Wait returns, every query and look-up it started has returned: a query
// in flight is interrupted when ctx ends.
func Wait(ctx context.Context, changes []plan.Change, opts Options) (Result, error) {
	zones := group(changes)
	if len(zones) == 0 {
		return Result{}, nil
	}
	w := &waiter{o: opts, zones: zones, start: time.Now()}
	if w.o.Timeout <= 0 {
		w.o.Timeout = DefaultTimeout
	}
	if w.o.MinInterval <= 0 {
		w.o.MinInterval = 2 * time.Second
	}
	if w.o.MaxInterval < w.o.MinInterval {
		w.o.MaxInterval = max(10*time.Second, w.o.MinInterval)
	}
	if w.o.QueryTimeout <= 0 {
		w.o.QueryTimeout = 3 * time.Second
	}
	if w.o.Logger == nil {
		w.o.Logger = slog.New(slog.DiscardHandler)
	}
	addrs := make(map[string]string, len(w.o.Addresses))
	for k, v := range w.o.Addresses {
		addrs[strings.ToLower(k)] = v
	}
	w.o.Addresses = addrs
	if w.o.Resolver == nil && w.o.Nameservers == nil {
		r, err := verify.SystemResolver()
		if err != nil {
			return Result{}, fmt.Errorf("wait for DNS propagation: %w", err)
		}
		w.o.Resolver = r
	}
	return w.run(ctx)
}

// group sorts the changes into zones, each with its RRsets, in a
// deterministic order.
func group(changes []plan.Change) []*zone {
	byName := map[string]*zone{}
	var out []*zone
	for _, c := range changes {
		if c.Type != plan.KindDNSRRset || c.Action == plan.NoOp || c.AfterUnknown {
			continue
		}
		zn := strings.TrimSuffix(strings.ToLower(c.Zone), ".")
		z := byName[zn]
		if z == nil {
			z = &zone{name: zn}
			byName[zn] = z
			out = append(out, z)
		}
		name := dns.AbsoluteName(c.Name, zn)
		s := rrset{
			name:  name,
			rtype: mdns.StringToType[strings.ToUpper(c.RRType)],
			label: strings.TrimSuffix(name, ".") + " " + strings.ToUpper(c.RRType),
		}
		if c.After != nil {
			s.want, s.ttl = canonical(c.Name, c.RRType, zn, c.After.Values), c.After.TTL
		}
		if c.Before != nil {
			s.old = canonical(c.Name, c.RRType, zn, c.Before.Values)
		}
		z.sets = append(z.sets, s)
	}
	slices.SortFunc(out, func(a, b *zone) int { return strings.Compare(a.name, b.name) })
	for _, z := range out {
		slices.SortFunc(z.sets, func(a, b rrset) int { return strings.Compare(a.label, b.label) })
	}
	return out
}

// canonical puts planned values in the form norm gives served records.
func canonical(name, typ, zone string, values []string) []string {
	out := make([]string, 0, len(values))
	for _, v := range values {
		out = append(out, norm(typ, dns.Canonical(libdns.RR{Name: name, Type: typ, Data: v}, zone).Data))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// norm is plan's comparison form: TXT text as is, other data lower case
// with single spaces.
func norm(typ, v string) string {
	if strings.EqualFold(typ, "TXT") {
		return v
	}
	return strings.ToLower(strings.Join(strings.Fields(v), " "))
}

type waiter struct {
	o     Options
	zones []*zone
	start time.Time
	polls int
	shown string // last state printed (without the elapsed time)
}

func (w *waiter) run(ctx context.Context) (Result, error) {
	wctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	interval := w.o.MinInterval
	timer := time.NewTimer(interval)
	timer.Stop()
	defer timer.Stop()
	deadline, _ := wctx.Deadline()
	for {
		w.poll(wctx)
		// A query's deadline can pass before the context says so.
		if wctx.Err() != nil || !time.Now().Before(deadline) {
			// The round was cut short: keep the previous complete one.
			return w.stop(ctx)
		}
		w.polls++
		done, total, lag := w.summary()
		if w.complete() {
			w.finish(fmt.Sprintf("DNS propagation complete: %d/%d name servers serve the new records", done, total))
			return w.result(), nil
		}
		w.progress(fmt.Sprintf("Waiting for DNS propagation: %d/%d name servers serve the new records (%s)", done, total, lag))
		timer.Reset(interval)
		select {
		case <-wctx.Done():
			return w.stop(ctx)
		case <-timer.C:
		}
		interval = min(interval*3/2, w.o.MaxInterval)
	}
}

// stop ends the wait when ctx (the caller's) ended or the bound passed.
func (w *waiter) stop(ctx context.Context) (Result, error) {
	if w.shown != "" && w.o.Terminal && w.o.Progress != nil {
		fmt.Fprintln(w.o.Progress)
	}
	res := w.result()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("wait for DNS propagation: %w", err)
	}
	return res, w.timeoutError()
}

func (w *waiter) result() Result {
	res := Result{Polls: w.polls, Elapsed: time.Since(w.start)}
	for _, z := range w.zones {
		if z.servers == nil {
			if res.Missing == nil {
				res.Missing = map[string]string{}
			}
			msg := "not looked up"
			if z.findErr != nil {
				msg = z.findErr.Error()
			}
			res.Missing[z.name] = msg
		}
		for _, s := range z.servers {
			c := *s
			c.Problems = slices.Clone(s.Problems)
			res.Servers = append(res.Servers, c)
		}
	}
	return res
}

// poll finds the servers of zones not found yet and checks every server
// that does not serve the new records yet, in parallel; it returns when
// every query has returned.
func (w *waiter) poll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, z := range w.zones {
		if z.servers != nil && !slices.ContainsFunc(z.servers, func(s *Server) bool { return s.Addr == "" }) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nss, err := w.nameservers(ctx, z.name)
			if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
				return
			}
			if err != nil {
				z.findErr = err
				if z.servers == nil {
					w.o.Logger.Debug("name servers not found", "zone", z.name, "err", err)
				}
				return
			}
			z.findErr = nil
			old := map[string]*Server{}
			for _, s := range z.servers {
				old[s.Name] = s
			}
			z.servers = nil
			for _, ns := range nss {
				if s, ok := old[ns.Name]; ok && s.Addr == ns.Addr {
					z.servers = append(z.servers, s)
					continue
				}
				z.servers = append(z.servers, &Server{Zone: z.name, NameServer: ns})
			}
			slices.SortFunc(z.servers, func(a, b *Server) int { return strings.Compare(a.Name, b.Name) })
		}()
	}
	wg.Wait()

	type job struct {
		z *zone
		s *Server
	}
	var jobs []job
	for _, z := range w.zones {
		for _, s := range z.servers {
			if !s.Current {
				jobs = append(jobs, job{z, s})
			}
		}
	}
	results := make([]Server, len(jobs))
	sem := make(chan struct{}, 8)
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = w.check(ctx, j.z, *j.s)
		}()
	}
	wg.Wait()
	if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
		return
	}
	for i, j := range jobs {
		*j.s = results[i]
		if !j.s.Current {
			w.o.Logger.Debug("name server lags", "zone", j.z.name, "host", j.s.String(), "serial", j.s.Serial, "problems", strings.Join(j.s.Problems, "; "))
		}
	}
}

// nameservers returns the authoritative servers of zone: Options.
// Nameservers, or verify.FindNameservers through Resolver and Addresses.
func (w *waiter) nameservers(ctx context.Context, zone string) ([]verify.NameServer, error) {
	if w.o.Nameservers != nil {
		nss, err := w.o.Nameservers(ctx, zone)
		if err == nil && len(nss) == 0 {
			err = fmt.Errorf("look up NS of %s: no name server", zone)
		}
		return nss, err
	}
	return verify.FindNameservers(ctx, w.o.Resolver, w.o.Addresses, zone)
}

// check queries one server for the zone's SOA and every changed RRset.
func (w *waiter) check(ctx context.Context, z *zone, s Server) Server {
	s.Problems, s.Current, s.answered, s.netDown = nil, false, false, false
	if s.Addr == "" {
		s.Problems = []string{"no address for " + s.Name}
		return s
	}
	c := &dnsclient.Client{Servers: []string{s.Addr}, Timeout: w.o.QueryTimeout}
	m, err := c.Query(ctx, z.name, mdns.TypeSOA)
	if err != nil {
		s.netDown = errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
		s.Problems = []string{"no answer: " + err.Error()}
		return s
	}
	var soa *mdns.SOA
	for _, rr := range m.Answer {
		if r, ok := rr.(*mdns.SOA); ok && strings.EqualFold(r.Hdr.Name, z.name+".") {
			soa = r
		}
	}
	if soa == nil || !m.Authoritative {
		s.Problems = []string{fmt.Sprintf("not authoritative for %s (rcode %s)", z.name, mdns.RcodeToString[m.Rcode])}
		return s
	}
	s.answered, s.Serial = true, soa.Serial
	for _, set := range z.sets {
		m, err := c.Query(ctx, set.name, set.rtype)
		if err != nil {
			s.Problems = append(s.Problems, set.label+" no answer")
			continue
		}
		if p := set.compare(m); p != "" {
			s.Problems = append(s.Problems, p)
		}
	}
	s.Current = len(s.Problems) == 0
	return s
}

// compare says how the answer m differs from the planned set, or "".
func (set rrset) compare(m *mdns.Msg) string {
	typ := mdns.TypeToString[set.rtype]
	var got []string
	ttl := -1
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Rrtype != set.rtype || !strings.EqualFold(h.Name, set.name) {
			continue
		}
		v := norm(typ, dns.DataOf(rr))
		// At a name whose TXT records are not all mailctl's (the SPF one
		// at the apex), only the planned and the previous values count.
		if set.rtype == mdns.TypeTXT && !slices.Contains(set.want, v) && !slices.Contains(set.old, v) {
			continue
		}
		got = append(got, v)
		if ttl < 0 || int(h.Ttl) < ttl {
			ttl = int(h.Ttl)
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	switch {
	case slices.Equal(got, set.want) && (len(got) == 0 || ttl == set.ttl):
		return ""
	case len(set.want) == 0:
		return set.label + " not deleted"
	case len(got) == 0:
		return set.label + " missing"
	case slices.Equal(got, set.want):
		return fmt.Sprintf("%s TTL %d, want %d", set.label, ttl, set.ttl)
	case len(set.old) > 0 && slices.Equal(got, set.old):
		return set.label + " old"
	}
	return set.label + " differs"
}

// serialLess reports whether serial a is older than b in RFC 1982 serial
// number arithmetic (SERIAL_BITS 32); undefined comparisons are false.
func serialLess(a, b uint32) bool {
	return a != b && b-a < 1<<31
}

// complete reports whether every zone's servers were found and serve the
// new records. A server whose address family is unreachable from here
// (IPv6 on an IPv4-only host) is left out when another address of the
// same name server answered.
func (w *waiter) complete() bool {
	for _, z := range w.zones {
		if z.servers == nil {
			return false
		}
		for _, s := range z.servers {
			if !s.Current && !w.excused(z, s) {
				return false
			}
		}
	}
	return true
}

func (w *waiter) excused(z *zone, s *Server) bool {
	if !s.netDown {
		return false
	}
	base, _, _ := strings.Cut(s.Name, " (")
	for _, o := range z.servers {
		if ob, _, _ := strings.Cut(o.Name, " ("); o != s && ob == base && o.answered {
			return true
		}
	}
	return false
}

// summary counts the servers that serve the new records and describes
// the others: "ns2.example.org: serial 3 < 4, example.org MX old".
func (w *waiter) summary() (done, total int, lag string) {
	var parts []string
	for _, z := range w.zones {
		if z.servers == nil {
			msg := "name servers not found yet"
			if z.findErr != nil {
				msg = z.findErr.Error()
			}
			parts = append(parts, z.name+": "+msg)
			continue
		}
		for _, s := range z.servers {
			total++
			if s.Current || w.excused(z, s) {
				done++
				continue
			}
			parts = append(parts, w.describe(z, s, 2))
		}
	}
	if len(parts) > 3 {
		parts = append(parts[:3], fmt.Sprintf("%d more", len(parts)-3))
	}
	return done, total, strings.Join(parts, "; ")
}

// describe names a lagging server and its first n problems (all if n<=0).
func (w *waiter) describe(z *zone, s *Server, n int) string {
	return w.label(z, s) + ": " + w.problems(z, s, n)
}

// problems lists the first n problems of a lagging server (all if n<=0),
// its serial first when it is behind the zone's newest.
func (w *waiter) problems(z *zone, s *Server, n int) string {
	var ps []string
	if s.answered {
		if top := w.maxSerial(z); serialLess(s.Serial, top) {
			ps = append(ps, fmt.Sprintf("serial %d < %d", s.Serial, top))
		}
	}
	if n > 0 && len(s.Problems) > n {
		ps = append(ps, s.Problems[:n]...)
		ps = append(ps, fmt.Sprintf("%d more", len(s.Problems)-n))
	} else {
		ps = append(ps, s.Problems...)
	}
	return strings.Join(ps, ", ")
}

func (w *waiter) label(z *zone, s *Server) string {
	if len(w.zones) > 1 {
		return s.String() + " for " + z.name
	}
	return s.String()
}

// maxSerial is the newest serial the zone's servers answered.
func (w *waiter) maxSerial(z *zone) uint32 {
	var top uint32
	first := true
	for _, s := range z.servers {
		if s.answered && (first || serialLess(top, s.Serial)) {
			top, first = s.Serial, false
		}
	}
	return top
}

func (w *waiter) elapsed() string {
	return time.Since(w.start).Round(time.Second).String()
}

// progress prints the state: rewritten in place on a terminal, else only
// when it changed.
func (w *waiter) progress(state string) {
	if w.o.Progress == nil {
		return
	}
	if w.o.Terminal {
		line := fmt.Sprintf("%s [%s elapsed]", state, w.elapsed())
		if r := []rune(line); w.o.Width > 1 && len(r) >= w.o.Width {
			line = string(r[:w.o.Width-2]) + "…"
		}
		fmt.Fprintf(w.o.Progress, "\r\033[K%s", line)
	} else if state != w.shown {
		fmt.Fprintf(w.o.Progress, "%s [%s elapsed]\n", state, w.elapsed())
	}
	w.shown = state
}

func (w *waiter) finish(state string) {
	if w.o.Progress == nil {
		return
	}
	if w.o.Terminal {
		fmt.Fprint(w.o.Progress, "\r\033[K")
	}
	fmt.Fprintf(w.o.Progress, "%s [%s]\n", state, w.elapsed())
}

// timeoutError names every server that still lags, and what to check.
func (w *waiter) timeoutError() error {
	done, total, _ := w.summary()
	lines := []string{fmt.Sprintf("DNS propagation not complete after %s: %d/%d name servers serve the new records", w.o.Timeout, done, total)}
	lagging, unreachable := false, false
	for _, z := range w.zones {
		if z.servers == nil {
			msg := "name servers not found"
			if z.findErr != nil {
				msg = z.findErr.Error()
			}
			lines = append(lines, fmt.Sprintf("zone %s: %s", z.name, msg))
			unreachable = true
			continue
		}
		for _, s := range z.servers {
			if s.Current || w.excused(z, s) {
				continue
			}
			if s.answered {
				lagging = true
			} else {
				unreachable = true
			}
			lines = append(lines, fmt.Sprintf("%s (zone %s): %s", s.String(), z.name, w.problems(z, s, 0)))
		}
	}
	var fix []string
	if lagging {
		fix = append(fix, "check that the secondary name servers transfer the zone from the primary (NOTIFY sent to them, AXFR/IXFR allowed), then run mailctl verify")
	}
	if unreachable {
		fix = append(fix, "check that the zone is delegated to these name servers (NS records at the registrar) and that they answer from here")
	}
	lines = append(lines, "fix: "+strings.Join(fix, "; ")+"; or wait longer")
	return &timeoutError{strings.Join(lines, "\n")}
}

// timeoutError is the error of a wait that reached its bound: one line of
// summary, one per lagging server, one with the fix. It matches ErrTimeout.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string        { return e.msg }
func (e *timeoutError) Is(target error) bool { return target == ErrTimeout }
