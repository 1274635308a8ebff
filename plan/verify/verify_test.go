package verify_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/server/mtasts"
)

// expect is one result a case must produce.
type expect struct {
	check, target string
	status        verify.Status
	detail, fix   string // substrings
}

func (e expect) assert(t *testing.T, rep verify.Report) {
	t.Helper()
	got := rep.Find(e.check, e.target)
	if len(got) != 1 {
		t.Fatalf("Find(%q, %q) = %d results, want 1; report:\n%s", e.check, e.target, len(got), table(rep))
	}
	r := got[0]
	if r.Status != e.status || !strings.Contains(r.Detail, e.detail) || !strings.Contains(r.Fix, e.fix) {
		t.Errorf("%s %s = %s %q (fix %q), want %s with detail containing %q and fix containing %q",
			e.check, e.target, r.Status, r.Detail, r.Fix, e.status, e.detail, e.fix)
	}
	if (r.Status == verify.Warn || r.Status == verify.Fail) && r.Fix == "" {
		t.Errorf("%s %s: %s without a fix line", e.check, e.target, r.Status)
	}
}

func table(rep verify.Report) string {
	var b bytes.Buffer
	verify.WriteTable(&b, rep, false)
	return b.String()
}

func TestVerify(t *testing.T) {
	base := newLab(t)

	t.Run("all pass", func(t *testing.T) {
		t.Parallel()
		rep := base.clone().run(t)
		for _, r := range rep.Results {
			if r.Status != verify.Pass {
				t.Errorf("%s %s = %s %q, want pass", r.Check, r.Target, r.Status, r.Detail)
			}
		}
		if rep.ExitCode() != 0 {
			t.Errorf("ExitCode() = %d, want 0", rep.ExitCode())
		}
		// Every check ran, on every target.
		for _, e := range []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Pass, "record sets as planned", ""},
			{"dns.ns", "example.org @ ns2.example.org", verify.Pass, "record sets as planned", ""},
			{"dns.a", host + " A", verify.Pass, "A 203.0.113.10", ""},
			{"dns.a", host + " AAAA", verify.Pass, "AAAA 2001:db8::10", ""},
			{"dns.ptr", "203.0.113.10", verify.Pass, "PTR mx1.example.org, which resolves back", ""},
			{"dns.ptr", "2001:db8::10", verify.Pass, "PTR mx1.example.org", ""},
			{"dns.mx", "example.org", verify.Pass, "MX 10 mx1.example.org", ""},
			{"spf", "example.org", verify.Pass, "0 DNS lookups, pass for 203.0.113.10, 2001:db8::10", ""},
			{"dkim", "mx1-ed25519._domainkey.example.org", verify.Pass, "ed25519 key matches", ""},
			{"dkim", "mx1-rsa._domainkey.example.org", verify.Pass, "rsa key matches", ""},
			{"dmarc", "example.org", verify.Pass, "p=reject", ""},
			{"mta-sts", "example.org", verify.Pass, "mode enforce, mx mx1.example.org", ""},
			{"tls-rpt", "example.org", verify.Pass, "v=TLSRPTv1; rua=mailto:tlsrpt@example.org", ""},
			{"addresses", "example.org", verify.Pass, "exist", ""},
			{"tls", host + ":25", verify.Pass, "issuer mailctl test CA", ""},
			{"tls", host + ":465", verify.Pass, "valid for mx1.example.org", ""},
			{"tls", host + ":587", verify.Pass, "valid for mx1.example.org", ""},
			{"tls", host + ":143", verify.Pass, "valid for mx1.example.org", ""},
			{"tls", host + ":993", verify.Pass, "valid for mx1.example.org", ""},
			{"tls", host + ":443", verify.Pass, "valid for mx1.example.org", ""},
			{"smtp.banner", host + ":25", verify.Pass, "220 mx1.example.org", ""},
			{"smtp.auth", host + ":587", verify.Pass, "only after STARTTLS", ""},
			{"smtp.auth", host + ":465", verify.Pass, "implicit TLS", ""},
			{"relay", host + ":25", verify.Pass, "RCPT TO:<relay-test@example.com> refused with 554", ""},
			{"dnsbl", "203.0.113.10", verify.Pass, "not listed on clean.test", ""},
			{"dnsbl", "2001:db8::10", verify.Pass, "not listed", ""},
		} {
			e.assert(t, rep)
		}
		if len(rep.Results) != 26 {
			t.Errorf("%d results, want 26:\n%s", len(rep.Results), table(rep))
		}
	})

	t.Run("only: checks selected by name and target", func(t *testing.T) {
		t.Parallel()
		l := base.clone()
		l.opts.Only = []string{"dns", host + ":25", "dkim"}
		rep := l.run(t)
		var got []string
		for _, r := range rep.Results {
			got = append(got, r.Check+" "+r.Target)
		}
		want := []string{
			"dns.ns example.org @ ns1.example.org", "dns.ns example.org @ ns2.example.org",
			"dns.a mx1.example.org A", "dns.a mx1.example.org AAAA", "dns.ptr 203.0.113.10", "dns.ptr 2001:db8::10",
			"dns.mx example.org", "dkim mx1-ed25519._domainkey.example.org", "dkim mx1-rsa._domainkey.example.org",
			"tls mx1.example.org:25", "smtp.banner mx1.example.org:25", "relay mx1.example.org:25",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("Only selected\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	otherKey := "v=DKIM1; k=ed25519; p=" + randomKey(t, 32)
	cases := []struct {
		name  string
		setup func(t *testing.T, l *lab)
		want  []expect
	}{
		{"dns.ns: a lagging secondary is named", func(t *testing.T, l *lab) {
			l.secondary = func(rrs []mdns.RR) []mdns.RR {
				var out []mdns.RR
				for _, rr := range rrs {
					if rr.Header().Rrtype != mdns.TypeMX {
						out = append(out, rr)
					}
				}
				return out
			}
		}, []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Pass, "record sets as planned", ""},
			{"dns.ns", "example.org @ ns2.example.org", verify.Fail,
				`ns2.example.org lags: example.org MX is absent, want "10 mx1.example.org."`, "ns2.example.org lags behind the other name servers: check that it gets zone transfers"},
		}},
		{"dns.ns: records missing everywhere", func(t *testing.T, l *lab) {
			l.set(t, "_dmarc.example.org", "TXT")
		}, []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Fail, "_dmarc.example.org TXT is absent", "run mailctl plan and mailctl apply"},
			{"dns.ns", "example.org @ ns2.example.org", verify.Fail, "_dmarc.example.org TXT is absent", "run mailctl plan and mailctl apply"},
		}},
		{"dns.a: wrong address", func(t *testing.T, l *lab) {
			l.set(t, host, "A", "203.0.113.99")
		}, []expect{{"dns.a", host + " A", verify.Fail, "mx1.example.org A is 203.0.113.99, want 203.0.113.10", "mx1.example.org A 203.0.113.10"}}},
		{"dns.a: AAAA without ipv6 configured", func(t *testing.T, l *lab) {
			l.cfg = loadConfig(t, strings.Replace(baseHCL, `ipv6     = "2001:db8::10"`, "", 1))
		}, []expect{{"dns.a", host + " AAAA", verify.Fail, "the server has no AAAA address configured", "delete the AAAA record"}}},
		{"dns.ptr: PTR names another host", func(t *testing.T, l *lab) {
			l.set(t, "10.113.0.203.in-addr.arpa", "PTR", "vps-1234.hoster.example.net.")
		}, []expect{{"dns.ptr", "203.0.113.10", verify.Fail, "PTR of 203.0.113.10 is vps-1234.hoster.example.net, want mx1.example.org", "set the reverse DNS (PTR) of 203.0.113.10 to mx1.example.org"}}},
		{"dns.ptr: no PTR", func(t *testing.T, l *lab) {
			l.set(t, "10.113.0.203.in-addr.arpa", "PTR")
		}, []expect{{"dns.ptr", "203.0.113.10", verify.Fail, "no PTR record for 203.0.113.10", "reverse DNS"}}},
		{"dns.ptr: not forward-confirmed", func(t *testing.T, l *lab) {
			l.set(t, host, "AAAA", "2001:db8::11")
		}, []expect{{"dns.ptr", "2001:db8::10", verify.Fail, "PTR mx1.example.org does not resolve back to 2001:db8::10 (it resolves to 2001:db8::11)", "publish mx1.example.org AAAA 2001:db8::10"}}},
		{"dns.mx: points elsewhere", func(t *testing.T, l *lab) {
			l.set(t, "example.org", "MX", "10 mx.oldhost.example.net.")
		}, []expect{{"dns.mx", "example.org", verify.Fail, "MX points to 10 mx.oldhost.example.net, not to mx1.example.org", "publish MX 10 mx1.example.org."}}},
		{"dns.mx: extra MX", func(t *testing.T, l *lab) {
			l.set(t, "example.org", "MX", "10 mx1.example.org.", "20 backup.example.net.")
		}, []expect{{"dns.mx", "example.org", verify.Warn, "but also 20 backup.example.net", "remove the other MX"}}},
		{"spf: server IP not allowed", func(t *testing.T, l *lab) {
			l.set(t, "example.org", "TXT", "v=spf1 ip4:198.51.100.1 -all", "google-site-verification=abc")
		}, []expect{{"spf", "example.org", verify.Fail, "SPF of example.org gives fail for 203.0.113.10", "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 -all"}}},
		{"spf: more than 10 lookups through includes", func(t *testing.T, l *lab) {
			l.set(t, "example.org", "TXT", "v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 include:_spf.example.net -all")
			l.set(t, "_spf.example.net", "TXT", "v=spf1 a mx ptr exists:x.example.net a:b.example.net a:c.example.net include:_spf2.example.net -all")
			l.set(t, "_spf2.example.net", "TXT", "v=spf1 a mx a:d.example.net ?all")
		}, []expect{{"spf", "example.org", verify.Fail, "SPF needs 11 DNS lookups, more than the limit of 10", "remove includes"}}},
		{"spf: two records", func(t *testing.T, l *lab) {
			l.set(t, "example.org", "TXT", "v=spf1 ip4:203.0.113.10 -all", "v=spf1 mx -all")
		}, []expect{{"spf", "example.org", verify.Fail, "2 v=spf1 records at example.org", "delete every v=spf1 TXT record of example.org except mailctl's"}}},
		{"spf: syntax", func(t *testing.T, l *lab) {
			l.set(t, "example.org", "TXT", "v=spf1 ip4:203.0.113.300 -all")
		}, []expect{{"spf", "example.org", verify.Fail, `invalid SPF record "v=spf1 ip4:203.0.113.300 -all": "ip4:203.0.113.300": invalid ip4 address`, "publish the planned SPF record"}}},
		{"spf: missing", func(t *testing.T, l *lab) {
			l.set(t, "example.org", "TXT")
		}, []expect{{"spf", "example.org", verify.Fail, "no v=spf1 record at example.org", "publish the planned SPF record"}}},
		{"dkim: published key differs", func(t *testing.T, l *lab) {
			l.set(t, "mx1-ed25519._domainkey.example.org", "TXT", otherKey)
		}, []expect{
			{"dkim", "mx1-ed25519._domainkey.example.org", verify.Fail, "the published key differs from the server's mx1-ed25519 key", "publish the server's DKIM key"},
			{"dkim", "mx1-rsa._domainkey.example.org", verify.Pass, "rsa key matches", ""},
		}},
		{"dkim: keys unknown", func(t *testing.T, l *lab) {
			l.records = desired.Records(l.cfg, nil)
		}, []expect{{"dkim", "mx1-rsa._domainkey.example.org", verify.Skip, "the server's DKIM key is not known", "once the server is deployed"}}},
		{"dmarc: missing", func(t *testing.T, l *lab) {
			l.set(t, "_dmarc.example.org", "TXT")
		}, []expect{{"dmarc", "example.org", verify.Fail, "no v=DMARC1 record at _dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"}}},
		{"dmarc: syntax", func(t *testing.T, l *lab) {
			l.set(t, "_dmarc.example.org", "TXT", "v=DMARC1; p=block")
		}, []expect{{"dmarc", "example.org", verify.Fail, "p=block is not none, quarantine or reject", "publish the planned DMARC record"}}},
		{"dmarc: p=none and no rua", func(t *testing.T, l *lab) {
			l.set(t, "_dmarc.example.org", "TXT", "v=DMARC1; p=none")
		}, []expect{{"dmarc", "example.org", verify.Warn, "p=none: receivers only report, they do not reject forged mail; no rua", `policy = "quarantine"`}}},
		{"dmarc: external rua without authorisation", func(t *testing.T, l *lab) {
			l.set(t, "_dmarc.example.org", "TXT", "v=DMARC1; p=reject; rua=mailto:d@reports.example.net")
		}, []expect{{"dmarc", "example.org", verify.Warn,
			"rua address d@reports.example.net is outside example.org and example.org._report._dmarc.reports.example.net has no v=DMARC1 record",
			`publish TXT example.org._report._dmarc.reports.example.net "v=DMARC1"`}}},
		{"dmarc: external rua authorised", func(t *testing.T, l *lab) {
			l.set(t, "_dmarc.example.org", "TXT", "v=DMARC1; p=reject; rua=mailto:d@reports.example.net")
			l.set(t, "example.org._report._dmarc.reports.example.net", "TXT", "v=DMARC1")
		}, []expect{{"dmarc", "example.org", verify.Pass, "rua=mailto:d@reports.example.net", ""}}},
		{"mta-sts: stale id", func(t *testing.T, l *lab) {
			l.set(t, "_mta-sts.example.org", "TXT", "v=STSv1; id=20240101")
		}, []expect{{"mta-sts", "example.org", verify.Fail, "_mta-sts.example.org has id=20240101", "run mailctl apply to publish TXT _mta-sts.example.org"}}},
		{"mta-sts: served policy differs", func(t *testing.T, l *lab) {
			policy, _ := mtasts.Policy("testing", []string{"mx.oldhost.example.net"}, 0)
			l.opts.Addresses["mta-sts.example.org:443"] = startHTTPS(t, l.cert, policy)
		}, []expect{{"mta-sts", "example.org", verify.Fail, "policy mode is testing, configured enforce; policy mx is mx.oldhost.example.net, want mx1.example.org", "redeploy the server"}}},
		{"mta-sts: certificate not for mta-sts host", func(t *testing.T, l *lab) {
			l.opts.Addresses["mta-sts.example.org:443"] = startHTTPS(t, l.ca.leaf(t, host), "")
		}, []expect{{"mta-sts", "example.org", verify.Fail, "fetch https://mta-sts.example.org/.well-known/mta-sts.txt: tls: failed to verify certificate: x509: certificate is valid for mx1.example.org, not mta-sts.example.org", "certificate covers that name"}}},
		{"tls-rpt: bad rua", func(t *testing.T, l *lab) {
			l.set(t, "_smtp._tls.example.org", "TXT", "v=TLSRPTv1; rua=ftp://reports.example.org")
		}, []expect{{"tls-rpt", "example.org", verify.Fail, `rua URI "ftp://reports.example.org" is not mailto:address or https://`, `"v=TLSRPTv1; rua=mailto:tlsrpt@example.org"`}}},
		{"tls: expired", func(t *testing.T, l *lab) {
			l.opts.Now = func() time.Time { return time.Now().Add(leafValidity + 24*time.Hour) }
		}, []expect{{"tls", host + ":993", verify.Fail, "the certificate expired on", "install a current certificate"}}},
		{"tls: expires within 14 days", func(t *testing.T, l *lab) {
			l.opts.Now = func() time.Time { return time.Now().Add(leafValidity - 5*24*time.Hour) }
		}, []expect{{"tls", host + ":465", verify.Warn, "(4 days)", "renew the certificate now"}}},
		{"tls: certificate for another name", func(t *testing.T, l *lab) {
			l.opts.Addresses[host+":993"] = startIMAP(t, l.ca.leaf(t, "other.example.net"), true)
		}, []expect{{"tls", host + ":993", verify.Fail, "the certificate is for other.example.net, not mx1.example.org", "tls block"}}},
		{"tls: untrusted chain", func(t *testing.T, l *lab) {
			l.opts.Roots = x509.NewCertPool()
		}, []expect{{"tls", host + ":587", verify.Fail, "the chain does not verify: x509: certificate signed by unknown authority", "serve the full chain"}}},
		{"tls: no STARTTLS on 25", func(t *testing.T, l *lab) {
			l.opts.Addresses[host+":25"] = startSMTP(t, l.cert, smtpOpts{noTLS: true})
		}, []expect{{"tls", host + ":25", verify.Fail, "STARTTLS is not offered", "configure a certificate"}}},
		{"smtp.banner: names another host", func(t *testing.T, l *lab) {
			l.opts.Addresses[host+":25"] = startSMTP(t, l.cert, smtpOpts{domain: "localhost.localdomain"})
		}, []expect{{"smtp.banner", host + ":25", verify.Fail, `names "localhost.localdomain", want mx1.example.org`, "make the server greet as mx1.example.org"}}},
		{"smtp.auth: AUTH before TLS", func(t *testing.T, l *lab) {
			l.opts.Addresses[host+":587"] = startSMTP(t, l.cert, smtpOpts{insecureAuth: true})
		}, []expect{{"smtp.auth", host + ":587", verify.Fail, "AUTH is offered before STARTTLS", "offer AUTH only after STARTTLS"}}},
		{"relay: open relay", func(t *testing.T, l *lab) {
			l.opts.Addresses[host+":25"] = startSMTP(t, l.cert, smtpOpts{openRelay: true})
		}, []expect{{"relay", host + ":25", verify.Fail, "OPEN RELAY: RCPT TO:<relay-test@example.com> from an anonymous client was accepted (250", "stop the service on port 25 now"}}},
		{"relay: port 25 closed", func(t *testing.T, l *lab) {
			l.opts.Addresses[host+":25"] = "127.0.0.1:1"
		}, []expect{{"relay", host + ":25", verify.Fail, "connect to mx1.example.org:25", "check that the server listens on port 25"}}},
		{"addresses: no postmaster", func(t *testing.T, l *lab) {
			l.cfg = loadConfig(t, strings.Replace(baseHCL, `aliases       = ["postmaster@example.org"]`, "", 1))
		}, []expect{{"addresses", "example.org", verify.Fail, "postmaster@example.org does not exist (RFC 5321 section 4.5.1 requires it)", `add alias "postmaster@example.org"`}}},
		{"addresses: catch-all covers both", func(t *testing.T, l *lab) {
			src := strings.Replace(baseHCL, `aliases       = ["postmaster@example.org"]`, "", 1)
			src = strings.Replace(src, `alias "abuse@example.org"`, `alias "@example.org"`, 1)
			l.cfg = loadConfig(t, src)
		}, []expect{{"addresses", "example.org", verify.Pass, "exist", ""}}},
		{"dnsbl: listed", func(t *testing.T, l *lab) {
			l.opts.DNSBLZones = []string{"clean.test", "dirty.test"}
		}, []expect{
			{"dnsbl", "203.0.113.10", verify.Fail, "listed on dirty.test (127.0.0.2: Spam trap hit), see https://mxtoolbox.com/", "find out on its lookup page why dirty.test lists 203.0.113.10"},
			{"dnsbl", "2001:db8::10", verify.Pass, "not listed", ""},
		}},
		{"dnsbl: refused answer is not a listing", func(t *testing.T, l *lab) {
			l.opts.DNSBLZones = []string{"refuse.test"}
		}, []expect{{"dnsbl", "203.0.113.10", verify.Warn, "refuse.test refused the query (answer 127.255.255.254): not a listing", "resolver of your own"}}},
		{"addresses: private IPs are not looked up in public DNS", func(t *testing.T, l *lab) {
			l.cfg = loadConfig(t, strings.Replace(baseHCL, `"203.0.113.10"`, `"10.0.0.5"`, 1))
		}, []expect{
			{"dns.ptr", "10.0.0.5", verify.Skip, "10.0.0.5 is not a public address", ""},
			{"dnsbl", "10.0.0.5", verify.Skip, "10.0.0.5 is not a public address", ""},
		}},
		{"extra: a lead's check runs like the others", func(t *testing.T, l *lab) {
			l.opts.Extra = []verify.Check{{Name: "roundtrip", Target: "alice@example.org", Run: func(ctx context.Context) []verify.Result {
				return []verify.Result{{Status: verify.Fail, Detail: "no message within 30s", Fix: "look at the queue"}}
			}}}
		}, []expect{{"roundtrip", "alice@example.org", verify.Fail, "no message within 30s", "look at the queue"}}},
		{"extra: a check past its timeout", func(t *testing.T, l *lab) {
			l.opts.Extra = []verify.Check{{Name: "slow", Target: "x", Run: func(ctx context.Context) []verify.Result {
				<-ctx.Done()
				return nil
			}}}
		}, []expect{{"slow", "x", verify.Fail, "no answer within 10s", "reachable"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := base.clone()
			tc.setup(t, l)
			rep := l.run(t)
			if testing.Verbose() {
				t.Log("\n" + table(rep))
			}
			for _, e := range tc.want {
				e.assert(t, rep)
			}

			if rep.ExitCode() != 2 && slicesContainsFail(tc.want) {
				t.Errorf("ExitCode() = %d, want 2", rep.ExitCode())
			}
		})
	}
}

func slicesContainsFail(es []expect) bool {
	for _, e := range es {
		if e.status == verify.Fail {
			return true
		}
	}
	return false
}

func TestRender(t *testing.T) {
	t.Parallel()
	rep := verify.Report{Results: []verify.Result{
		{Check: "dns.mx", Target: "example.org", Status: verify.Pass, Detail: "MX 10 mx1.example.org"},
		{Check: "dnsbl", Target: "203.0.113.10", Status: verify.Fail, Detail: "listed on zen.spamhaus.org", Fix: "request removal"},
		{Check: "dmarc", Target: "example.org", Status: verify.Warn, Detail: "p=none", Fix: "set policy"},
		{Check: "dkim", Target: "x._domainkey.example.org", Status: verify.Skip, Detail: "keys unknown", Fix: "deploy"},
	}}
	var b bytes.Buffer
	if err := verify.WriteTable(&b, rep, false); err != nil {
		t.Fatal(err)
	}
	want := `CHECK   TARGET                    STATUS  DETAIL
dns.mx  example.org               pass    MX 10 mx1.example.org
dnsbl   203.0.113.10              fail    listed on zen.spamhaus.org
                                          fix: request removal
dmarc   example.org               warn    p=none
                                          fix: set policy
dkim    x._domainkey.example.org  skip    keys unknown
                                          fix: deploy

1 passed, 1 warnings, 1 failed, 1 skipped.
`
	if b.String() != want {
		t.Errorf("WriteTable =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	verify.WriteTable(&b, rep, true)
	if !strings.Contains(b.String(), "\x1b[31mfail  \x1b[0m") {
		t.Errorf("colored table has no red fail: %q", b.String())
	}
	b.Reset()
	if err := verify.WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		FormatVersion string          `json:"format_version"`
		Results       []verify.Result `json:"results"`
		Summary       verify.Summary  `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.FormatVersion != "1.0" || len(doc.Results) != 4 || doc.Results[1].Status != verify.Fail ||
		doc.Summary != (verify.Summary{Pass: 1, Warn: 1, Fail: 1, Skip: 1}) {
		t.Errorf("WriteJSON = %s", b.String())
	}
	if !strings.Contains(b.String(), `"status": "warn"`) {
		t.Errorf("JSON status is not a name: %s", b.String())
	}
	if got := rep.ExitCode(); got != 2 {
		t.Errorf("ExitCode() = %d, want 2", got)
	}
	if got := (verify.Report{Results: rep.Results[2:]}).ExitCode(); got != 0 {
		t.Errorf("ExitCode() with warnings only = %d, want 0", got)
	}
}
