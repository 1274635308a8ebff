package cloudflare_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/internal/emulator"
	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/cloudflare"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
)

func newProvider(t testing.TB, emu *cfemu.Server, token string) *cloudflare.Provider {
	t.Helper()
	p, err := dns.New("cloudflare", dns.Config{Attrs: map[string]string{"api_token": token, "endpoint": emu.URL}})
	if err != nil {
		t.Fatal(err)
	}
	cp := p.(*cloudflare.Provider)
	cp.SetHTTPOptions(dns.HTTPOptions{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	return cp
}

func TestSuite(t *testing.T) {
	t.Parallel()
	emu := cfemu.New(t)
	dnstest.Run(t, func(t *testing.T) (dns.Provider, string) {
		zone := strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())) + ".example"
		emu.AddZone(zone)
		return newProvider(t, emu, emu.Token), zone
	})
}

func TestLongTXTStoredSplit(t *testing.T) {
	t.Parallel()
	emu := cfemu.New(t)
	emu.AddZone("example.org")
	p := newProvider(t, emu, emu.Token)
	dnstest.RunScenario(t, p, "example.org", "long DKIM TXT")
	recs := emu.Records("example.org")
	if len(recs) != 1 || !strings.Contains(recs[0].Content, `" "`) {
		t.Fatalf("emulator holds %+v, want one TXT stored as several strings", recs)
	}
	// And it can be deleted again although its stored form differs.
	want := libdns.RR{Name: "mx1-2026._domainkey", Type: "TXT", Data: dnstest.LongDKIM, TTL: time.Hour}
	if err := p.Apply(context.Background(), "example.org", []libdns.RR{want}, nil); err != nil {
		t.Fatal(err)
	}
	if recs := emu.Records("example.org"); len(recs) != 0 {
		t.Fatalf("after delete emulator holds %+v", recs)
	}
}

func TestDashboardRecords(t *testing.T) {
	t.Parallel()
	emu := cfemu.New(t)
	emu.AddZone("example.org")
	prio := uint16(10)
	emu.Seed("example.org", cfemu.Record{Name: "example.org", Type: "MX", Content: "mx1.example.org", Priority: &prio, TTL: 1})
	emu.Seed("example.org", cfemu.Record{Name: "mx1", Type: "A", Content: "192.0.2.1", TTL: 300, Proxied: true})
	emu.Seed("example.org", cfemu.Record{Name: "@", Type: "TXT", Content: "v=spf1 mx -all", TTL: 3600})
	emu.Seed("example.org", cfemu.Record{Name: "@", Type: "NS", Content: "ada.ns.cloudflare.com", TTL: 3600})
	p := newProvider(t, emu, emu.Token)
	got, err := p.Records(context.Background(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := []libdns.RR{
		{Name: "@", Type: "MX", Data: "10 mx1.example.org.", TTL: 300 * time.Second},
		{Name: "@", Type: "TXT", Data: "v=spf1 mx -all", TTL: time.Hour},
		{Name: "mx1", Type: "A", Data: "192.0.2.1", TTL: 300 * time.Second},
	}
	if d := dnstest.Diff(got, want); d != "" {
		t.Fatalf("Records differs (-got +want):\n%s", d)
	}
	zones, err := p.Zones(context.Background())
	if err != nil || len(zones) != 1 || zones[0] != "example.org" {
		t.Fatalf("Zones() = %v, %v", zones, err)
	}
}

func TestCredentialErrors(t *testing.T) {
	t.Parallel()
	emu := cfemu.New(t)
	emu.AddZone("example.org")
	ctx := context.Background()
	add := []libdns.RR{{Name: "www", Type: "A", Data: "192.0.2.1", TTL: time.Hour}}

	_, err := newProvider(t, emu, "wrong").Records(ctx, "example.org")
	if !errors.Is(err, dns.ErrAuth) || !strings.Contains(err.Error(), "api_token was refused") {
		t.Errorf("Records with a wrong token = %v, want the api_token refused", err)
	}
	ro := newProvider(t, emu, emu.ReadOnlyToken)
	if _, err := ro.Records(ctx, "example.org"); err != nil {
		t.Errorf("Records with a read-only token = %v", err)
	}
	err = ro.Apply(ctx, "example.org", nil, add)
	if !errors.Is(err, dns.ErrAuth) || !strings.Contains(err.Error(), "DNS:Edit") {
		t.Errorf("Apply with a read-only token = %v, want a missing DNS:Edit permission", err)
	}
	_, err = newProvider(t, emu, emu.Token).Records(ctx, "example.net")
	if !errors.Is(err, dns.ErrNotFound) {
		t.Errorf("Records of an unknown zone = %v, want ErrNotFound", err)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	emu := cfemu.New(t)
	emu.AddZone("example.org")
	p := newProvider(t, emu, emu.Token)
	ctx := context.Background()
	emu.Inject(emulator.Fault{Status: http.StatusTooManyRequests, Count: 2, RetryAfter: "0"})
	emu.Inject(emulator.Fault{Status: http.StatusInternalServerError, Count: 1})
	if err := p.Apply(ctx, "example.org", nil, []libdns.RR{{Name: "www", Type: "A", Data: "192.0.2.1", TTL: time.Hour}}); err != nil {
		t.Fatalf("Apply through 3 failures = %v", err)
	}
	if got := len(emu.Records("example.org")); got != 1 {
		t.Fatalf("emulator holds %d records, want 1 (no duplicate from retries)", got)
	}
	emu.FailNext(10, http.StatusServiceUnavailable)
	_, err := p.Records(ctx, "example.org")
	var apiErr *dns.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
		t.Fatalf("Records with the API down = %v, want APIError 503", err)
	}
}

func BenchmarkRecords200Zones(b *testing.B) {
	emu := cfemu.New(b)
	var zones []string
	for i := 0; i < 200; i++ {
		zone := "zone" + strconv.Itoa(i) + ".example"
		emu.AddZone(zone)
		for _, r := range benchRecords() {
			emu.Seed(zone, r)
		}
		zones = append(zones, zone)
	}
	ctx := context.Background()
	emu.ResetCalls()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A fresh provider per run, as each `mailctl plan` starts cold.
		p := newProvider(b, emu, emu.Token)
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

// benchRecords is a typical mail domain: MX, SPF, DKIM, DMARC, A, SRV.
func benchRecords() []cfemu.Record {
	p10 := uint16(10)
	return []cfemu.Record{
		{Name: "@", Type: "MX", Content: "mx1.example.net", Priority: &p10, TTL: 3600},
		{Name: "@", Type: "TXT", Content: `"v=spf1 mx ~all"`, TTL: 3600},
		{Name: "@", Type: "TXT", Content: `"google-site-verification=abc"`, TTL: 3600},
		{Name: "mx1-2026._domainkey", Type: "TXT", Content: `"` + dnstest.LongDKIM + `"`, TTL: 3600},
		{Name: "_dmarc", Type: "TXT", Content: `"v=DMARC1; p=none"`, TTL: 3600},
		{Name: "www", Type: "A", Content: "192.0.2.1", TTL: 3600},
		{Name: "_imaps._tcp", Type: "SRV", Data: &cfemu.SRVData{Priority: 0, Weight: 1, Port: 993, Target: "mx1.example.net"}, TTL: 3600},
	}
}

// TestApplyNeverEmpties applies the changes of a mail migration as apply
// does (plan.DNSEdits of the planned change) and checks, after every API
// call that changed the zone, what a resolver could have been served: the
// RRset is never empty while its new contents are not (an empty MX set
// sends mail to the apex A record), and never holds more records than
// before and after (two SPF records are a permerror, two CNAMEs refused).
func TestApplyNeverEmpties(t *testing.T) {
	t.Parallel()
	google := []string{"1 aspmx.l.google.com.", "5 alt1.aspmx.l.google.com.", "5 alt2.aspmx.l.google.com.", "10 alt3.aspmx.l.google.com.", "10 alt4.aspmx.l.google.com."}
	cases := []struct {
		name, rel, typ string
		prefix         string // owned records: those containing it
		before, after  plan.RRSet
		other          []libdns.RR // records at the same name that must stay
		patchOnly      bool        // every write is a PATCH
	}{
		{name: "presync: MX TTL lowered", rel: "@", typ: "MX",
			before: plan.RRSet{TTL: 3600, Values: google}, after: plan.RRSet{TTL: 300, Values: google}, patchOnly: true},
		{name: "cutover: Google's five MX replaced by one", rel: "@", typ: "MX",
			before: plan.RRSet{TTL: 300, Values: google}, after: plan.RRSet{TTL: 300, Values: []string{"10 mx1.example.org."}}},
		{name: "cutover: smtp.google.com replaced", rel: "@", typ: "MX",
			before: plan.RRSet{TTL: 300, Values: []string{"1 smtp.google.com."}}, after: plan.RRSet{TTL: 300, Values: []string{"10 mx1.example.org."}}, patchOnly: true},
		{name: "MX added with a TTL change", rel: "@", typ: "MX",
			before: plan.RRSet{TTL: 3600, Values: []string{"10 mx1.example.org."}}, after: plan.RRSet{TTL: 300, Values: []string{"10 mx1.example.org.", "20 mx2.example.org."}}},
		{name: "SPF include dropped", rel: "@", typ: "TXT", prefix: "v=spf1",
			before:    plan.RRSet{TTL: 3600, Values: []string{"v=spf1 ip4:203.0.113.10 include:_spf.google.com ~all"}},
			after:     plan.RRSet{TTL: 3600, Values: []string{"v=spf1 ip4:203.0.113.10 ~all"}},
			other:     []libdns.RR{{Name: "@", Type: "TXT", Data: "google-site-verification=abc", TTL: time.Hour}},
			patchOnly: true},
		{name: "CNAME retargeted", rel: "mta-sts", typ: "CNAME",
			before: plan.RRSet{TTL: 3600, Values: []string{"mta-sts.old.example.net."}}, after: plan.RRSet{TTL: 300, Values: []string{"mx1.example.org."}}, patchOnly: true},
		{name: "SRV retargeted", rel: "_imaps._tcp", typ: "SRV",
			before: plan.RRSet{TTL: 3600, Values: []string{"0 1 993 imap.old.example.net."}}, after: plan.RRSet{TTL: 3600, Values: []string{"0 1 993 mx1.example.org."}}, patchOnly: true},
		{name: "long DKIM key replaced", rel: "mx1._domainkey", typ: "TXT",
			before: plan.RRSet{TTL: 3600, Values: []string{dnstest.LongDKIM}}, after: plan.RRSet{TTL: 3600, Values: []string{"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}, patchOnly: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const zone = "example.org"
			emu := cfemu.New(t)
			emu.AddZone(zone)
			p := newProvider(t, emu, emu.Token)
			ctx := context.Background()
			c := plan.Change{Zone: zone, Name: tc.rel, RRType: tc.typ, Before: &tc.before, After: &tc.after}
			_, seed := plan.DNSEdits(plan.Change{Zone: zone, Name: tc.rel, RRType: tc.typ, After: &tc.before})
			if err := p.Apply(ctx, zone, nil, append(seed, tc.other...)); err != nil {
				t.Fatalf("seed: %v", err)
			}
			start := len(emu.Writes(zone))
			del, add := plan.DNSEdits(c)
			if err := p.Apply(ctx, zone, del, add); err != nil {
				t.Fatalf("Apply(del %v, add %v) = %v", del, add, err)
			}
			abs := strings.TrimSuffix(dns.AbsoluteName(tc.rel, zone), ".")
			owned := func(recs []cfemu.Record) int {
				n := 0
				for _, r := range recs {
					if r.Name == abs && r.Type == tc.typ && strings.Contains(r.Content, tc.prefix) {
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
					t.Errorf("after call %d (%s) the %s %s set holds %d records, want 1 to %d", i, w.Call, abs, tc.typ, n, most)
				}
				if tc.patchOnly && !strings.HasPrefix(w.Call, "PATCH ") {
					t.Errorf("call %d is %s, want only PATCH (changes in place)", i, w.Call)
				}
				if got := len(w.Records) - owned(w.Records); got != len(tc.other) {
					t.Errorf("after call %d (%s) %d other records, want %d", i, w.Call, got, len(tc.other))
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

// TestCreateAnswerLost: the emulator makes a record and then loses the
// answer: the record is read back rather than posted again.
func TestCreateAnswerLost(t *testing.T) {
	t.Parallel()
	for _, status := range []int{0, http.StatusBadGateway} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			emu := cfemu.New(t)
			emu.AddZone("example.org")
			p := newProvider(t, emu, emu.Token)
			emu.Inject(emulator.Fault{Pattern: "POST /client/v4/zones/{zone}/dns_records", LoseAnswer: true, Status: status})
			add := []libdns.RR{
				{Name: "_dmarc", Type: "TXT", Data: "v=DMARC1; p=none", TTL: time.Hour},
				{Name: "www", Type: "A", Data: "192.0.2.1", TTL: time.Hour},
			}
			if err := p.Apply(context.Background(), "example.org", nil, add); err != nil {
				t.Fatalf("Apply with a create's answer lost = %v", err)
			}
			if recs := emu.Records("example.org"); len(recs) != 2 {
				t.Fatalf("emulator holds %d records, want 2 (no duplicate): %+v", len(recs), recs)
			}
			if n := emu.Count("POST /client/v4/zones/{zone}/dns_records"); n != 2 {
				t.Errorf("%d creates sent, want 2", n)
			}
		})
	}
}
