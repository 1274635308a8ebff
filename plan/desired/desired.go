// Package desired derives, from the configuration alone, the DNS records
// mailctl owns for each domain (MX, SPF per RFC 7208, host A/AAAA, DKIM per
// RFC 6376, DMARC per RFC 7489, MTA-STS per RFC 8461, TLS-RPT per RFC 8460,
// autoconfig/autodiscover, SRV per RFC 6186 and RFC 8314, CalDAV/CardDAV
// SRV and TXT per RFC 6764), and how a
// migration block's phase (presync, cutover, done) changes them while mail
// moves from another provider. It is pure: no network, no clock.
package desired

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan/config"
)

// RRSet is one owned record set of a domain.
type RRSet struct {
	// Domain is the configured domain the set belongs to.
	Domain string
	// Provider is the DNS provider's address (provider.KIND.NAME).
	Provider string
	// Zone is the zone the domain is configured in, or "" to discover.
	Zone string
	// Name is the absolute owner name, lower case, without trailing dot.
	Name string
	Type string
	TTL  int
	// Values are the records' data in canonical presentation form (TXT as
	// plain text; targets fully qualified with a trailing dot).
	Values []string
	// Prefix, when set, restricts ownership to the records at Name/Type
	// whose data starts with it (case-insensitive): the one apex TXT that
	// starts with "v=spf1"; other TXT records there are not mailctl's.
	Prefix string
	// Unknown is true when Values are only known after Source is applied.
	Unknown bool
	Source  string
	// KeepValues owns only the TTL: the records at Name/Type keep their
	// current values (a migration's old MX before the cut-over), none is
	// created when there are none, and none is deleted on destroy. Values
	// then say what the set will hold once KeepUntil happens.
	KeepValues bool
	// KeepUntil says what ends KeepValues, for the plan's notes, e.g.
	// `phase = "cutover"`.
	KeepUntil string
	// Notes are remarks the plan shows with the set's change.
	Notes []string
}

// MigrationTTL is the TTL of the records that move during a migration
// (the MX, and the A/AAAA of the server), so that the cut-over and a
// fallback spread within minutes.
const MigrationTTL = 300

// Address returns the resource address dns.<domain>.<name relative to the
// domain>.<TYPE>; the apex has no middle part.
func (s RRSet) Address() string {
	rel := strings.TrimSuffix(strings.TrimSuffix(s.Name, s.Domain), ".")
	if rel == "" {
		return "dns." + s.Domain + "." + s.Type
	}
	return "dns." + s.Domain + "." + rel + "." + s.Type
}

// DKIMKey is a public key a server reports for a domain's selector.
type DKIMKey struct {
	Domain   string
	Selector string // full selector, e.g. mx1-2026-ed25519
	// Record is the TXT value, e.g. "v=DKIM1; k=ed25519; p=...".
	Record string
	// State is the selector's place in a rotation, as the server reports
	// it: signing, pending, retired or published ("" from an older
	// server). Created and Retired say when the key was generated and
	// when it stopped signing.
	State            string
	Created, Retired time.Time
	// Server is the name of the server that reported the key; "" when
	// not known (then it counts for every server). Only the keys of a
	// domain's first server are published: its other servers sign with
	// copies of them (SourceKeys).
	Server string
}

// DKIMSelectors returns the two selectors published for a domain's
// configured selector: one ed25519 key (RFC 8463) and one rsa-2048 key, so
// that verifiers without ed25519 support still find a valid signature.
func DKIMSelectors(selector string) []string {
	var out []string
	for _, s := range contract.DKIMSelectors(selector) {
		out = append(out, s.Name)
	}
	return out
}

// PublishedSelectors are the selectors published for a domain: those of
// the signing selector, then those of the previous ones (rotation).
func PublishedSelectors(k config.DKIM) []string {
	out := DKIMSelectors(k.Selector)
	for _, p := range k.Previous {
		out = append(out, DKIMSelectors(p)...)
	}
	return out
}

// publishedSelectors are the configured selectors of d and those the
// server's rotations added (pending, signing or retired keys it reports).
//
// The configured signing selector is left out once a rotation replaced
// and removed it: the server then signs with a selector named after it
// (SELECTOR-YYYYMMDD, see plan/dkimrotate) and reports no key for it.
func publishedSelectors(d *config.Domain, keys []DKIMKey) []string {
	out := PublishedSelectors(d.DKIM)
	if len(keys) == 0 {
		return out // no key known: nothing rotated (and no regexp to compile per domain)
	}
	rotated := regexp.MustCompile(`^` + regexp.QuoteMeta(d.DKIM.Selector) + `-\d{8}(-\d+)?-(ed25519|rsa)$`)
	reported, replaced := false, false
	for _, k := range keys {
		if k.Domain != d.Name {
			continue
		}
		if slices.Contains(DKIMSelectors(d.DKIM.Selector), k.Selector) {
			reported = true
		}
		if k.State == contract.DKIMStateSigning && rotated.MatchString(k.Selector) {
			replaced = true
		}
	}
	if replaced && !reported {
		out = slices.DeleteFunc(out, func(s string) bool { return slices.Contains(DKIMSelectors(d.DKIM.Selector), s) })
	}
	for _, k := range keys {
		if k.Domain != d.Name || slices.Contains(out, k.Selector) {
			continue
		}
		// A signing selector not configured is only published when a
		// rotation made it: one left by a hand-edited selector is not.
		if k.State == contract.DKIMStatePending || k.State == contract.DKIMStateRetired || (k.State == contract.DKIMStateSigning && rotated.MatchString(k.Selector)) {
			out = append(out, k.Selector)
		}
	}
	return out
}

// Records returns every owned record set of every domain, sorted by
// address. keys gives the DKIM public keys known from the servers; a
// selector without a key is Unknown ("known after apply").
func Records(cfg *config.Config, keys []DKIMKey) []RRSet {
	out := make([]RRSet, 0, 16*len(cfg.Domains)) // about 12 a domain
	hostOwner := hostDomains(cfg)
	keys = SourceKeys(cfg, keys)
	byKey := make(map[keyRef]string, len(keys))
	byDomain := map[string][]DKIMKey{} // for the selectors rotations added
	for _, k := range keys {
		byDomain[k.Domain] = append(byDomain[k.Domain], k)
		if _, dup := byKey[keyRef{k.Domain, k.Selector}]; !dup {
			byKey[keyRef{k.Domain, k.Selector}] = k.Record
		}
	}
	for _, d := range cfg.Domains {
		out = append(out, domainRecords(cfg, d, byKey, byDomain[d.Name], hostOwner)...)
	}
	// Sorted by address, each computed once: thousands of domains make
	// tens of thousands of sets.
	addrs := make([]string, len(out))
	idx := make([]int, len(out))
	for i := range out {
		addrs[i], idx[i] = out[i].Address(), i
	}
	sort.SliceStable(idx, func(a, b int) bool { return addrs[idx[a]] < addrs[idx[b]] })
	sorted := make([]RRSet, len(out))
	for i, j := range idx {
		sorted[i] = out[j]
	}
	return sorted
}

// keyRef is a DKIM key's domain and selector.
type keyRef struct{ domain, selector string }

// hostDomains maps each server hostname to the declared domain that
// contains it (the longest), which then owns its A/AAAA records.
func hostDomains(cfg *config.Config) map[string]string {
	m := map[string]string{}
	for _, s := range cfg.Servers {
		best := ""
		for _, d := range cfg.Domains {
			if strings.HasSuffix(s.Hostname, "."+d.Name) && len(d.Name) > len(best) {
				best = d.Name
			}
		}
		if best != "" {
			m[s.Hostname] = best
		}
	}
	return m
}

func domainRecords(cfg *config.Config, d *config.Domain, keys map[keyRef]string, domainKeys []DKIMKey, hostOwner map[string]string) []RRSet {
	if d.DNS == nil || d.Server == nil {
		return nil
	}
	s := d.Server
	host := s.Hostname + "."
	base := RRSet{Domain: d.Name, Provider: d.DNS.Addr(), Zone: d.Zone, TTL: d.TTL}
	phase := migrationPhase(cfg, d.Name)
	moving := phase == config.PhasePresync || phase == config.PhaseCutover
	set := func(name, typ string, values ...string) RRSet {
		r := base
		r.Name, r.Type, r.Values = name, typ, values
		return r
	}
	sub := func(label string) string { return label + "." + d.Name }

	mx := set(d.Name, "MX", mxValues(d)...)
	mxText := strings.Join(mx.Values, ", ")
	spf := set(d.Name, "TXT", SPF(cfg, d))
	spf.Prefix = "v=spf1"
	if moving {
		mx.TTL = MigrationTTL
	}
	if inc := migrationInclude(cfg, d.Name); inc != "" {
		spf.Notes = append(spf.Notes, fmt.Sprintf("include:%s stays until phase = \"done\": the old provider may still send mail for %s", inc, d.Name))
	}
	switch phase {
	case config.PhasePresync:
		mx.KeepValues, mx.KeepUntil = true, `phase = "cutover"`
		mx.Notes = append(mx.Notes, fmt.Sprintf("the MX keep their current values until phase = \"cutover\" switches them to %s; only the TTL changes now", mxText))
	case config.PhaseCutover:
		mx.Notes = append(mx.Notes,
			"once the MX point here, run mailctl migrate again: it copies what reached the old mailboxes meanwhile",
			"set phase = \"done\" once the old MX TTL has passed and new mail arrives at "+strings.Join(hostnames(d), ", "))
	}
	out := make([]RRSet, 0, 16) // about 12: one allocation, no regrowth
	out = append(out, mx, spf)

	// Host A/AAAA, once, in the domain that contains the hostname.
	for _, srv := range cfg.Servers {
		if hostOwner[srv.Hostname] != d.Name {
			continue
		}
		for _, ip := range []netip.Addr{srv.IPv4, srv.IPv6} {
			if !ip.IsValid() {
				continue
			}
			a := set(srv.Hostname, map[bool]string{true: "A", false: "AAAA"}[ip.Is4()], ip.String())
			if moving {
				a.TTL = MigrationTTL
			}
			out = append(out, a)
		}
	}

	for _, sel := range publishedSelectors(d, domainKeys) {
		r := set(sel+"._domainkey."+d.Name, "TXT")
		r.Source = "server." + s.Name
		if k := keys[keyRef{d.Name, sel}]; k != "" {
			r.Values = []string{k}
		} else {
			r.Unknown = true
		}
		out = append(out, r)
	}

	dmarc := set(sub("_dmarc"), "TXT", DMARC(d.DMARC))
	if phase == config.PhaseDone {
		switch d.DMARC.Policy {
		case "none":
			dmarc.Notes = append(dmarc.Notes, `DMARC is at p=none: it can now be raised to quarantine, then to reject, each a separate reviewed change (dmarc { policy = "quarantine" })`)
		case "quarantine":
			dmarc.Notes = append(dmarc.Notes, `DMARC is at p=quarantine: it can now be raised to reject as a separate reviewed change (dmarc { policy = "reject" })`)
		}
	}
	out = append(out, dmarc)

	// Owned even when not configured: an empty set deletes a stale record
	// (a leftover MTA-STS policy would break delivery to the new server).
	// Not before a migration's cut-over: a policy naming only this server
	// while the MX still point to the old provider would make enforcing
	// senders refuse to deliver there.
	switch {
	case phase == config.PhasePresync:
	case d.MTASTS != nil:
		sts := set(sub("_mta-sts"), "TXT", "v=STSv1; id="+mtastsID(d))
		if phase == config.PhaseDone && d.MTASTS.Mode == "testing" {
			sts.Notes = append(sts.Notes, `MTA-STS is in testing mode: it can now be raised to enforce as a separate reviewed change (mta_sts { mode = "enforce" }), once TLS reports show no failures`)
		}
		out = append(out, sts, set(sub("mta-sts"), "CNAME", host))
	default:
		out = append(out, set(sub("_mta-sts"), "TXT"), set(sub("mta-sts"), "CNAME"))
	}
	if d.TLSRPT != nil && len(d.TLSRPT.RUA) > 0 {
		out = append(out, set(sub("_smtp._tls"), "TXT", "v=TLSRPTv1; rua="+strings.Join(d.TLSRPT.RUA, ",")))
	} else {
		out = append(out, set(sub("_smtp._tls"), "TXT"))
	}
	out = append(out,
		set(sub("autoconfig"), "CNAME", host),
		set(sub("autodiscover"), "CNAME", host),
		// RFC 8314: implicit TLS first; RFC 6186 STARTTLS services after.
		// The ports the server listens on (a lab's are not the standard
		// ones); a disabled service is "not available" (RFC 2782 target ".").
		set(sub("_submissions._tcp"), "SRV", srv(0, s.Ports.Submissions, host)),
		set(sub("_submission._tcp"), "SRV", srv(10, s.Ports.Submission, host)),
		set(sub("_imaps._tcp"), "SRV", srv(0, s.Ports.IMAPS, host)),
		set(sub("_imap._tcp"), "SRV", srv(10, s.Ports.IMAP, host)),
	)
	out = append(out, davRecords(sub, set, s.Ports.HTTPS, host)...)
	return out
}

// davRecords are the RFC 6764 records of CalDAV and CardDAV over TLS,
// served on the HTTPS port (server/dav): an SRV each, and a TXT giving the
// well-known path the server redirects from; with HTTPS disabled, the
// services are "not available" and the TXT records are removed.
func davRecords(sub func(string) string, set func(string, string, ...string) RRSet, port int, host string) []RRSet {
	var out []RRSet
	for _, svc := range []string{"caldav", "carddav"} {
		name := sub("_" + svc + "s._tcp")
		out = append(out, set(name, "SRV", srv(0, port, host)))
		if port == 0 {
			out = append(out, set(name, "TXT"))
		} else {
			out = append(out, set(name, "TXT", "path=/.well-known/"+svc))
		}
	}
	return out
}

// srv is the value of an RFC 6186 SRV record: priority, weight 1, port,
// target; "0 0 0 ." when the service is disabled (port 0).
func srv(priority, port int, host string) string {
	if port == 0 {
		return "0 0 0 ."
	}
	return fmt.Sprintf("%d 1 %d %s", priority, port, host)
}

// relayIncludes maps smarthost host suffixes to the SPF include their
// operators document.
var relayIncludes = []struct{ suffix, include string }{
	{"amazonaws.com", "amazonses.com"},
	{"mailgun.org", "mailgun.org"},
	{"sendgrid.net", "sendgrid.net"},
	{"postmarkapp.com", "spf.mtasv.net"},
	{"brevo.com", "spf.brevo.com"},
	{"sendinblue.com", "spf.brevo.com"},
	{"mailjet.com", "spf.mailjet.com"},
	{"office365.com", "spf.protection.outlook.com"},
	{"gmail.com", "_spf.google.com"},
	{"smtp2go.com", "spf.smtp2go.com"},
}

// RelayInclude returns the SPF include for a known smarthost address
// (host:port), or "".
func RelayInclude(address string) string {
	host := strings.ToLower(address)
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	for _, r := range relayIncludes {
		if host == r.suffix || strings.HasSuffix(host, "."+r.suffix) {
			return r.include
		}
	}
	return ""
}

// SPF returns the domain's SPF record: the addresses of every server of
// the domain, the configured includes and the relays', then the "all"
// qualifier.
func SPF(cfg *config.Config, d *config.Domain) string {
	parts := []string{"v=spf1"}
	for _, s := range domainServers(d) {
		for _, m := range []string{spfIP(s.IPv4, "ip4:"), spfIP(s.IPv6, "ip6:")} {
			if m != "" && !slices.Contains(parts, m) {
				parts = append(parts, m)
			}
		}
	}
	includes := slices.Clone(d.SPF.Include)
	for _, s := range domainServers(d) {
		if s.Relay == nil {
			continue
		}
		if inc := RelayInclude(s.Relay.Address); inc != "" && !slices.Contains(includes, inc) {
			includes = append(includes, inc)
		}
	}
	if inc := migrationInclude(cfg, d.Name); inc != "" && !slices.Contains(includes, inc) {
		includes = append(includes, inc)
	}
	for _, inc := range includes {
		parts = append(parts, "include:"+inc)
	}
	parts = append(parts, d.SPF.All)
	return strings.Join(parts, " ")
}

// DMARC returns the _dmarc TXT value.
func DMARC(m config.DMARC) string {
	parts := []string{"v=DMARC1", "p=" + m.Policy}
	if m.SubdomainPolicy != "" {
		parts = append(parts, "sp="+m.SubdomainPolicy)
	}
	if m.Percent != 0 && m.Percent != 100 {
		parts = append(parts, fmt.Sprintf("pct=%d", m.Percent))
	}
	if m.ADKIM != "" {
		parts = append(parts, "adkim="+m.ADKIM)
	}
	if m.ASPF != "" {
		parts = append(parts, "aspf="+m.ASPF)
	}
	if len(m.RUA) > 0 {
		parts = append(parts, "rua="+strings.Join(m.RUA, ","))
	}
	if len(m.RUF) > 0 {
		parts = append(parts, "ruf="+strings.Join(m.RUF, ","))
	}
	return strings.Join(parts, "; ")
}

// migrationPhase returns the phase of the migration that cuts the domain
// over, or "".
func migrationPhase(cfg *config.Config, domain string) string {
	if m := cfg.MigrationFor(domain); m != nil {
		return m.Phase
	}
	return ""
}

// migrationInclude returns the SPF include of the old provider that a
// migrating domain keeps until phase "done" (Google's _spf.google.com for
// imap.gmail.com), or "".
func migrationInclude(cfg *config.Config, domain string) string {
	m := cfg.MigrationFor(domain)
	if m == nil || m.Phase == config.PhaseDone {
		return ""
	}
	return RelayInclude(m.Source.Address)
}
