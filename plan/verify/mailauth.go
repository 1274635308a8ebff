package verify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"

	"blitiri.com.ar/go/spf"
	"golang.org/x/net/publicsuffix"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/server/mtasts"
)

// spfLookupLimit is RFC 7208 section 4.6.4's limit on DNS-querying terms.
const spfLookupLimit = 10

// checkSPF checks the domain's SPF record: exactly one, valid syntax, at
// most 10 DNS lookups, and "pass" for each of the server's IPs.
func (r *runner) checkSPF(ctx context.Context, d *config.Domain) Result {
	fixPublish := "run mailctl apply to publish the planned SPF record: " + desired.SPF(r.cfg, d)
	txts, err := lookupTXT(ctx, r.o.Resolver, d.Name)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: "check that the DNS of " + d.Name + " answers"}
	}
	recs := withPrefix(txts, "v=spf1")
	switch len(recs) {
	case 0:
		return Result{Status: Fail, Detail: "no v=spf1 record at " + d.Name, Fix: fixPublish}
	case 1:
	default:
		return Result{Status: Fail, Detail: fmt.Sprintf("%d v=spf1 records at %s (RFC 7208 section 4.5: permerror)", len(recs), d.Name),
			Fix: "delete every v=spf1 TXT record of " + d.Name + " except mailctl's, then run mailctl apply"}
	}
	if err := spfSyntax(recs[0]); err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("invalid SPF record %q: %v", recs[0], err), Fix: fixPublish}
	}
	n, err := r.spfLookups(ctx, d.Name, recs[0], 0, map[string]bool{})
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: "fix or remove the failing include/redirect in the SPF record of " + d.Name}
	}
	if n > spfLookupLimit {
		return Result{Status: Fail,
			Detail: fmt.Sprintf("SPF needs %d DNS lookups, more than the limit of %d (RFC 7208 section 4.6.4): receivers get permerror", n, spfLookupLimit),
			Fix:    "remove includes from spf { include = [...] } of " + d.Name + ", or replace them with ip4:/ip6: ranges"}
	}
	var fs []finding
	var all []netip.Addr
	for _, s := range domainServers(d) {
		for _, ip := range serverIPs(s) {
			all = append(all, ip)
			res, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), s.Hostname, "postmaster@"+d.Name,
				spf.WithResolver(spfResolver{r.o.Resolver}), spf.WithContext(ctx))
			if res == spf.Pass {
				continue
			}
			detail := fmt.Sprintf("SPF of %s gives %s for %s", d.Name, res, ip)
			if len(domainServers(d)) > 1 {
				detail += " (server." + s.Name + ")"
			}
			if err != nil {
				detail += " (" + err.Error() + ")"
			}
			fs = append(fs, finding{Fail, detail, fixPublish})
		}
	}
	if len(fs) > 0 {
		return combine("", fs)
	}
	return Result{Status: Pass, Detail: fmt.Sprintf("%q: %d DNS lookups, pass for %s", recs[0], n, addrs(all))}
}

// spfSyntax checks an SPF record against RFC 7208 section 12's grammar,
// without expanding macros.
func spfSyntax(rec string) error {
	terms := strings.Fields(rec)
	if len(terms) == 0 || !strings.EqualFold(terms[0], "v=spf1") {
		return fmt.Errorf("does not start with v=spf1")
	}
	mods := map[string]bool{}
	for _, t := range terms[1:] {
		if i := strings.IndexByte(t, '='); i > 0 && !strings.ContainsAny(t[:i], ":/") {
			name := strings.ToLower(t[:i])
			if !validModifierName(name) {
				return fmt.Errorf("invalid modifier %q", t)
			}
			if (name == "redirect" || name == "exp") && mods[name] {
				return fmt.Errorf("%s= appears twice", name)
			}
			if (name == "redirect" || name == "exp") && t[i+1:] == "" {
				return fmt.Errorf("%s= has no domain", name)
			}
			mods[name] = true
			continue
		}
		m := strings.TrimLeft(t, "+-~?")
		if len(t)-len(m) > 1 {
			return fmt.Errorf("invalid qualifier in %q", t)
		}
		name, arg, hasArg := strings.Cut(m, ":")
		name = strings.ToLower(name)
		cidr := ""
		if !hasArg {
			if j := strings.IndexByte(name, '/'); j >= 0 {
				name, cidr = name[:j], name[j:]
			}
		}
		switch name {
		case "all":
			if hasArg || cidr != "" {
				return fmt.Errorf("%q: all takes no argument", t)
			}
		case "include", "exists":
			if !hasArg || arg == "" {
				return fmt.Errorf("%q: %s needs a domain", t, name)
			}
		case "a", "mx":
			if hasArg && arg == "" {
				return fmt.Errorf("%q: empty domain", t)
			}
		case "ptr":
			if cidr != "" {
				return fmt.Errorf("%q: ptr takes no prefix length", t)
			}
		case "ip4", "ip6":
			if !hasArg {
				return fmt.Errorf("%q: %s needs an address", t, name)
			}
			addr, plen, hasLen := strings.Cut(arg, "/")
			ip, err := netip.ParseAddr(addr)
			if err != nil || (name == "ip4") != ip.Is4() {
				return fmt.Errorf("%q: invalid %s address", t, name)
			}
			if hasLen {
				n, err := strconv.Atoi(plen)
				if err != nil || n < 0 || n > ip.BitLen() {
					return fmt.Errorf("%q: invalid prefix length", t)
				}
			}
		default:
			return fmt.Errorf("unknown mechanism %q", t)
		}
	}
	return nil
}

func validModifierName(n string) bool {
	if n == "" || n[0] < 'a' || n[0] > 'z' {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// spfLookups counts the DNS-querying terms of rec (include, a, mx, ptr,
// exists, redirect), recursively through includes and redirects.
func (r *runner) spfLookups(ctx context.Context, domain, rec string, depth int, seen map[string]bool) (int, error) {
	if depth > 10 {
		return 0, fmt.Errorf("SPF includes of %s nest too deep (a loop?)", domain)
	}
	n := 0
	hasAll := false
	redirect := ""
	var includes []string
	for _, t := range strings.Fields(rec)[1:] {
		lt := strings.ToLower(t)
		if strings.HasPrefix(lt, "redirect=") {
			redirect = t[len("redirect="):]
			continue
		}
		m := strings.TrimLeft(lt, "+-~?")
		name, arg, _ := strings.Cut(m, ":")
		name, _, _ = strings.Cut(name, "/")
		switch name {
		case "all":
			hasAll = true
		case "include":
			n++
			includes = append(includes, t[len(t)-len(arg):])
		case "a", "mx", "ptr", "exists":
			n++
		}
	}
	if redirect != "" && !hasAll {
		n++
		includes = append(includes, redirect)
	}
	for _, inc := range includes {
		if strings.Contains(inc, "%") { // macro: cannot be followed here
			continue
		}
		key := strings.ToLower(strings.TrimSuffix(inc, "."))
		if seen[key] {
			return 0, fmt.Errorf("SPF include loop through %s", key)
		}
		seen[key] = true
		txts, err := lookupTXT(ctx, r.o.Resolver, key)
		if err != nil {
			return 0, fmt.Errorf("SPF of %s: look up include %s: %w", domain, key, err)
		}
		recs := withPrefix(txts, "v=spf1")
		if len(recs) != 1 {
			return 0, fmt.Errorf("SPF of %s: %s has %d v=spf1 records, want 1 (permerror)", domain, key, len(recs))
		}
		k, err := r.spfLookups(ctx, key, recs[0], depth+1, seen)
		if err != nil {
			return 0, err
		}
		n += k
		delete(seen, key)
	}
	return n, nil
}

// tags parses "k=v; k=v" (DKIM, DMARC, TLS-RPT, MTA-STS TXT records).
func tags(rec string) (map[string]string, []string, error) {
	m := map[string]string{}
	var order []string
	for _, part := range strings.Split(rec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, nil, fmt.Errorf("%q is not a tag=value pair", part)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := m[k]; dup {
			return nil, nil, fmt.Errorf("tag %s appears twice", k)
		}
		m[k] = strings.TrimSpace(v)
		order = append(order, k)
	}
	return m, order, nil
}

// checkDKIM compares the published key of each selector with the server's.
func (r *runner) checkDKIM(ctx context.Context, d *config.Domain) []Result {
	var out []Result
	for _, sel := range desired.PublishedSelectors(d.DKIM) {
		name := sel + "._domainkey." + d.Name
		res := Result{Target: name}
		var want *desired.RRSet
		for i := range r.records {
			if rs := &r.records[i]; rs.Name == name && rs.Type == "TXT" {
				want = rs
			}
		}
		if want == nil || want.Unknown || len(want.Values) == 0 {
			res.Status = Skip
			res.Detail = "the server's DKIM key is not known (the server was not reached): the published key cannot be compared"
			res.Fix = "run mailctl verify again once the server is deployed and reachable"
			out = append(out, res)
			continue
		}
		fix := "run mailctl apply to publish the server's DKIM key at " + name
		txts, err := lookupTXT(ctx, r.o.Resolver, name)
		if err != nil {
			out = append(out, Result{Target: name, Status: Fail, Detail: err.Error(), Fix: fix})
			continue
		}
		wt, _, _ := tags(want.Values[0])
		var keys []string
		for _, t := range txts {
			tg, _, err := tags(t)
			if err != nil {
				continue
			}
			if v, ok := tg["v"]; ok && v != "DKIM1" {
				continue
			}
			keys = append(keys, strings.Join(strings.Fields(tg["p"]), ""))
		}
		switch {
		case len(keys) == 0:
			res.Status, res.Detail, res.Fix = Fail, "no DKIM key published at "+name, fix
		case len(keys) > 1:
			res.Status, res.Detail, res.Fix = Fail, fmt.Sprintf("%d DKIM records at %s", len(keys), name), fix
		case keys[0] == "":
			res.Status, res.Detail, res.Fix = Fail, "the key at "+name+" is revoked (empty p=)", fix
		case keys[0] != strings.Join(strings.Fields(wt["p"]), ""):
			res.Status, res.Detail, res.Fix = Fail, "the published key differs from the server's "+sel+" key: signatures will fail", fix
		default:
			k := wt["k"]
			if k == "" {
				k = "rsa"
			}
			res.Status, res.Detail = Pass, fmt.Sprintf("%s key matches the server's", k)
		}
		out = append(out, res)
	}
	return out
}

// orgDomain is the organisational domain (RFC 7489 section 3.2).
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(strings.TrimSuffix(d, ".")))
	if err != nil {
		return strings.ToLower(d)
	}
	return o
}

// checkDMARC checks the _dmarc record's syntax and warns about p=none, a
// missing rua, and external report addresses without authorisation.
func (r *runner) checkDMARC(ctx context.Context, d *config.Domain) Result {
	name := "_dmarc." + d.Name
	fix := "run mailctl apply to publish the planned DMARC record: " + desired.DMARC(d.DMARC)
	txts, err := lookupTXT(ctx, r.o.Resolver, name)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fix}
	}
	recs := withPrefix(txts, "v=DMARC1")
	switch len(recs) {
	case 0:
		return Result{Status: Fail, Detail: "no v=DMARC1 record at " + name, Fix: fix}
	case 1:
	default:
		return Result{Status: Fail, Detail: fmt.Sprintf("%d v=DMARC1 records at %s: receivers ignore them all", len(recs), name), Fix: fix}
	}
	tg, order, err := tags(recs[0])
	if err == nil && order[0] != "v" {
		err = fmt.Errorf("v=DMARC1 must come first")
	}
	if err == nil {
		err = dmarcSyntax(tg)
	}
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("invalid DMARC record %q: %v", recs[0], err), Fix: fix}
	}
	var fs []finding
	if tg["p"] == "none" {
		fs = append(fs, finding{Warn, "p=none: receivers only report, they do not reject forged mail",
			"once reports show your mail passes, set dmarc { policy = \"quarantine\" } (then \"reject\")"})
	}
	if tg["rua"] == "" {
		fs = append(fs, finding{Warn, "no rua: nobody receives aggregate reports",
			"set dmarc { rua = [\"mailto:dmarc@" + d.Name + "\"] }"})
	}
	for _, key := range []string{"rua", "ruf"} {
		for _, u := range splitURIs(tg[key]) {
			addr, ok := strings.CutPrefix(strings.ToLower(u), "mailto:")
			if !ok {
				continue
			}
			addr, _, _ = strings.Cut(addr, "!")
			_, host, _ := strings.Cut(addr, "@")
			if host == "" || orgDomain(host) == orgDomain(d.Name) {
				continue
			}
			auth := d.Name + "._report._dmarc." + host
			txts, err := lookupTXT(ctx, r.o.Resolver, auth)
			if err == nil && len(withPrefix(txts, "v=DMARC1")) > 0 {
				continue
			}
			fs = append(fs, finding{Warn,
				fmt.Sprintf("%s address %s is outside %s and %s has no v=DMARC1 record: receivers will not send reports there (RFC 7489 section 7.1)", key, addr, d.Name, auth),
				fmt.Sprintf("ask the operator of %s to publish TXT %s \"v=DMARC1\", or use a %s address for %s", host, auth, d.Name, key)})
		}
	}
	return combine(fmt.Sprintf("%q", recs[0]), fs)
}

func splitURIs(v string) []string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func dmarcSyntax(tg map[string]string) error {
	if tg["v"] != "DMARC1" {
		return fmt.Errorf("v=%s, want DMARC1", tg["v"])
	}
	policies := []string{"none", "quarantine", "reject"}
	p, ok := tg["p"]
	if !ok {
		return fmt.Errorf("no p= tag")
	}
	if !slices.Contains(policies, strings.ToLower(p)) {
		return fmt.Errorf("p=%s is not none, quarantine or reject", p)
	}
	if sp, ok := tg["sp"]; ok && !slices.Contains(policies, strings.ToLower(sp)) {
		return fmt.Errorf("sp=%s is not none, quarantine or reject", sp)
	}
	for _, k := range []string{"adkim", "aspf"} {
		if v, ok := tg[k]; ok && v != "r" && v != "s" {
			return fmt.Errorf("%s=%s is not r or s", k, v)
		}
	}
	if v, ok := tg["pct"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return fmt.Errorf("pct=%s is not 0 to 100", v)
		}
	}
	if v, ok := tg["ri"]; ok {
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return fmt.Errorf("ri=%s is not a number of seconds", v)
		}
	}
	for _, k := range []string{"rua", "ruf"} {
		if v, ok := tg[k]; ok {
			uris := splitURIs(v)
			if len(uris) == 0 {
				return fmt.Errorf("%s= is empty", k)
			}
			for _, u := range uris {
				addr, ok := strings.CutPrefix(strings.ToLower(u), "mailto:")
				if !ok && !strings.HasPrefix(strings.ToLower(u), "https:") {
					return fmt.Errorf("%s URI %q is neither mailto: nor https: (RFC 7489 section 6.2)", k, u)
				}
				if ok && !strings.Contains(addr, "@") {
					return fmt.Errorf("%s URI %q has no address", k, u)
				}
			}
		}
	}
	return nil
}

// checkMTASTS checks the _mta-sts id and the policy served over HTTPS
// against mtasts.Policy of the configuration.
func (r *runner) checkMTASTS(ctx context.Context, d *config.Domain) Result {
	if d.MTASTS == nil {
		return Result{Status: Skip, Detail: "mta_sts is not configured"}
	}
	_, wantID := mtasts.Policy(d.MTASTS.Mode, hostnames(d), d.MTASTS.MaxAge)
	name := "_mta-sts." + d.Name
	txts, err := lookupTXT(ctx, r.o.Resolver, name)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: "check that the DNS of " + d.Name + " answers"}
	}
	recs := withPrefix(txts, "v=STSv1")
	if m := r.cfg.MigrationFor(d.Name); m != nil && m.Phase == config.PhasePresync {
		return r.presyncMTASTS(d, name, wantID, recs)
	}
	fixTXT := fmt.Sprintf("run mailctl apply to publish TXT %s \"v=STSv1; id=%s\"", name, wantID)
	if len(recs) != 1 {
		return Result{Status: Fail, Detail: fmt.Sprintf("%d v=STSv1 records at %s, want 1", len(recs), name), Fix: fixTXT}
	}
	tg, _, err := tags(recs[0])
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("invalid record %q: %v", recs[0], err), Fix: fixTXT}
	}
	if tg["id"] != wantID {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s has id=%s, the configured policy's id is %s: senders keep a stale policy", name, tg["id"], wantID), Fix: fixTXT}
	}
	host := "mta-sts." + d.Name
	url := "https://" + host + "/.well-known/mta-sts.txt"
	fixHTTPS := fmt.Sprintf("the server must serve %s with a valid certificate for %s: check mta-sts.%s points to the server and its certificate covers that name", url, host, d.Name)
	body, ctype, err := r.fetch(ctx, url)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fixHTTPS}
	}
	fixPolicy := "redeploy the server (mailctl apply) so it serves the configured MTA-STS policy"
	pol, err := mtasts.Parse(body, mtasts.Strict)
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s serves an invalid %v", url, err), Fix: fixPolicy}
	}
	var fs []finding
	if pol.Mode != d.MTASTS.Mode {
		fs = append(fs, finding{Fail, fmt.Sprintf("policy mode is %s, configured %s", pol.Mode, d.MTASTS.Mode), fixPolicy})
	}
	if !slices.Equal(pol.MX, hostnames(d)) {
		fs = append(fs, finding{Fail, fmt.Sprintf("policy mx is %s, want %s", strings.Join(pol.MX, ", "), strings.Join(hostnames(d), ", ")), fixPolicy})
	}
	wantAge := d.MTASTS.MaxAge
	if wantAge <= 0 {
		wantAge = mtasts.DefaultMaxAge
	}
	if pol.MaxAge != wantAge {
		fs = append(fs, finding{Fail, fmt.Sprintf("policy max_age is %d, configured %d", pol.MaxAge, wantAge), fixPolicy})
	}
	if mt, _, _ := mime.ParseMediaType(ctype); mt != "text/plain" {
		fs = append(fs, finding{Warn, fmt.Sprintf("policy served as %q, RFC 8461 section 3.2 wants text/plain", ctype), fixPolicy})
	}
	return combine(fmt.Sprintf("id=%s; %s served over HTTPS: mode %s, mx %s", wantID, url, pol.Mode, strings.Join(pol.MX, ", ")), fs)
}

// presyncMTASTS judges the _mta-sts records of a domain whose migration is
// in presync: mailctl does not publish its policy yet, since one naming
// only this server while the MX point to the old provider would make
// enforcing senders refuse to deliver there. A record with this server's
// policy id is such a policy; another (the old provider's) is left alone.
func (r *runner) presyncMTASTS(d *config.Domain, name, wantID string, recs []string) Result {
	why := fmt.Sprintf("MTA-STS is not published before the cut-over (presync): a policy naming only %s while the MX point to the old provider would make enforcing senders refuse to deliver there; it is published with phase = %q", d.Server.Hostname, config.PhaseCutover)
	for _, rec := range recs {
		if tg, _, err := tags(rec); err == nil && tg["id"] == wantID {
			return Result{Status: Fail,
				Detail: fmt.Sprintf("%s publishes this server's policy (id=%s) while the MX still point to the old provider: senders that enforce MTA-STS refuse to deliver there", name, wantID),
				Fix:    fmt.Sprintf("delete the TXT record %s at the DNS host until phase = %q", name, config.PhaseCutover)}
		}
	}
	if len(recs) > 0 {
		why += fmt.Sprintf("; the current %s record (%s) is left alone", name, strings.Join(recs, ", "))
	}
	return Result{Status: Skip, Detail: why}
}

// fetch GETs url over HTTPS with certificate verification against the
// configured roots and clock, and no redirects (RFC 8461 section 3.3).
func (r *runner) fetch(ctx context.Context, url string) (body, contentType string, err error) {
	tr := &http.Transport{
		DialContext:     r.dialAddr,
		TLSClientConfig: &tls.Config{RootCAs: r.o.Roots, Time: r.o.Now},
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := cl.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", "", fmt.Errorf("fetch %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("fetch %s: HTTP %s", url, resp.Status)
	}
	return string(b), resp.Header.Get("Content-Type"), nil
}

// checkTLSRPT checks the _smtp._tls record's syntax (RFC 8460 section 3).
func (r *runner) checkTLSRPT(ctx context.Context, d *config.Domain) Result {
	if d.TLSRPT == nil || len(d.TLSRPT.RUA) == 0 {
		return Result{Status: Skip, Detail: "tls_rpt is not configured"}
	}
	name := "_smtp._tls." + d.Name
	fix := fmt.Sprintf("run mailctl apply to publish TXT %s \"v=TLSRPTv1; rua=%s\"", name, strings.Join(d.TLSRPT.RUA, ","))
	txts, err := lookupTXT(ctx, r.o.Resolver, name)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fix}
	}
	recs := withPrefix(txts, "v=TLSRPTv1")
	if len(recs) != 1 {
		return Result{Status: Fail, Detail: fmt.Sprintf("%d v=TLSRPTv1 records at %s, want 1", len(recs), name), Fix: fix}
	}
	tg, order, err := tags(recs[0])
	if err == nil && order[0] != "v" {
		err = fmt.Errorf("v=TLSRPTv1 must come first")
	}
	if err == nil {
		uris := splitURIs(tg["rua"])
		if len(uris) == 0 {
			err = fmt.Errorf("no rua=")
		}
		for _, u := range uris {
			lu := strings.ToLower(u)
			if a, ok := strings.CutPrefix(lu, "mailto:"); ok && strings.Contains(a, "@") {
				continue
			}
			if strings.HasPrefix(lu, "https://") {
				continue
			}
			err = fmt.Errorf("rua URI %q is not mailto:address or https://", u)
			break
		}
	}
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("invalid TLS-RPT record %q: %v", recs[0], err), Fix: fix}
	}
	return Result{Status: Pass, Detail: fmt.Sprintf("%q", recs[0])}
}
