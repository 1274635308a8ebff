// Package inbound checks mail arriving on the MX (port 25) for
// server/smtp: the client's IP against DNS blocklists (RFC 5782), optional
// greylisting, forward-confirmed reverse DNS (iprev, RFC 8601 section
// 3), SPF (RFC 7208, with blitiri.com.ar/go/spf), DKIM signatures
// (RFC 6376, RFC 8463, with go-msgauth) and DMARC (RFC 7489) with the
// organisational-domain fallback (public suffix list) and relaxed or
// strict alignment. The results go into one Authentication-Results field
// (RFC 8601) whose authserv-id is the server's host name; fields already
// in the message that claim that authserv-id are removed. A DMARC policy of
// reject refuses the message (550 5.7.1); quarantine delivers it to Junk.
package inbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	gosmtp "github.com/emersion/go-smtp"
	"golang.org/x/net/publicsuffix"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/authres"
	"github.com/mailctl/mailctl/server/smtp"
)

// Resolver is the DNS the checks need: blitiri.com.ar/go/spf's
// DNSResolver. *queue.DNS and *net.Resolver implement it. Names that do
// not exist must be reported as *net.DNSError with IsNotFound.
type Resolver = spf.DNSResolver

// DefaultDNSBLZones are the blocklists queried when none are configured.
var DefaultDNSBLZones = []string{"zen.spamhaus.org"}

// Options configure a Checker.
type Options struct {
	// Hostname is the authserv-id. Required.
	Hostname string
	// Resolver is used for SPF, DKIM, DMARC and iprev. Required.
	Resolver Resolver
	// DNSBLZones are queried for the client's IP at MAIL; empty: no DNSBL.
	DNSBLZones []string
	// DNSBLResolver answers the DNSBL queries; default Resolver.
	DNSBLResolver Resolver
	// Greylist, when set, defers first-time triplets.
	Greylist *Greylist
	// IgnoreDMARCPolicy records DMARC results without applying p=reject
	// or p=quarantine.
	IgnoreDMARCPolicy bool
	// SkipNetworks are client networks not checked at all (DNSBL,
	// greylisting, DMARC policy), e.g. a backup MX.
	SkipNetworks []*net.IPNet
	Logger       *slog.Logger
}

// Checker implements smtp.Inbound.
type Checker struct {
	opts Options
	log  *slog.Logger
}

var _ smtp.Inbound = (*Checker)(nil)

// New returns a Checker.
func New(opts Options) (*Checker, error) {
	if opts.Hostname == "" || opts.Resolver == nil {
		return nil, errors.New("inbound: Options.Hostname and Resolver are required")
	}
	if opts.DNSBLResolver == nil {
		opts.DNSBLResolver = opts.Resolver
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Checker{opts: opts, log: opts.Logger.With("service", "inbound")}, nil
}

func (c *Checker) skip(ip net.IP) bool {
	for _, n := range c.opts.SkipNetworks {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// CheckClient refuses a client listed on a DNSBL with 554 5.7.1, naming the
// list.
func (c *Checker) CheckClient(ctx context.Context, env smtp.Envelope) error {
	if env.RemoteIP == nil || c.skip(env.RemoteIP) {
		return nil
	}
	for _, zone := range c.opts.DNSBLZones {
		listed, reason, err := c.dnsbl(ctx, env.RemoteIP, zone)
		if err != nil {
			c.log.Warn("DNSBL lookup", "zone", zone, "ip", env.RemoteIP.String(), "err", err)
			continue
		}
		if listed {
			msg := fmt.Sprintf("Service unavailable; client [%s] blocked using %s", env.RemoteIP, zone)
			if reason != "" {
				msg += "; " + commentSafe(reason)
			}
			return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: msg}
		}
	}
	return nil
}

// dnsbl looks ip up in zone (RFC 5782 section 2): listed when an A record
// in 127.0.0.0/8 exists (127.255.255.0/24 are the lists' error codes).
func (c *Checker) dnsbl(ctx context.Context, ip net.IP, zone string) (bool, string, error) {
	name := reverseName(ip) + "." + strings.TrimSuffix(zone, ".")
	addrs, err := c.opts.DNSBLResolver.LookupIPAddr(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return false, "", nil
		}
		return false, "", err
	}
	listed := false
	for _, a := range addrs {
		v4 := a.IP.To4()
		if v4 != nil && v4[0] == 127 && !(v4[1] == 255 && v4[2] == 255) {
			listed = true
		}
	}
	if !listed {
		return false, "", nil
	}
	reason := ""
	if txts, err := c.opts.DNSBLResolver.LookupTXT(ctx, name); err == nil && len(txts) > 0 {
		reason = txts[0]
	}
	return true, reason, nil
}

// reverseName returns the DNSBL query label of ip: reversed octets for
// IPv4, reversed nibbles for IPv6.
func reverseName(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d", v4[3], v4[2], v4[1], v4[0])
	}
	ip = ip.To16()
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := len(ip) - 1; i >= 0; i-- {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteByte(hex[ip[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[ip[i]>>4])
	}
	return b.String()
}

// CheckRecipient applies greylisting (451 4.7.1 for a new triplet).
func (c *Checker) CheckRecipient(ctx context.Context, env smtp.Envelope, rcpt string) error {
	if c.opts.Greylist == nil || env.RemoteIP == nil || c.skip(env.RemoteIP) {
		return nil
	}
	ok, wait, err := c.opts.Greylist.Check(ctx, env.RemoteIP, env.From, rcpt)
	if err != nil {
		return err
	}
	if !ok {
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 7, 1},
			Message: fmt.Sprintf("Greylisted, please try again in %d seconds", int(wait.Round(time.Second).Seconds()))}
	}
	return nil
}

// Outcome is what CheckMessage found, for tests and logs.
type Outcome struct {
	IPRev, SPF, DKIM, DMARC string
	// Policy is the DMARC policy applied: "", "quarantine" or "reject".
	Policy string
}

// CheckMessage runs iprev, SPF, DKIM and DMARC and returns the
// Authentication-Results field, the forged fields to remove and whether
// the message goes to Junk; a DMARC reject policy refuses it.
func (c *Checker) CheckMessage(ctx context.Context, env smtp.Envelope, msg io.ReaderAt, size int64) (smtp.Verdict, error) {
	v, out, err := c.check(ctx, env, msg, size)
	c.log.Info("message checked", "ip", env.RemoteIP.String(), "iprev", out.IPRev, "spf", out.SPF,
		"dkim", out.DKIM, "dmarc", out.DMARC, "policy", out.Policy)
	return v, err
}

func (c *Checker) check(ctx context.Context, env smtp.Envelope, msg io.ReaderAt, size int64) (smtp.Verdict, Outcome, error) {
	var out Outcome
	var lines []resultLine
	hp := headBufs.Get().(*[]byte)
	defer headBufs.Put(hp)
	if need := int(min(size, maxHead)); cap(*hp) < need {
		*hp = make([]byte, need)
	}
	head := (*hp)[:min(size, maxHead)]
	n, _ := msg.ReadAt(head, 0)
	head = head[:n]
	fields := scanFields(head) // copies what it keeps

	// iprev (RFC 8601 section 3): forward-confirmed reverse DNS.
	iprev, name := c.iprev(ctx, env.RemoteIP)
	out.IPRev = iprev
	lines = append(lines, resultLine{method: "iprev", value: iprev,
		props: [][2]string{{"policy.iprev", env.RemoteIP.String()}}, comment: name})

	// SPF (RFC 7208) of the MAIL FROM identity, or of HELO for bounces.
	mailFrom := env.From
	spfDomain := domainOf(mailFrom)
	if mailFrom == "" {
		mailFrom = "postmaster@" + env.Helo
		spfDomain = strings.ToLower(env.Helo)
	}
	spfRes, spfErr := spf.CheckHostWithSender(env.RemoteIP, env.Helo, mailFrom,
		spf.WithResolver(c.opts.Resolver), spf.WithContext(ctx))
	out.SPF = string(spfRes)
	sl := resultLine{method: "spf", value: string(spfRes),
		props: [][2]string{{"smtp.mailfrom", mailFrom}, {"smtp.helo", env.Helo}}}
	if spfErr != nil && spfRes != spf.Pass {
		sl.comment = spfErr.Error()
	}
	lines = append(lines, sl)

	// DKIM (RFC 6376), unless the whole header has no signature.
	var verifs []*msgdkim.Verification
	var derr error
	if !unsigned(head, fields) {
		verifs, derr = msgdkim.VerifyWithOptions(io.NewSectionReader(msg, 0, size), &msgdkim.VerifyOptions{
			LookupTXT:        func(name string) ([]string, error) { return c.opts.Resolver.LookupTXT(ctx, name) },
			MaxVerifications: 5,
		})
	}
	if derr != nil && len(verifs) == 0 {
		lines = append(lines, resultLine{method: "dkim", value: "permerror", comment: derr.Error()})
		out.DKIM = "permerror"
	}
	if len(verifs) == 0 && derr == nil {
		lines = append(lines, resultLine{method: "dkim", value: "none"})
		out.DKIM = "none"
	}
	var dkimPassDomains []string
	sigTags := dkimSignatureTags(fields)
	for i, v := range verifs {
		val := "pass"
		switch {
		case v.Err == nil:
			dkimPassDomains = append(dkimPassDomains, strings.ToLower(v.Domain))
		case msgdkim.IsTempFail(v.Err):
			val = "temperror"
		case msgdkim.IsPermFail(v.Err):
			val = "permerror"
		default:
			val = "fail"
		}
		l := resultLine{method: "dkim", value: val, props: [][2]string{{"header.d", v.Domain}}}
		if v.Identifier != "" {
			l.props = append(l.props, [2]string{"header.i", v.Identifier})
		}
		// go-msgauth returns one verification per DKIM-Signature field in
		// header order, without the selector and algorithm: take them from
		// the field, so that two signatures of one domain (the ed25519 and
		// RSA ones mailctl adds) can be told apart (RFC 8601 section 2.7.1).
		if i < len(sigTags) {
			if sel := sigTags[i]["s"]; sel != "" {
				l.props = append(l.props, [2]string{"header.s", sel})
			}
			if alg := sigTags[i]["a"]; alg != "" {
				l.props = append(l.props, [2]string{"header.a", alg})
			}
		}
		if v.Err != nil {
			l.comment = v.Err.Error()
		}
		lines = append(lines, l)
		if out.DKIM == "" || val == "pass" {
			out.DKIM = val
		}
	}

	// DMARC (RFC 7489).
	verdict := smtp.Verdict{}
	dl := resultLine{method: "dmarc"}
	fromDomain, ferr := fromHeaderDomain(fields)
	switch {
	case ferr != nil:
		dl.value, dl.comment = "none", ferr.Error()
	default:
		dl.props = [][2]string{{"header.from", fromDomain}}
		rec, sub, err := c.lookupDMARC(ctx, fromDomain)
		switch {
		case errors.Is(err, dmarc.ErrNoPolicy):
			dl.value = "none"
		case err != nil && dmarc.IsTempFail(err):
			dl.value, dl.comment = "temperror", err.Error()
		case err != nil:
			dl.value, dl.comment = "permerror", err.Error()
		default:
			spfAligned := spfRes == spf.Pass && aligned(spfDomain, fromDomain, rec.SPFAlignment)
			dkimAligned := false
			for _, d := range dkimPassDomains {
				if aligned(d, fromDomain, rec.DKIMAlignment) {
					dkimAligned = true
				}
			}
			policy := rec.Policy
			if sub && rec.SubdomainPolicy != "" {
				policy = rec.SubdomainPolicy
			}
			if spfAligned || dkimAligned {
				dl.value = "pass"
			} else {
				dl.value = "fail"
				dl.comment = "p=" + string(policy)
				if rec.Percent != nil && *rec.Percent < 100 && rand.IntN(100) >= *rec.Percent {
					policy = dmarc.PolicyNone // sampled out (pct)
				}
				if !c.opts.IgnoreDMARCPolicy && !c.skip(env.RemoteIP) {
					switch policy {
					case dmarc.PolicyReject:
						out.Policy = "reject"
					case dmarc.PolicyQuarantine:
						out.Policy = "quarantine"
						verdict.Junk = true
					}
				}
			}
		}
	}
	out.DMARC = dl.value
	lines = append(lines, dl)

	verdict.Header = formatResults(c.opts.Hostname, lines)
	verdict.Remove = c.forgedResults(fields)
	if out.Policy == "reject" {
		return verdict, out, &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("Message rejected by the DMARC policy of %s", fromDomain)}
	}
	return verdict, out, nil
}

// lookupDMARC finds the record of domain, else of its organisational
// domain (RFC 7489 section 6.6.3); sub reports the latter.
func (c *Checker) lookupDMARC(ctx context.Context, domain string) (*dmarc.Record, bool, error) {
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) {
		return c.opts.Resolver.LookupTXT(ctx, name)
	}}
	rec, err := dmarc.LookupWithOptions(domain, opts)
	if !errors.Is(err, dmarc.ErrNoPolicy) {
		return rec, false, err
	}
	org := orgDomain(domain)
	if org == domain {
		return nil, false, err
	}
	rec, err = dmarc.LookupWithOptions(org, opts)
	return rec, true, err
}

// orgDomain is the organisational domain: the public suffix plus one label.
func orgDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// aligned compares identifiers as DMARC does (RFC 7489 section 3.1):
// strict needs equal domains, relaxed the same organisational domain.
func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = strings.ToLower(strings.TrimSuffix(a, ".")), strings.ToLower(strings.TrimSuffix(b, "."))
	if a == "" || b == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return a == b
	}
	return orgDomain(a) == orgDomain(b)
}

// iprev returns the iprev result of ip and the confirmed name.
func (c *Checker) iprev(ctx context.Context, ip net.IP) (string, string) {
	names, err := c.opts.Resolver.LookupAddr(ctx, ip.String())
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return "fail", ""
		}
		return "temperror", ""
	}
	temp := false
	for i, n := range names {
		if i == 10 {
			break
		}
		addrs, err := c.opts.Resolver.LookupIPAddr(ctx, n)
		if err != nil {
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsNotFound {
				temp = true
			}
			continue
		}
		for _, a := range addrs {
			if a.IP.Equal(ip) {
				return "pass", strings.TrimSuffix(n, ".")
			}
		}
	}
	if temp {
		return "temperror", ""
	}
	return "fail", ""
}

// maxHead bounds the part of a message whose header fields are examined.
const maxHead = 256 << 10

// headBufs holds the buffers the start of each message is read into (at
// most maxHead bytes each).
var headBufs = sync.Pool{New: func() any { return new([]byte) }}

// unsigned reports whether fields, scanned from head, are the whole header
// (an empty line follows them) and none is a DKIM-Signature: the verifier
// would then only find nothing to verify (dkim=none).
func unsigned(head []byte, fields []field) bool {
	var end int64
	for _, f := range fields {
		if strings.EqualFold(strings.TrimSpace(f.name), "DKIM-Signature") {
			return false
		}
		end = f.end
	}
	rest := head[end:]
	return bytes.HasPrefix(rest, []byte("\r\n")) || bytes.HasPrefix(rest, []byte("\n"))
}

// field is one header field of a message.
type field struct {
	name       string // as written
	value      string // unfolded
	start, end int64  // byte range, including the line ends
}

// dkimSignatureTags returns the s= and a= tags of each DKIM-Signature
// field, in header order (an empty map for a tag list that does not
// parse).
func dkimSignatureTags(fields []field) []map[string]string {
	var out []map[string]string
	for _, f := range fields {
		if !strings.EqualFold(f.name, "DKIM-Signature") {
			continue
		}
		tags := map[string]string{}
		for _, spec := range strings.Split(f.value, ";") {
			k, v, ok := strings.Cut(spec, "=")
			k = strings.TrimSpace(k)
			if !ok || (k != "s" && k != "a") {
				continue
			}
			// Folding white space may appear inside a tag value.
			v = strings.Join(strings.Fields(v), "")
			if validPropValue(v) {
				tags[k] = v
			}
		}
		out = append(out, tags)
	}
	return out
}

// validPropValue reports whether s can be written as an unquoted property
// value: a selector or algorithm of letters, digits, '.', '-' and '_'.
func validPropValue(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// scanFields splits the header section at the start of b into fields.
func scanFields(b []byte) []field {
	var out []field
	i := 0
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		line := bytes.TrimSuffix(b[i:i+j], []byte("\r"))
		if len(line) == 0 {
			break
		}
		next := i + j + 1
		if line[0] == ' ' || line[0] == '\t' {
			if len(out) > 0 {
				out[len(out)-1].value += " " + strings.TrimSpace(string(line))
				out[len(out)-1].end = int64(next)
			}
			i = next
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			break
		}
		out = append(out, field{name: string(line[:colon]), value: strings.TrimSpace(string(line[colon+1:])),
			start: int64(i), end: int64(next)})
		i = next
	}
	return out
}

// forgedResults returns the byte ranges of Authentication-Results fields
// claiming this server's authserv-id (RFC 8601 section 5).
func (c *Checker) forgedResults(fields []field) [][2]int64 {
	var out [][2]int64
	for _, f := range fields {
		if !strings.EqualFold(f.name, "Authentication-Results") {
			continue
		}
		id, _, err := authres.Parse(f.value)
		if err != nil && id == "" {
			// Unparseable: remove it when it mentions our name at all.
			if strings.Contains(strings.ToLower(f.value), strings.ToLower(c.opts.Hostname)) {
				out = append(out, [2]int64{f.start, f.end})
			}
			continue
		}
		if strings.EqualFold(strings.TrimSuffix(id, "."), c.opts.Hostname) {
			out = append(out, [2]int64{f.start, f.end})
		}
	}
	return out
}

// fromHeaderDomain returns the domain of the single author of the message
// (RFC 7489 section 6.6.1).
func fromHeaderDomain(fields []field) (string, error) {
	var from []string
	for _, f := range fields {
		if strings.EqualFold(f.name, "From") {
			from = append(from, f.value)
		}
	}
	if len(from) != 1 {
		return "", fmt.Errorf("%d From fields", len(from))
	}
	list, err := mail.ParseAddressList(from[0])
	if err != nil {
		return "", fmt.Errorf("message From field: %v", err)
	}
	var domain string
	for _, a := range list {
		d := domainOf(a.Address)
		if !auth.IsASCII(d) {
			// An IDN (RFC 6532 header, or RFC 8616): DNS and DKIM d= hold
			// its A-labels.
			ad, err := auth.ParseDomain(d)
			if err != nil {
				return "", fmt.Errorf("message From field domain: %v", err)
			}
			d = ad
		}
		if domain != "" && d != domain {
			return "", errors.New("message From field with several domains")
		}
		domain = d
	}
	if domain == "" {
		return "", errors.New("message From field without a domain")
	}
	return domain, nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	}
	return ""
}
