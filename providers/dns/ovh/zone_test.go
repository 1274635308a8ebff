package ovh_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/internal/emulator"
	ovhemu "github.com/mailctl/mailctl/internal/emulator/ovh"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
)

func add(name, typ, data string) dns.SetEdit {
	return dns.SetEdit{Add: []libdns.RR{{Name: name, Type: typ, Data: data, TTL: time.Hour}}}
}

// TestApplyZoneOneRefresh: the RRsets of a zone are followed by one
// refresh of the zone, not one per RRset; when an edit fails, the edits
// before it are counted (dns.PartialError) and still refreshed, so that
// OVH's name servers serve what was written.
func TestApplyZoneOneRefresh(t *testing.T) {
	t.Parallel()
	const zone = "example.org"
	emu := ovhemu.New(t)
	emu.AddZone(zone)
	p := good(t, emu)
	ctx := context.Background()
	mx1 := "mx1.example.org."
	edits := []dns.SetEdit{
		add("@", "MX", "10 "+mx1), add("@", "TXT", "v=spf1 mx ~all"), add("_dmarc", "TXT", "v=DMARC1; p=none"),
		add("_imaps._tcp", "SRV", "0 1 993 "+mx1), add("_submissions._tcp", "SRV", "0 1 465 "+mx1),
		add("autoconfig", "CNAME", mx1), add("mx1", "A", "192.0.2.1"),
	}
	if n, err := dns.ApplyZone(ctx, p, zone, edits); err != nil || n != len(edits) {
		t.Fatalf("ApplyZone of a new domain = %d, %v", n, err)
	}
	if n, pending := emu.Refreshes(zone); n != 1 || pending {
		t.Errorf("after %d RRsets: %d refreshes, pending %v; want 1 and none pending", len(edits), n, pending)
	}

	// The third edit's PUT is refused: two edits applied, then a refresh.
	dmarc := edits[2].Add[0]
	step := []dns.SetEdit{
		add("a", "A", "192.0.2.2"), add("b", "A", "192.0.2.3"),
		{Del: []libdns.RR{dmarc}, Add: []libdns.RR{{Name: "_dmarc", Type: "TXT", Data: "v=DMARC1; p=reject", TTL: time.Hour}}},
		add("c", "A", "192.0.2.4"),
	}
	emu.Inject(emulator.Fault{Pattern: "PUT /1.0/domain/zone/{zone}/record/{id}", Status: http.StatusBadRequest,
		Body: `{"message": "Invalid record"}`})
	n, err := dns.ApplyZone(ctx, p, zone, step)
	var pe *dns.PartialError
	if !errors.As(err, &pe) || n != 2 {
		t.Fatalf("ApplyZone with the third edit refused = %d, %v; want a PartialError of 2", n, err)
	}
	if n, pending := emu.Refreshes(zone); n != 2 || pending {
		t.Errorf("after a failed edit: %d refreshes in all, pending %v; want 2 and none pending", n, pending)
	}
	want := dnstest.Expect(nil, nil, append(append([]libdns.RR{}, edits[0].Add...), edits[1].Add...), zone)
	for _, e := range append(edits[2:], step[:2]...) {
		want = dnstest.Expect(want, e.Del, e.Add, zone)
	}
	got, err := p.Records(ctx, zone)
	if err != nil {
		t.Fatal(err)
	}
	if d := dnstest.Diff(got, want); d != "" {
		t.Errorf("zone after the partial apply differs (-got +want):\n%s", d)
	}
}
