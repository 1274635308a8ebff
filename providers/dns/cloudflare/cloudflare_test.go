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

// TestApplyNeverEmpties runs the shared check (dnstest.RunNeverEmpties)
// on the emulator's record of every API call that changed the zone:
// Cloudflare has no transaction over several records, so each call's
// state could be served.
func TestApplyNeverEmpties(t *testing.T) {
	t.Parallel()
	dnstest.RunNeverEmpties(t, func(t *testing.T) dnstest.Observed {
		t.Parallel()
		const zone = "example.org"
		emu := cfemu.New(t)
		emu.AddZone(zone)
		writes := func() []dnstest.Write {
			var out []dnstest.Write
			for _, w := range emu.Writes(zone) {
				dw := dnstest.Write{Call: w.Call}
				for _, r := range w.Records {
					dw.Records = append(dw.Records, libdns.RR{Name: dns.RelativeName(r.Name, zone), Type: r.Type, Data: r.Content})
				}
				out = append(out, dw)
			}
			return out
		}
		return dnstest.Observed{Provider: newProvider(t, emu, emu.Token), Zone: zone, Writes: writes, InPlaceCall: "PATCH "}
	})
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
