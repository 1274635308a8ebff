package verify_test

import (
	"context"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/verify"
)

// migrationHCL is the lab's configuration with alice's mailbox moving from
// Google Workspace (the default source) in the given phase.
func migrationHCL(phase string) string {
	return baseHCL + `
migration "google" {
  phase = "` + phase + `"
  user "alice@example.org" {
    password        = "app-password"
    target_password = "target-password"
  }
}
`
}

// googleSPF are Google's SPF records as the include of a migrating domain
// reaches them: 4 DNS lookups in all.
var googleSPF = map[string]string{
	"_spf.google.com":        "v=spf1 include:_netblocks.google.com include:_netblocks2.google.com include:_netblocks3.google.com ~all",
	"_netblocks.google.com":  "v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ~all",
	"_netblocks2.google.com": "v=spf1 ip6:2001:4860:4000::/36 ~all",
	"_netblocks3.google.com": "v=spf1 ip4:172.217.32.0/20 ~all",
}

// migrationLab is the base lab configured for the migration phase, with
// the zone as a correct apply of that phase leaves it: the planned records,
// the MX at Google (smtp.google.com, TTL lowered to 300) before the
// cut-over, no MTA-STS record in presync, and Google's SPF records.
func migrationLab(t *testing.T, base *lab, phase string) *lab {
	t.Helper()
	l := base.clone()
	var keys []desired.DKIMKey
	for _, s := range base.records {
		if sel, ok := strings.CutSuffix(s.Name, "._domainkey."+s.Domain); ok && len(s.Values) == 1 {
			keys = append(keys, desired.DKIMKey{Domain: s.Domain, Selector: sel, Record: s.Values[0]})
		}
	}
	l.cfg = loadConfig(t, migrationHCL(phase))
	l.records = desired.Records(l.cfg, keys)
	for _, s := range l.records {
		switch {
		case s.KeepValues:
			l.set(t, s.Name, s.Type, "1 smtp.google.com.")
		case s.Prefix != "":
			l.set(t, s.Name, s.Type, s.Values...)
		}
	}
	if phase == "presync" {
		l.set(t, "_mta-sts.example.org", "TXT")
		l.set(t, "mta-sts.example.org", "CNAME")
	}
	for name, v := range googleSPF {
		l.set(t, name, "TXT", v)
	}
	l.set(t, "smtp.google.com", "A", "142.250.27.27")
	return l
}

// setTTL gives the records of name and type another TTL.
func (l *lab) setTTL(name, typ string, ttl uint32) {
	for _, rr := range l.rrs {
		if strings.EqualFold(rr.Header().Name, mdns.Fqdn(name)) && mdns.TypeToString[rr.Header().Rrtype] == typ {
			rr.Header().Ttl = ttl
		}
	}
	l.dirty = true
}

// TestMigration verifies a domain while its mail moves from Google
// Workspace (issue #8): in presync the MX deliberately stay at Google with
// a lowered TTL and MTA-STS is not published, so a correct setup must be
// all pass or skip, and a wrong one (TTL not lowered, no MX, this server's
// MTA-STS policy already published) must fail; in cutover the normal
// checks apply, with Google's SPF include kept.
func TestMigration(t *testing.T) {
	base := newLab(t)
	const (
		keptMX  = `example.org MX: only the TTL (300) compared, the current values (1 smtp.google.com.) are kept until phase = "cutover"`
		spfPass = `"v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 include:_spf.google.com -all": 4 DNS lookups, pass for 203.0.113.10, 2001:db8::10`
	)
	cases := []struct {
		name  string
		phase string
		setup func(t *testing.T, l *lab)
		want  []expect
		// allGood: every other result passes (mta-sts may skip in presync).
		allGood bool
	}{
		{name: "presync", phase: "presync", allGood: true, want: []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Pass, keptMX, ""},
			{"dns.ns", "example.org @ ns2.example.org", verify.Pass, "record sets as planned", ""},
			{"dns.mx", "example.org", verify.Pass, `MX still at the old provider (presync): cut over with phase = "cutover" (MX 1 smtp.google.com)`, ""},
			{"mta-sts", "example.org", verify.Skip, "MTA-STS is not published before the cut-over (presync)", ""},
			{"spf", "example.org", verify.Pass, spfPass, ""},
		}},
		{name: "presync: the old provider's MTA-STS left alone", phase: "presync", allGood: true, setup: func(t *testing.T, l *lab) {
			l.set(t, "_mta-sts.example.org", "TXT", "v=STSv1; id=google2024")
		}, want: []expect{
			{"mta-sts", "example.org", verify.Skip, `the current _mta-sts.example.org record (v=STSv1; id=google2024) is left alone`, ""},
		}},
		{name: "presync: MX TTL not lowered", phase: "presync", setup: func(t *testing.T, l *lab) {
			l.setTTL("example.org", "MX", 3600)
		}, want: []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Fail, `example.org MX "1 smtp.google.com." has TTL 3600, want 300`, "run mailctl plan and mailctl apply"},
			{"dns.mx", "example.org", verify.Fail, "MX TTL is 3600, want at most 300 before the cut-over", "lower the MX TTL"},
		}},
		{name: "presync: no MX", phase: "presync", setup: func(t *testing.T, l *lab) {
			l.set(t, "example.org", "MX")
		}, want: []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Pass, `example.org MX: none to keep until phase = "cutover"`, ""},
			{"dns.mx", "example.org", verify.Fail, "no MX record: in presync the MX keep the old provider's values", "publish the old provider's MX records again"},
		}},
		{name: "presync: this server's MTA-STS policy already published", phase: "presync", setup: func(t *testing.T, l *lab) {
			l.rrs = append(l.rrs, base.find("_mta-sts.example.org", "TXT")...)
		}, want: []expect{
			{"mta-sts", "example.org", verify.Fail, "publishes this server's policy", "delete the TXT record _mta-sts.example.org"},
		}},
		{name: "cutover", phase: "cutover", allGood: true, want: []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Pass, "record sets as planned", ""},
			{"dns.mx", "example.org", verify.Pass, "MX 10 mx1.example.org", ""},
			{"mta-sts", "example.org", verify.Pass, "mode enforce, mx mx1.example.org", ""},
			{"spf", "example.org", verify.Pass, spfPass, ""},
		}},
		{name: "cutover: MX still at Google", phase: "cutover", setup: func(t *testing.T, l *lab) {
			l.set(t, "example.org", "MX", "1 smtp.google.com.")
		}, want: []expect{
			{"dns.ns", "example.org @ ns1.example.org", verify.Fail, `example.org MX is "1 smtp.google.com.", want "10 mx1.example.org."`, "run mailctl plan and mailctl apply"},
			{"dns.mx", "example.org", verify.Fail, "MX points to 1 smtp.google.com, not to mx1.example.org", "publish MX 10 mx1.example.org."},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := migrationLab(t, base, tc.phase)
			if tc.setup != nil {
				tc.setup(t, l)
			}
			rep := l.run(t)
			if testing.Verbose() {
				t.Log("\n" + table(rep))
			}
			for _, e := range tc.want {
				e.assert(t, rep)
			}
			if tc.allGood {
				for _, r := range rep.Results {
					if r.Status != verify.Pass && !(r.Check == "mta-sts" && tc.phase == "presync" && r.Status == verify.Skip) {
						t.Errorf("%s %s = %s %q, want pass", r.Check, r.Target, r.Status, r.Detail)
					}
				}
				if rep.ExitCode() != 0 {
					t.Errorf("ExitCode() = %d, want 0", rep.ExitCode())
				}
			} else if rep.ExitCode() != 2 {
				t.Errorf("ExitCode() = %d, want 2", rep.ExitCode())
			}
		})
	}
}

// find returns copies of the lab's records of name and type.
func (l *lab) find(name, typ string) []mdns.RR {
	var out []mdns.RR
	for _, rr := range l.rrs {
		if strings.EqualFold(rr.Header().Name, mdns.Fqdn(name)) && mdns.TypeToString[rr.Header().Rrtype] == typ {
			out = append(out, mdns.Copy(rr))
		}
	}
	return out
}

// TestFindNameservers finds the lab zone's name servers through Knot:
// each at its Addresses entry (host compared case-blind) or at its A
// record, port 53; a name that does not exist has no NS.
func TestFindNameservers(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org")
	if err := k.Update(context.Background(), "example.org", nil, []mdns.RR{
		newRR(t, "example.org", "NS", "ns2.example.org."),
		newRR(t, "ns2.example.org", "A", "127.0.0.2"),
		newRR(t, "ns2.example.org", "AAAA", "::1"),
	}); err != nil {
		t.Fatal(err)
	}
	res := &verify.DNSClient{Servers: []string{k.Addr}}
	for _, tc := range []struct {
		name, zone string
		addresses  map[string]string
		want       string // the servers as "name=addr" joined by spaces
		err        string
	}{
		{"addresses", "example.org", map[string]string{"NS1.Example.org:53": k.Addr},
			"ns1.example.org=" + k.Addr + " ns2.example.org (127.0.0.2)=127.0.0.2:53 ns2.example.org (::1)=[::1]:53", ""},
		{"A records", "example.org.", nil, "ns1.example.org=127.0.0.1:53 ns2.example.org (127.0.0.2)=127.0.0.2:53 ns2.example.org (::1)=[::1]:53", ""},
		{"no such zone", "nowhere.example.org", nil, "", "look up NS of nowhere.example.org: no NS record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nss, err := verify.FindNameservers(context.Background(), res, tc.addresses, tc.zone)
			var got []string
			for _, ns := range nss {
				got = append(got, ns.Name+"="+ns.Addr)
			}
			if strings.Join(got, " ") != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Errorf("FindNameservers(%q) = %q, %v; want %q, %q", tc.zone, got, err, tc.want, tc.err)
			}
		})
	}
}
