package verify

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

func serverIPs(s *config.Server) []netip.Addr {
	var out []netip.Addr
	if s.IPv4.IsValid() {
		out = append(out, s.IPv4)
	}
	if s.IPv6.IsValid() {
		out = append(out, s.IPv6)
	}
	return out
}

// public reports whether ip is reachable from the Internet (documentation
// ranges count as public: tests use them).
func public(ip netip.Addr) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate()
}

// rrData is the canonical data of a record: TXT strings joined, other
// types in presentation form, lower case.
func rrData(rr mdns.RR) string {
	if t, ok := rr.(*mdns.TXT); ok {
		return strings.Join(t.Txt, "")
	}
	return strings.ToLower(strings.TrimSpace(strings.TrimPrefix(rr.String(), rr.Header().String())))
}

// canonical returns a desired value in rrData's form.
func canonical(name, typ, value string) string {
	if typ == "TXT" {
		return value
	}
	rr, err := mdns.NewRR(fmt.Sprintf("%s 3600 IN %s %s", mdns.Fqdn(name), typ, value))
	if err != nil || rr == nil {
		return strings.ToLower(value)
	}
	return rrData(rr)
}

// nsState is what one name server answered for a zone.
type nsState struct {
	ns       NameServer
	serial   uint32
	err      error
	problems []string
	// kept are the sets of which only the TTL was compared (KeepValues).
	kept []string
}

// checkNameservers queries each authoritative server of the domain's zone
// directly and compares every planned record set with its answer.
func (r *runner) checkNameservers(ctx context.Context, domain string) []Result {
	var sets []desired.RRSet
	zone := ""
	for _, s := range r.records {
		if s.Domain != domain || s.Unknown {
			continue
		}
		sets = append(sets, s)
		if s.Zone != "" {
			zone = strings.TrimSuffix(strings.ToLower(s.Zone), ".")
		}
	}
	target := domain
	if zone == "" {
		z, err := r.zoneOf(ctx, domain)
		if err != nil {
			return one(Result{Target: target, Status: Fail, Detail: err.Error(),
				Fix: "check that the domain is delegated to your DNS provider (NS records at the registrar)"})
		}
		zone = z
	}
	nss, err := r.nameservers(ctx, zone)
	if err != nil {
		return one(Result{Target: target, Status: Fail, Detail: err.Error(),
			Fix: "check that the zone " + zone + " is delegated (NS records at the registrar)"})
	}
	states := make([]*nsState, len(nss))
	var wg sync.WaitGroup
	for i, ns := range nss {
		states[i] = &nsState{ns: ns}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.compareNS(ctx, zone, sets, states[i])
		}()
	}
	wg.Wait()
	var maxSerial uint32
	good := 0
	for _, st := range states {
		if st.err == nil && len(st.problems) == 0 {
			good++
		}
		if st.serial > maxSerial {
			maxSerial = st.serial
		}
	}
	var out []Result
	for _, st := range states {
		res := Result{Target: domain + " @ " + st.ns.String()}
		switch {
		case st.err != nil:
			res.Status = Fail
			res.Detail = st.err.Error()
			res.Fix = fmt.Sprintf("make %s answer for the zone %s, or remove it from the zone's NS records", st.ns, zone)
		case len(st.problems) > 0:
			res.Status = Fail
			ps := st.problems
			if len(ps) > 5 {
				ps = append(slices.Clone(ps[:5]), fmt.Sprintf("and %d more", len(st.problems)-5))
			}
			res.Detail = strings.Join(ps, "; ")
			if st.serial < maxSerial {
				res.Detail += fmt.Sprintf(" (SOA serial %d, others have %d)", st.serial, maxSerial)
			}
			if good > 0 {
				res.Detail = st.ns.String() + " lags: " + res.Detail
				res.Fix = fmt.Sprintf("%s lags behind the other name servers: check that it gets zone transfers (NOTIFY/AXFR) from the primary, or wait for the SOA refresh, then run mailctl verify again", st.ns)
			} else {
				res.Fix = "run mailctl plan and mailctl apply to publish the planned records"
			}
		default:
			res.Status = Pass
			res.Detail = fmt.Sprintf("%d record sets as planned (SOA serial %d)", len(sets), st.serial)
			if len(st.kept) > 0 {
				res.Detail += "; " + strings.Join(st.kept, "; ")
			}
		}
		out = append(out, res)
	}
	return out
}

func (r *runner) compareNS(ctx context.Context, zone string, sets []desired.RRSet, st *nsState) {
	if st.ns.Addr == "" {
		st.err = fmt.Errorf("%s has no address", st.ns)
		return
	}
	c := &DNSClient{Servers: []string{st.ns.Addr}, Timeout: 3 * time.Second}
	m, err := c.Query(ctx, zone, mdns.TypeSOA)
	if err != nil {
		st.err = err
		return
	}
	soa := answers(m, zone, mdns.TypeSOA)
	if len(soa) == 0 || !m.Authoritative {
		st.err = fmt.Errorf("%s is not authoritative for %s", st.ns, zone)
		return
	}
	st.serial = soa[0].(*mdns.SOA).Serial
	for _, s := range sets {
		qt := mdns.StringToType[s.Type]
		m, err := c.Query(ctx, s.Name, qt)
		if err != nil {
			st.problems = append(st.problems, fmt.Sprintf("%s %s: %v", s.Name, s.Type, err))
			continue
		}
		var got []string
		var ttls []uint32
		for _, rr := range m.Answer {
			if rr.Header().Rrtype == qt && strings.EqualFold(rr.Header().Name, mdns.Fqdn(s.Name)) {
				got = append(got, rrData(rr))
				ttls = append(ttls, rr.Header().Ttl)
			}
		}
		if s.KeepValues {
			if p := keptTTL(s, got, ttls); p != "" {
				st.problems = append(st.problems, p)
			} else {
				st.kept = append(st.kept, keptNote(s, got))
			}
			continue
		}
		if s.Prefix != "" {
			got = withPrefix(got, s.Prefix)
		}
		var want []string
		for _, v := range s.Values {
			want = append(want, canonical(s.Name, s.Type, v))
		}
		slices.Sort(got)
		slices.Sort(want)
		if slices.Equal(got, want) {
			continue
		}
		st.problems = append(st.problems, fmt.Sprintf("%s %s is %s, want %s", s.Name, s.Type, show(got), show(want)))
	}
}

// keptTTL compares a KeepValues set with a server's answer: only its TTL
// is mailctl's (a migration's MX before the cut-over), so any values pass,
// none included (none is created), but each record must have the planned
// TTL. It returns the problem, or "".
func keptTTL(s desired.RRSet, got []string, ttls []uint32) string {
	if len(s.Values) == 0 {
		return ""
	}
	for i, ttl := range ttls {
		if int(ttl) != s.TTL {
			return fmt.Sprintf("%s %s %q has TTL %d, want %d (its values are kept until %s, its TTL is planned)", s.Name, s.Type, got[i], ttl, s.TTL, keepUntil(s))
		}
	}
	return ""
}

// keptNote says what was compared of a KeepValues set.
func keptNote(s desired.RRSet, got []string) string {
	if len(got) == 0 {
		return fmt.Sprintf("%s %s: none to keep until %s", s.Name, s.Type, keepUntil(s))
	}
	return fmt.Sprintf("%s %s: only the TTL (%d) compared, the current values (%s) are kept until %s", s.Name, s.Type, s.TTL, strings.Join(got, ", "), keepUntil(s))
}

func keepUntil(s desired.RRSet) string {
	if s.KeepUntil != "" {
		return s.KeepUntil
	}
	return "they change"
}

// show prints a value list compactly, shortening long values (DKIM keys).
func show(vs []string) string {
	if len(vs) == 0 {
		return "absent"
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		if len(v) > 60 {
			v = v[:45] + "..." + v[len(v)-10:]
		}
		out[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(out, ", ")
}

// checkHostAddrs compares A and AAAA of the server hostname with its IPs.
func (r *runner) checkHostAddrs(ctx context.Context, s *config.Server) []Result {
	var out []Result
	for _, v6 := range []bool{false, true} {
		want := s.IPv4
		typ := "A"
		if v6 {
			want, typ = s.IPv6, "AAAA"
		}
		res := Result{Check: "dns.a", Target: s.Hostname + " " + typ}
		got, err := lookupIPs(ctx, r.o.Resolver, s.Hostname, v6)
		switch {
		case err != nil:
			res.Status, res.Detail = Fail, err.Error()
			res.Fix = "check that the DNS of " + s.Hostname + " answers, then run mailctl verify again"
		case !want.IsValid() && len(got) == 0:
			res.Status, res.Detail = Pass, "no "+typ+" record, none configured"
		case !want.IsValid():
			res.Status = Fail
			res.Detail = fmt.Sprintf("%s has %s %s but the server has no %s address configured", s.Hostname, typ, addrs(got), typ)
			res.Fix = fmt.Sprintf("delete the %s record of %s, or set ipv6 in server %q", typ, s.Hostname, s.Name)
		case len(got) == 1 && got[0] == want:
			res.Status, res.Detail = Pass, fmt.Sprintf("%s %s", typ, want)
		default:
			res.Status = Fail
			res.Detail = fmt.Sprintf("%s %s is %s, want %s", s.Hostname, typ, addrs(got), want)
			res.Fix = fmt.Sprintf("run mailctl apply to set %s %s %s (or fix it at the DNS host if the zone is not managed here)", s.Hostname, typ, want)
		}
		out = append(out, res)
	}
	return out
}

func addrs(ips []netip.Addr) string {
	if len(ips) == 0 {
		return "absent"
	}
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ", ")
}

// checkPTR checks the reverse DNS of ip: exactly one PTR, equal to the
// server hostname (the EHLO name), which resolves back to ip (FCrDNS).
func (r *runner) checkPTR(ctx context.Context, s *config.Server, ip netip.Addr) Result {
	if !public(ip) {
		return Result{Status: Skip, Detail: ip.String() + " is not a public address: it has no public reverse DNS"}
	}
	rev, _ := mdns.ReverseAddr(ip.String())
	fix := fmt.Sprintf("set the reverse DNS (PTR) of %s to %s at your hosting provider (or set ptr in server %q and run mailctl apply)", ip, s.Hostname, s.Name)
	rrs, err := lookup(ctx, r.o.Resolver, rev, mdns.TypePTR)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fix}
	}
	var names []string
	for _, rr := range rrs {
		names = append(names, strings.TrimSuffix(strings.ToLower(rr.(*mdns.PTR).Ptr), "."))
	}
	switch {
	case len(names) == 0:
		return Result{Status: Fail, Detail: "no PTR record for " + ip.String(), Fix: fix}
	case len(names) > 1:
		return Result{Status: Fail, Detail: fmt.Sprintf("%d PTR records for %s: %s", len(names), ip, strings.Join(names, ", ")), Fix: fix}
	case names[0] != s.Hostname:
		return Result{Status: Fail, Detail: fmt.Sprintf("PTR of %s is %s, want %s (the EHLO name)", ip, names[0], s.Hostname), Fix: fix}
	}
	fwd, err := lookupIPs(ctx, r.o.Resolver, names[0], ip.Is6())
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fix}
	}
	if !slices.Contains(fwd, ip) {
		return Result{Status: Fail,
			Detail: fmt.Sprintf("PTR %s does not resolve back to %s (it resolves to %s): forward-confirmed reverse DNS fails", names[0], ip, addrs(fwd)),
			Fix:    fmt.Sprintf("publish %s %s %s (run mailctl apply)", names[0], map[bool]string{false: "A", true: "AAAA"}[ip.Is6()], ip)}
	}
	return Result{Status: Pass, Detail: fmt.Sprintf("PTR %s, which resolves back to %s", names[0], ip)}
}

// checkMX checks that the domain's MX records point to its server; during
// a migration's presync phase (the planned MX set keeps its values), that
// the old provider's MX are still there with the planned TTL at most.
func (r *runner) checkMX(ctx context.Context, d *config.Domain) Result {
	nodes := domainServers(d)
	hosts := map[string]*config.Server{}
	var want []string
	for _, s := range nodes {
		hosts[s.Hostname] = s
		want = append(want, fmt.Sprintf("%d %s.", d.MXPriorityOf(s), s.Hostname))
	}
	host := strings.Join(hostnames(d), ", ")
	fix := fmt.Sprintf("run mailctl apply to publish MX %s for %s", strings.Join(want, ", "), d.Name)
	rrs, err := lookup(ctx, r.o.Resolver, d.Name, mdns.TypeMX)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fix}
	}
	var ours, others []string
	found := map[string]bool{}
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		t := strings.TrimSuffix(strings.ToLower(mx.Mx), ".")
		if hosts[t] != nil {
			found[t] = true
			ours = append(ours, fmt.Sprintf("%d %s", mx.Preference, t))
		} else {
			others = append(others, fmt.Sprintf("%d %s", mx.Preference, t))
		}
	}
	if keep := r.keptMX(d); keep != nil && len(keep.Values) > 0 {
		phase := "presync"
		if m := r.cfg.MigrationFor(d.Name); m != nil {
			phase = m.Phase
		}
		until := keepUntil(*keep)
		if len(rrs) == 0 {
			return Result{Status: Fail,
				Detail: fmt.Sprintf("no MX record: in %s the MX keep the old provider's values until %s, and there are none (mail for %s goes to its A record)", phase, until, d.Name),
				Fix:    fmt.Sprintf("publish the old provider's MX records again at the DNS host, or set %s in the migration block and run mailctl apply to point the MX to %s", until, host)}
		}
		for _, rr := range rrs {
			if ttl := int(rr.Header().Ttl); ttl > keep.TTL {
				return Result{Status: Fail,
					Detail: fmt.Sprintf("MX TTL is %d, want at most %d before the cut-over: resolvers would keep the old MX that long after %s", ttl, keep.TTL, until),
					Fix:    "run mailctl apply to lower the MX TTL, then wait the old TTL before the cut-over"}
			}
		}
		if len(ours) == 0 {
			return Result{Status: Pass, Detail: fmt.Sprintf("MX still at the old provider (%s): cut over with %s (MX %s)", phase, until, strings.Join(others, ", "))}
		}
	}
	switch {
	case len(ours) == 0 && len(others) == 0:
		return Result{Status: Fail, Detail: "no MX record", Fix: fix}
	case len(ours) == 0:
		return Result{Status: Fail, Detail: "MX points to " + strings.Join(others, ", ") + ", not to " + host, Fix: fix}
	}
	var missing []string
	for _, s := range nodes {
		if !found[s.Hostname] {
			missing = append(missing, fmt.Sprintf("%s (server.%s)", s.Hostname, s.Name))
		}
	}
	if len(missing) > 0 {
		return Result{Status: Fail, Detail: fmt.Sprintf("MX %s, but none for %s", strings.Join(ours, ", "), strings.Join(missing, ", ")), Fix: fix}
	}
	if len(others) > 0 {
		return Result{Status: Warn, Detail: fmt.Sprintf("MX %s, but also %s", strings.Join(ours, ", "), strings.Join(others, ", ")),
			Fix: "remove the other MX records unless they are backup servers you run"}
	}
	return Result{Status: Pass, Detail: "MX " + strings.Join(ours, ", ")}
}

// keptMX returns the planned apex MX set of the domain when it keeps its
// values (a migration before the cut-over), or nil.
func (r *runner) keptMX(d *config.Domain) *desired.RRSet {
	for i, s := range r.records {
		if s.Domain == d.Name && s.Name == d.Name && s.Type == "MX" && s.KeepValues {
			return &r.records[i]
		}
	}
	return nil
}
