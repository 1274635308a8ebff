package ovh_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/internal/emulator"
	ovhemu "github.com/mailctl/mailctl/internal/emulator/ovh"
	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
	"github.com/mailctl/mailctl/providers/dns/ovh"
)

func newProvider(t testing.TB, emu *ovhemu.Server, ak, as, ck string) *ovh.Provider {
	t.Helper()
	p, err := dns.New("ovh", dns.Config{Attrs: map[string]string{
		"endpoint": emu.Endpoint, "application_key": ak, "application_secret": as, "consumer_key": ck,
	}})
	if err != nil {
		t.Fatal(err)
	}
	op := p.(*ovh.Provider)
	op.SetHTTPOptions(dns.HTTPOptions{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	return op
}

func good(t testing.TB, emu *ovhemu.Server) *ovh.Provider {
	return newProvider(t, emu, emu.ApplicationKey, emu.ApplicationSecret, emu.ConsumerKey)
}

func TestSuite(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	dnstest.Run(t, func(t *testing.T) (dns.Provider, string) {
		zone := strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())) + ".example"
		emu.AddZone(zone)
		t.Cleanup(func() {
			if n, pending := emu.Refreshes(zone); n == 0 || pending {
				t.Errorf("zone refreshed %d times, pending %v: want refreshed after every change", n, pending)
			}
		})
		return good(t, emu), zone
	})
}

// TestUITypes reads and deletes records that OVH's web UI created as types
// SPF and DKIM, quoted, as TXT.
func TestUITypes(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	emu.AddZone("example.org")
	emu.Seed("example.org", ovhemu.Record{FieldType: "SPF", SubDomain: "", Target: `"v=spf1 include:mx.ovh.com ~all"`, TTL: 600})
	emu.Seed("example.org", ovhemu.Record{FieldType: "DKIM", SubDomain: "ovhmo-1._domainkey", Target: "v=DKIM1;t=s;p=MIGf", TTL: 0})
	emu.Seed("example.org", ovhemu.Record{FieldType: "TXT", SubDomain: "", Target: `"google-site-verification=x"`, TTL: 600})
	emu.Seed("example.org", ovhemu.Record{FieldType: "NS", SubDomain: "", Target: "dns100.ovh.net.", TTL: 0})
	p := good(t, emu)
	ctx := context.Background()
	got, err := p.Records(ctx, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	spf := libdns.RR{Name: "@", Type: "TXT", Data: "v=spf1 include:mx.ovh.com ~all", TTL: 600 * time.Second}
	want := []libdns.RR{
		spf,
		{Name: "@", Type: "TXT", Data: "google-site-verification=x", TTL: 600 * time.Second},
		{Name: "ovhmo-1._domainkey", Type: "TXT", Data: "v=DKIM1;t=s;p=MIGf"},
	}
	if d := dnstest.Diff(got, want); d != "" {
		t.Fatalf("Records differs (-got +want):\n%s", d)
	}
	if err := p.Apply(ctx, "example.org", []libdns.RR{spf}, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range emu.Records("example.org") {
		if r.FieldType == "SPF" {
			t.Fatalf("SPF-typed record still there after deleting its TXT form: %+v", r)
		}
	}
	if n := len(emu.Records("example.org")); n != 3 {
		t.Fatalf("%d records left, want 3", n)
	}
}

func TestCredentialErrors(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	emu.AddZone("example.org")
	ctx := context.Background()
	add := []libdns.RR{{Name: "www", Type: "A", Data: "192.0.2.1", TTL: time.Hour}}
	for _, tc := range []struct {
		name, ak, as, ck, want string
		status                 int
	}{
		{"bad application key", "nope", emu.ApplicationSecret, emu.ConsumerKey, "application_key was refused", 401},
		{"bad secret", emu.ApplicationKey, "nope", emu.ConsumerKey, "application_secret", 401},
		{"bad consumer key", emu.ApplicationKey, emu.ApplicationSecret, "nope", "consumer_key (not validated", 401},
		{"read-only consumer key", emu.ApplicationKey, emu.ApplicationSecret, emu.ReadOnlyConsumerKey, "consumer_key lacks a permission", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := newProvider(t, emu, tc.ak, tc.as, tc.ck).Apply(ctx, "example.org", nil, add)
			var ae *dns.APIError
			if !errors.As(err, &ae) || ae.Status != tc.status || !errors.Is(err, dns.ErrAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply = %v, want HTTP %d naming %q", err, tc.status, tc.want)
			}
		})
	}
	if _, err := good(t, emu).Records(ctx, "example.net"); !errors.Is(err, dns.ErrNotFound) {
		t.Fatalf("Records of an unknown zone = %v, want ErrNotFound", err)
	}
}

// TestConfigWins checks that OVH_* variables and ovh.conf files do not
// override the configured credentials. Not parallel: it sets environment
// variables.
func TestConfigWins(t *testing.T) {
	emu := ovhemu.New(t)
	emu.AddZone("example.org")
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".ovh.conf"), []byte("[default]\nendpoint=ovh-ca\n[ovh-eu]\napplication_key=filekey\n"), 0o600)
	t.Setenv("HOME", home)
	t.Setenv("OVH_ENDPOINT", "ovh-ca")
	t.Setenv("OVH_APPLICATION_KEY", "envkey")
	t.Setenv("OVH_APPLICATION_SECRET", "envsecret")
	t.Setenv("OVH_CONSUMER_KEY", "envck")
	t.Setenv("OVH_CLIENT_ID", "envclient")
	if _, err := good(t, emu).Records(context.Background(), "example.org"); err != nil {
		t.Fatalf("Records with OVH_* set = %v, want the configured credentials used", err)
	}
}

func TestRetriesAndLimits(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	emu.AddZone("example.org")
	p := good(t, emu)
	ctx := context.Background()
	emu.Inject(emulator.Fault{Pattern: "POST /1.0/domain/zone/{zone}/record", Status: http.StatusTooManyRequests, Count: 2})
	emu.Inject(emulator.Fault{Pattern: "POST /1.0/domain/zone/{zone}/refresh", Status: http.StatusInternalServerError, Count: 1})
	if err := p.Apply(ctx, "example.org", nil, []libdns.RR{{Name: "www", Type: "A", Data: "192.0.2.1", TTL: 30 * time.Second}}); err != nil {
		t.Fatalf("Apply through failures = %v", err)
	}
	recs := emu.Records("example.org")
	if len(recs) != 1 || recs[0].TTL != 60 {
		t.Fatalf("emulator holds %+v, want one record with TTL raised to 60", recs)
	}
	if err := p.Apply(ctx, "example.org", nil, []libdns.RR{{Name: "@", Type: "CNAME", Data: "x.example.net.", TTL: time.Hour}}); err == nil {
		t.Fatal("CNAME at the apex accepted")
	}
}

func BenchmarkRecords200Zones(b *testing.B) {
	emu := ovhemu.New(b)
	var zones []string
	for i := 0; i < 200; i++ {
		zone := "zone" + strconv.Itoa(i) + ".example"
		emu.AddZone(zone)
		for _, r := range []ovhemu.Record{
			{FieldType: "MX", Target: "10 mx1.example.net.", TTL: 3600},
			{FieldType: "TXT", Target: "v=spf1 mx ~all", TTL: 3600},
			{FieldType: "TXT", Target: "google-site-verification=abc", TTL: 3600},
			{FieldType: "TXT", SubDomain: "mx1-2026._domainkey", Target: dnstest.LongDKIM, TTL: 3600},
			{FieldType: "TXT", SubDomain: "_dmarc", Target: "v=DMARC1; p=none", TTL: 3600},
			{FieldType: "A", SubDomain: "www", Target: "192.0.2.1", TTL: 3600},
			{FieldType: "SRV", SubDomain: "_imaps._tcp", Target: "0 1 993 mx1.example.net.", TTL: 3600},
		} {
			emu.Seed(zone, r)
		}
		zones = append(zones, zone)
	}
	ctx := context.Background()
	emu.ResetCalls()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := good(b, emu)
		for _, z := range zones {
			if _, err := p.Records(ctx, z); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(emu.Total())/float64(b.N*len(zones)), "calls/zone")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(zones)), "ns/zone")
}

// TestApplyNeverEmpties runs the shared check (dnstest.RunNeverEmpties)
// on the emulator's record of every API call that changed the zone (OVH
// publishes pending changes by itself too, not only at a refresh).
func TestApplyNeverEmpties(t *testing.T) {
	t.Parallel()
	dnstest.RunNeverEmpties(t, func(t *testing.T) dnstest.Observed {
		t.Parallel()
		const zone = "example.org"
		emu := ovhemu.New(t)
		emu.AddZone(zone)
		writes := func() []dnstest.Write {
			var out []dnstest.Write
			for _, w := range emu.Writes(zone) {
				dw := dnstest.Write{Call: w.Call}
				for _, r := range w.Records {
					name := r.SubDomain
					if name == "" {
						name = "@"
					}
					dw.Records = append(dw.Records, libdns.RR{Name: name, Type: dns.TXTLike(r.FieldType), Data: r.Target})
				}
				out = append(out, dw)
			}
			return out
		}
		return dnstest.Observed{Provider: good(t, emu), Zone: zone, Writes: writes, InPlaceCall: "PUT "}
	})
}

// TestApplyNeverEmptiesUIType is the check of TestApplyNeverEmpties on
// records stored under OVH's own SPF and DMARC types (as its web UI makes
// them): after every API call that changed the zone the RRset is neither
// empty nor fuller than before and after, the records are changed in place
// (PUT) and the zone is refreshed once, at the end.
func TestApplyNeverEmptiesUIType(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, rel, typ string
		prefix         string // owned records: those containing it
		before, after  plan.RRSet
		uiType         string      // the before records are stored as this fieldType (OVH's web UI)
		other          []libdns.RR // records at the same name that must stay
		putOnly        bool        // every write is a PUT
	}{
		{name: "SPF stored as OVH's SPF type changed", rel: "@", typ: "TXT", prefix: "v=spf1", uiType: "SPF",
			before:  plan.RRSet{TTL: 3600, Values: []string{"v=spf1 include:mx.ovh.com ~all"}},
			after:   plan.RRSet{TTL: 300, Values: []string{"v=spf1 ip4:203.0.113.10 -all"}},
			other:   []libdns.RR{{Name: "@", Type: "TXT", Data: "google-site-verification=abc", TTL: time.Hour}},
			putOnly: true},
		{name: "DMARC stored as OVH's DMARC type, TTL only", rel: "_dmarc", typ: "TXT", uiType: "DMARC",
			before: plan.RRSet{TTL: 3600, Values: []string{"v=DMARC1; p=none"}}, after: plan.RRSet{TTL: 300, Values: []string{"v=DMARC1; p=none"}}, putOnly: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const zone = "example.org"
			emu := ovhemu.New(t)
			emu.AddZone(zone)
			p := good(t, emu)
			ctx := context.Background()
			sub := strings.TrimSuffix(strings.TrimSuffix(dns.AbsoluteName(tc.rel, zone), "."), zone)
			sub = strings.TrimSuffix(sub, ".")
			_, seed := plan.DNSEdits(plan.Change{Zone: zone, Name: tc.rel, RRType: tc.typ, After: &tc.before})
			if tc.uiType != "" {
				for _, v := range tc.before.Values {
					emu.Seed(zone, ovhemu.Record{FieldType: tc.uiType, SubDomain: sub, Target: `"` + v + `"`, TTL: int64(tc.before.TTL)})
				}
				seed = nil
			}
			if err := p.Apply(ctx, zone, nil, append(seed, tc.other...)); err != nil {
				t.Fatalf("seed: %v", err)
			}
			start := len(emu.Writes(zone))
			refreshes, _ := emu.Refreshes(zone)
			c := plan.Change{Zone: zone, Name: tc.rel, RRType: tc.typ, Before: &tc.before, After: &tc.after}
			del, add := plan.DNSEdits(c)
			if err := p.Apply(ctx, zone, del, add); err != nil {
				t.Fatalf("Apply(del %v, add %v) = %v", del, add, err)
			}
			owned := func(recs []ovhemu.Record) int {
				n := 0
				for _, r := range recs {
					if r.SubDomain == sub && dns.TXTLike(r.FieldType) == tc.typ && strings.Contains(r.Target, tc.prefix) {
						n++
					}
				}
				return n
			}
			most := max(len(tc.before.Values), len(tc.after.Values))
			writes := emu.Writes(zone)[start:]
			if len(writes) == 0 {
				t.Fatal("Apply made no change")
			}
			for i, w := range writes {
				if n := owned(w.Records); n == 0 || n > most {
					t.Errorf("after call %d (%s) the %s %s set holds %d records, want 1 to %d", i, w.Call, tc.rel, tc.typ, n, most)
				}
				if tc.putOnly && !strings.HasPrefix(w.Call, "PUT ") {
					t.Errorf("call %d is %s, want only PUT (changes in place)", i, w.Call)
				}
				if got := len(w.Records) - owned(w.Records); got != len(tc.other) {
					t.Errorf("after call %d (%s) %d other records, want %d", i, w.Call, got, len(tc.other))
				}
			}
			if n, pending := emu.Refreshes(zone); n != refreshes+1 || pending {
				t.Errorf("zone refreshed %d times by Apply, pending %v: want once, at the end", n-refreshes, pending)
			}
			if tc.uiType != "" {
				for _, r := range emu.Records(zone) {
					if r.SubDomain == sub && strings.Contains(r.Target, tc.prefix) && r.FieldType != tc.uiType {
						t.Errorf("record %+v: want it changed in place, still of type %s", r, tc.uiType)
					}
				}
			}
			got, err := p.Records(ctx, zone)
			if err != nil {
				t.Fatal(err)
			}
			_, want := plan.DNSEdits(plan.Change{Zone: zone, Name: tc.rel, RRType: tc.typ, After: &tc.after})
			if d := dnstest.Diff(got, dnstest.Expect(nil, nil, append(want, tc.other...), zone)); d != "" {
				t.Errorf("Records after Apply differs (-got +want):\n%s", d)
			}
		})
	}
}

// TestApplyCNAMEToAddress: a set deleted entirely goes before the records
// created, so that a CNAME can give its name to records of another type in
// one Apply (OVH refuses a CNAME beside other records).
func TestApplyCNAMEToAddress(t *testing.T) {
	t.Parallel()
	const zone = "example.org"
	emu := ovhemu.New(t)
	emu.AddZone(zone)
	p := good(t, emu)
	ctx := context.Background()
	cname := libdns.RR{Name: "autoconfig", Type: "CNAME", Data: "mx1.example.org.", TTL: time.Hour}
	a := libdns.RR{Name: "autoconfig", Type: "A", Data: "192.0.2.10", TTL: time.Hour}
	if err := p.Apply(ctx, zone, nil, []libdns.RR{cname}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, zone, []libdns.RR{cname}, []libdns.RR{a}); err != nil {
		t.Fatalf("Apply(CNAME -> A) = %v", err)
	}
	got, err := p.Records(ctx, zone)
	if err != nil {
		t.Fatal(err)
	}
	if d := dnstest.Diff(got, []libdns.RR{a}); d != "" {
		t.Errorf("Records differs (-got +want):\n%s", d)
	}
}

// TestCreateAnswerLost: the emulator makes a record and then loses the
// answer (the connection closes, or a 502 comes back): the record is read
// back rather than posted again, so the zone holds it once.
func TestCreateAnswerLost(t *testing.T) {
	t.Parallel()
	for _, status := range []int{0, http.StatusBadGateway} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			emu := ovhemu.New(t)
			emu.AddZone("example.org")
			p := good(t, emu)
			emu.Inject(emulator.Fault{Pattern: "POST /1.0/domain/zone/{zone}/record", LoseAnswer: true, Status: status})
			rr := libdns.RR{Name: "_dmarc", Type: "TXT", Data: "v=DMARC1; p=none", TTL: time.Hour}
			if err := p.Apply(context.Background(), "example.org", nil, []libdns.RR{rr}); err != nil {
				t.Fatalf("Apply with the create's answer lost = %v", err)
			}
			if recs := emu.Records("example.org"); len(recs) != 1 {
				t.Fatalf("emulator holds %d records, want 1 (no duplicate): %+v", len(recs), recs)
			}
			if n := emu.Count("POST /1.0/domain/zone/{zone}/record"); n != 1 {
				t.Errorf("%d creates sent, want 1", n)
			}
		})
	}
	// An answer lost before the record was made: it is created again, once.
	emu := ovhemu.New(t)
	emu.AddZone("example.org")
	p := good(t, emu)
	emu.Inject(emulator.Fault{Pattern: "POST /1.0/domain/zone/{zone}/record", Status: http.StatusBadGateway})
	rr := libdns.RR{Name: "www", Type: "A", Data: "192.0.2.1", TTL: time.Hour}
	if err := p.Apply(context.Background(), "example.org", nil, []libdns.RR{rr}); err != nil {
		t.Fatalf("Apply with a create refused by 502 = %v", err)
	}
	if recs := emu.Records("example.org"); len(recs) != 1 {
		t.Fatalf("emulator holds %d records, want 1: %+v", len(recs), recs)
	}
}
