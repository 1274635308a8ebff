package verify

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/plan/config"
)

// dnsblName is the RFC 5782 query name of ip in zone: reversed octets, or
// reversed nibbles for IPv6.
func dnsblName(ip netip.Addr, zone string) string {
	rev, _ := mdns.ReverseAddr(ip.String())
	rev = strings.TrimSuffix(strings.TrimSuffix(rev, "in-addr.arpa."), "ip6.arpa.")
	return rev + strings.TrimSuffix(zone, ".")
}

// lookupURL is where a listing can be looked up and removal requested.
func lookupURL(zone string, ip netip.Addr) string {
	switch z := strings.ToLower(zone); {
	case strings.HasSuffix(z, "spamhaus.org"):
		return "https://check.spamhaus.org/results/?query=" + ip.String()
	case strings.HasSuffix(z, "spamcop.net"):
		return "https://www.spamcop.net/bl.shtml?" + ip.String()
	case strings.HasSuffix(z, "barracudacentral.org"):
		return "https://www.barracudacentral.org/lookups/lookup-reputation"
	case strings.HasSuffix(z, "uceprotect.net"):
		return "https://www.uceprotect.net/en/rblcheck.php?ipr=" + ip.String()
	}
	return "https://mxtoolbox.com/SuperTool.aspx?action=blacklist%3a" + ip.String()
}

// refused is the 127.255.255.0/24 range in which Spamhaus (and others
// following it) answer queries they refuse: from public resolvers, over
// quota, or malformed. Such an answer is not a listing.
var refused = netip.MustParsePrefix("127.255.255.0/24")
var loopback = netip.MustParsePrefix("127.0.0.0/8")

type blAnswer struct {
	zone    string
	listed  []netip.Addr
	reason  string
	refused netip.Addr
	odd     []netip.Addr
	err     error
}

// checkDNSBL looks ip up in every blocklist zone.
func (r *runner) checkDNSBL(ctx context.Context, ip netip.Addr) Result {
	if !public(ip) {
		return Result{Status: Skip, Detail: ip.String() + " is not a public address: blocklists do not list it"}
	}
	res := make([]blAnswer, len(r.o.DNSBLZones))
	var wg sync.WaitGroup
	for i, zone := range r.o.DNSBLZones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := blAnswer{zone: zone}
			name := dnsblName(ip, zone)
			got, err := lookupIPs(ctx, r.o.DNSBLResolver, name, false)
			a.err = err
			for _, g := range got {
				switch {
				case refused.Contains(g):
					a.refused = g
				case loopback.Contains(g):
					a.listed = append(a.listed, g)
				default:
					a.odd = append(a.odd, g)
				}
			}
			if len(a.listed) > 0 {
				if txts, err := lookupTXT(ctx, r.o.DNSBLResolver, name); err == nil && len(txts) > 0 {
					a.reason = txts[0]
				}
			}
			res[i] = a
		}()
	}
	wg.Wait()
	var fs []finding
	for _, a := range res {
		switch {
		case a.err != nil:
			fs = append(fs, finding{Warn, fmt.Sprintf("%s could not be queried: %v", a.zone, a.err),
				"check that this machine's resolver can reach " + a.zone + ", then run mailctl verify again"})
		case len(a.listed) > 0:
			d := fmt.Sprintf("listed on %s (%s", a.zone, addrs(a.listed))
			if a.reason != "" {
				d += ": " + a.reason
			}
			d += "), see " + lookupURL(a.zone, ip)
			fs = append(fs, finding{Fail, d,
				fmt.Sprintf("find out on its lookup page why %s lists %s, fix the cause (open relay, compromised account, missing PTR), then request removal there", a.zone, ip)})
		case a.refused.IsValid():
			fs = append(fs, finding{Warn, fmt.Sprintf("%s refused the query (answer %s): not a listing, but the IP could not be checked there", a.zone, a.refused),
				"query blocklists through a resolver of your own (e.g. unbound on this machine), not a public resolver"})
		case len(a.odd) > 0:
			fs = append(fs, finding{Warn, fmt.Sprintf("%s gave an answer outside 127.0.0.0/8 (%s): a resolver rewriting NXDOMAIN?", a.zone, addrs(a.odd)),
				"query blocklists through a resolver that does not rewrite answers"})
		}
	}
	if pub := publicServer(r.o.DNSBLResolver); pub != "" {
		fs = append(fs, finding{Warn, fmt.Sprintf("blocklist queries go through the public resolver %s, which Spamhaus and others refuse (answers 127.255.255.x)", pub),
			"query blocklists through a resolver of your own (e.g. unbound on this machine)"})
	}
	return combine(fmt.Sprintf("not listed on %s", strings.Join(r.o.DNSBLZones, ", ")), fs)
}

// checkAddresses checks that postmaster@ (RFC 5321 section 4.5.1) and
// abuse@ (RFC 2142) of the domain deliver somewhere.
func (r *runner) checkAddresses(d *config.Domain) Result {
	var fs []finding
	for _, local := range []string{"postmaster", "abuse"} {
		addr := local + "@" + d.Name
		if r.addressExists(addr) {
			continue
		}
		st, why := Warn, "RFC 2142"
		if local == "postmaster" {
			st, why = Fail, "RFC 5321 section 4.5.1 requires it"
		}
		fs = append(fs, finding{st, fmt.Sprintf("%s does not exist (%s)", addr, why),
			fmt.Sprintf("add alias %q { to = [\"you@%s\"] } (or list it in a user's aliases)", addr, d.Name)})
	}
	return combine("postmaster@"+d.Name+" and abuse@"+d.Name+" exist", fs)
}

func (r *runner) addressExists(addr string) bool {
	_, domain, _ := strings.Cut(addr, "@")
	for _, u := range r.cfg.Users {
		if strings.EqualFold(u.Address, addr) {
			return true
		}
		for _, a := range u.Aliases {
			if strings.EqualFold(a, addr) {
				return true
			}
		}
	}
	for _, a := range r.cfg.Aliases {
		if strings.EqualFold(a.Address, addr) || strings.EqualFold(a.Address, "@"+domain) {
			return len(a.To) > 0
		}
	}
	return false
}
