package rfc2136_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
	_ "github.com/mailctl/mailctl/providers/dns/rfc2136"
)

func newProvider(t *testing.T, k *testenv.Knot, key string) dns.Provider {
	t.Helper()
	p, err := dns.New("rfc2136", dns.Config{Attrs: map[string]string{
		"server": k.Addr, "tsig_name": k.TSIGName, "tsig_alg": k.TSIGAlg, "tsig_key": key,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSuiteAgainstKnot(t *testing.T) {
	t.Parallel()
	var zones []string
	for i := range dnstest.Zones() {
		zones = append(zones, fmt.Sprintf("z%d.example.org", i))
	}
	k := testenv.StartKnot(t, zones...)
	var next atomic.Int32
	dnstest.Run(t, func(t *testing.T) (dns.Provider, string) {
		return newProvider(t, k, k.TSIGSecret), zones[next.Add(1)-1]
	})
}

// TestServedByKnot checks with real DNS queries that what Apply wrote is
// what Knot serves: the DKIM key in 255-byte strings, SRV records, the TTL.
func TestServedByKnot(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org")
	p := newProvider(t, k, k.TSIGSecret)
	dnstest.RunScenario(t, p, "example.org", "long DKIM TXT")
	dnstest.RunScenario(t, p, "example.org", "SRV")

	ans := k.Query(t, "mx1-2026._domainkey.example.org", mdns.TypeTXT)
	if len(ans) != 1 {
		t.Fatalf("TXT answer = %v, want one record", ans)
	}
	txt := ans[0].(*mdns.TXT)
	if len(txt.Txt) < 2 || len(txt.Txt[0]) != 255 || strings.Join(txt.Txt, "") != dnstest.LongDKIM || txt.Hdr.Ttl != 3600 {
		t.Fatalf("served TXT = %v, want the DKIM key in 255-byte strings, TTL 3600", txt)
	}
	ans = k.Query(t, "_submissions._tcp.example.org", mdns.TypeSRV)
	if len(ans) != 1 || ans[0].(*mdns.SRV).Port != 465 || ans[0].(*mdns.SRV).Target != "mx1.example.org." {
		t.Fatalf("served SRV = %v, want 0 1 465 mx1.example.org.", ans)
	}
	ans = k.Query(t, "_imaps._tcp.example.org", mdns.TypeSRV)
	if len(ans) != 1 || ans[0].(*mdns.SRV).Port != 993 {
		t.Fatalf("served SRV = %v, want port 993", ans)
	}
}

// TestApplyIsAtomic sends an UPDATE whose second half the server must refuse
// (a CNAME next to other data is invalid, RFC 2136 section 3.4.2.2 makes
// Knot ignore or refuse it) and checks that nothing else changed either.
func TestApplyIsAtomic(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org")
	p := newProvider(t, k, k.TSIGSecret)
	ctx := context.Background()
	a := libdns.RR{Name: "www", Type: "A", Data: "192.0.2.1", TTL: time.Hour}
	if err := p.Apply(ctx, "example.org", nil, []libdns.RR{a}); err != nil {
		t.Fatal(err)
	}
	before, err := p.Records(ctx, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	// Deleting the A and adding a record outside the zone in the same
	// message: the server refuses the message (NOTZONE), the A must stay.
	bad := libdns.RR{Name: "www.example.net.", Type: "A", Data: "192.0.2.2", TTL: time.Hour}
	if err := p.Apply(ctx, "example.org", []libdns.RR{a}, []libdns.RR{bad}); err == nil {
		t.Fatal("Apply with a record outside the zone succeeded")
	}
	got, err := p.Records(ctx, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if d := dnstest.Diff(got, before); d != "" || len(before) != 2 {
		t.Fatalf("after a refused UPDATE the zone changed:\n%s", d)
	}
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org")
	p := newProvider(t, k, "d3JvbmcgLSB3cm9uZyAtIHdyb25nIC0gd3Jvbmcgd3Jvbmc=")
	ctx := context.Background()
	err := p.Apply(ctx, "example.org", nil, []libdns.RR{{Name: "www", Type: "A", Data: "192.0.2.1", TTL: time.Hour}})
	if !errors.Is(err, dns.ErrAuth) || !strings.Contains(err.Error(), "tsig_key") {
		t.Fatalf("Apply with a wrong key = %v, want ErrAuth naming tsig_key", err)
	}
	if _, err := p.Records(ctx, "example.org"); err == nil {
		t.Fatal("Records with a wrong key succeeded")
	}
}

// TestApplyZoneOneUpdate: the changes of several RRsets of a zone go in
// one UPDATE message, so Knot bumps the zone's serial once (it bumped it
// once per RRset), and a message the server refuses changes none of them.
func TestApplyZoneOneUpdate(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org")
	p := newProvider(t, k, k.TSIGSecret)
	ctx := context.Background()
	serial := func() uint32 {
		ans := k.Query(t, "example.org", mdns.TypeSOA)
		if len(ans) != 1 {
			t.Fatalf("SOA answer = %v", ans)
		}
		return ans[0].(*mdns.SOA).Serial
	}
	before := serial()
	steps := dnstest.ZoneSteps("example.org")
	if n, err := dns.ApplyZone(ctx, p, "example.org", steps[0]); err != nil || n != len(steps[0]) {
		t.Fatalf("ApplyZone of %d sets = %d, %v", len(steps[0]), n, err)
	}
	if after := serial(); after != before+1 {
		t.Errorf("serial %d after ApplyZone of %d sets, want %d (one UPDATE)", after, len(steps[0]), before+1)
	}
	recs, err := p.Records(ctx, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	bad := libdns.RR{Name: "www.example.net.", Type: "A", Data: "192.0.2.2", TTL: time.Hour}
	edits := append(slices.Clone(steps[1]), dns.SetEdit{Add: []libdns.RR{bad}})
	if n, err := dns.ApplyZone(ctx, p, "example.org", edits); err == nil || n != 0 {
		t.Fatalf("ApplyZone with a record outside the zone = %d, %v; want 0 and an error", n, err)
	}
	got, err := p.Records(ctx, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if d := dnstest.Diff(got, recs); d != "" {
		t.Fatalf("after a refused UPDATE the zone changed:\n%s", d)
	}
}
