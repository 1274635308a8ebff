package verify

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSPFSyntax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rec, err string
	}{
		{"v=spf1 ip4:203.0.113.10 ip6:2001:db8::/32 a mx:mx.example.org/24 ptr include:_spf.example.net exists:%{i}.x.example.net redirect=example.net exp=exp.example.org ~all", ""},
		{"v=spf1 -all", ""},
		{"v=spf1 a/24//64 ?all", ""},
		{"v=spf1 x-custom=foo -all", ""},
		{"spf1 -all", "does not start with v=spf1"},
		{"v=spf1 ip4:2001:db8::1 -all", "invalid ip4 address"},
		{"v=spf1 ip4:10.0.0.0/33 -all", "invalid prefix length"},
		{"v=spf1 include: -all", "include needs a domain"},
		{"v=spf1 all:x", "all takes no argument"},
		{"v=spf1 ++mx", "invalid qualifier"},
		{"v=spf1 redirect=a.example redirect=b.example", "redirect= appears twice"},
		{"v=spf1 mxx -all", `unknown mechanism "mxx"`},
		{"v=spf1 ptr/24", "ptr takes no prefix length"},
	} {
		t.Run(tc.rec, func(t *testing.T) {
			err := spfSyntax(tc.rec)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("spfSyntax(%q) = %v, want %q", tc.rec, err, tc.err)
			}
		})
	}
}

func TestDMARCSyntax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rec, err string
	}{
		{"v=DMARC1; p=reject; sp=none; pct=50; adkim=s; aspf=r; rua=mailto:a@example.org,mailto:b@example.net!10m; ri=86400", ""},
		{"v=DMARC1; p=quarantine; rua=https://reports.example.org/dmarc", ""},
		{"v=DMARC1; rua=mailto:a@example.org", "no p= tag"},
		{"v=DMARC1; p=reject; pct=101", "pct=101 is not 0 to 100"},
		{"v=DMARC1; p=reject; adkim=x", "adkim=x is not r or s"},
		{"v=DMARC1; p=reject; rua=a@example.org", "is neither mailto: nor https:"},
		{"v=DMARC1; p=reject; rua=", "rua= is empty"},
		{"v=DMARC1; p=reject; p=none", "tag p appears twice"},
		{"v=DMARC1; p", `"p" is not a tag=value pair`},
	} {
		t.Run(tc.rec, func(t *testing.T) {
			tg, _, err := tags(tc.rec)
			if err == nil {
				err = dmarcSyntax(tg)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("dmarc %q: %v, want %q", tc.rec, err, tc.err)
			}
		})
	}
}

func TestDNSBLName(t *testing.T) {
	t.Parallel()
	for ip, want := range map[string]string{
		"203.0.113.10": "10.113.0.203.zen.spamhaus.org",
		"2001:db8::1":  "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org",
	} {
		if got := dnsblName(netip.MustParseAddr(ip), "zen.spamhaus.org."); got != want {
			t.Errorf("dnsblName(%s) = %s, want %s", ip, got, want)
		}
	}
}

func TestPublicServer(t *testing.T) {
	t.Parallel()
	if got := publicServer(&DNSClient{Servers: []string{"127.0.0.53:53", "8.8.8.8:53"}}); got != "8.8.8.8" {
		t.Errorf("publicServer = %q, want 8.8.8.8", got)
	}
	if got := publicServer(&DNSClient{Servers: []string{"127.0.0.1:53", "[::1]:53"}}); got != "" {
		t.Errorf("publicServer(local) = %q, want none", got)
	}
}

func TestWithPrefix(t *testing.T) {
	t.Parallel()
	got := withPrefix([]string{"v=spf1 -all", "V=SPF1 mx", "v=spf10 a", "v=spf1", "google-site-verification=x"}, "v=spf1")
	if strings.Join(got, "|") != "v=spf1 -all|V=SPF1 mx|v=spf1" {
		t.Errorf("withPrefix = %q", got)
	}
}
