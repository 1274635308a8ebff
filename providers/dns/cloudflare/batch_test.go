package cloudflare_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/internal/emulator"
	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
)

const batchCall = "POST /client/v4/zones/{zone}/dns_records/batch"

// hosts returns n edits, each adding (or, with del, changing) the A
// record of its own name h<i>.
func hosts(n int, data func(i int) string, del func(i int) string) []dns.SetEdit {
	edits := make([]dns.SetEdit, n)
	for i := range edits {
		name := fmt.Sprintf("h%d", i)
		edits[i].Add = []libdns.RR{{Name: name, Type: "A", Data: data(i), TTL: time.Hour}}
		if del != nil {
			edits[i].Del = []libdns.RR{{Name: name, Type: "A", Data: del(i), TTL: time.Hour}}
		}
	}
	return edits
}

func ip(i int) string  { return fmt.Sprintf("192.0.2.%d", i%250+1) }
func ip2(i int) string { return fmt.Sprintf("198.51.100.%d", i%250+1) }

// expect is the zone after edits applied to want.
func expect(want []libdns.RR, edits []dns.SetEdit, zone string) []libdns.RR {
	for _, e := range edits {
		want = dnstest.Expect(want, e.Del, e.Add, zone)
	}
	return want
}

// TestApplyZoneOneBatch: 200 changes of a zone are one request that
// changes records (one batch), for new records and for changed ones.
func TestApplyZoneOneBatch(t *testing.T) {
	t.Parallel()
	const zone = "example.org"
	emu := cfemu.New(t)
	emu.AddZone(zone)
	p := newProvider(t, emu, emu.Token)
	ctx := context.Background()

	add := hosts(200, ip, nil)
	emu.ResetCalls()
	if n, err := dns.ApplyZone(ctx, p, zone, add); err != nil || n != 200 {
		t.Fatalf("ApplyZone of 200 new records = %d, %v", n, err)
	}
	if n, w := emu.Count(batchCall), len(emu.Writes(zone)); n != 1 || w != 1 {
		t.Errorf("200 new records: %d batch requests, %d writes; want 1 and 1 (calls %v)", n, w, emu.Calls())
	}
	if n := emu.Total(); n > 2 {
		t.Errorf("200 new records took %d requests, want at most 2 (zone lookup, batch): %v", n, emu.Calls())
	}
	change := hosts(200, ip2, ip)
	emu.ResetCalls()
	if n, err := dns.ApplyZone(ctx, p, zone, change); err != nil || n != 200 {
		t.Fatalf("ApplyZone of 200 changed records = %d, %v", n, err)
	}
	if n, w := emu.Count(batchCall), len(emu.Writes(zone)); n != 1 || w != 2 {
		t.Errorf("200 changed records: %d batch requests, %d writes in all; want 1 and 2 (calls %v)", n, w, emu.Calls())
	}
	if n := emu.Total(); n > 2 {
		t.Errorf("200 changed records took %d requests, want at most 2 (listing, batch): %v", n, emu.Calls())
	}
	// Changed in place: the record ids stay.
	for _, w := range emu.Writes(zone)[1:] {
		if len(w.Records) != 200 {
			t.Errorf("after the change the zone holds %d records, want 200", len(w.Records))
		}
	}
	got, err := p.Records(ctx, zone)
	if err != nil {
		t.Fatal(err)
	}
	if d := dnstest.Diff(got, expect(expect(nil, add, zone), change, zone)); d != "" {
		t.Fatalf("zone after the batches differs (-got +want):\n%s", d)
	}
}

// TestApplyZoneFailingOpChangesNothing: one operation Cloudflare refuses
// (an A record where the dashboard made a CNAME) fails the whole batch:
// the zone is left as it was and the error says why.
func TestApplyZoneFailingOpChangesNothing(t *testing.T) {
	t.Parallel()
	const zone = "example.org"
	emu := cfemu.New(t)
	emu.AddZone(zone)
	emu.Seed(zone, cfemu.Record{Name: "h150", Type: "CNAME", Content: "elsewhere.example.net", TTL: 300})
	before := emu.Records(zone)
	p := newProvider(t, emu, emu.Token)
	n, err := dns.ApplyZone(context.Background(), p, zone, hosts(200, ip, nil))
	if err == nil || n != 0 {
		t.Fatalf("ApplyZone with a refused operation = %d, %v; want 0 and an error", n, err)
	}
	if !strings.Contains(err.Error(), "CNAME record with that host already exists") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q does not say on one line why the batch was refused", err)
	}
	if after := emu.Records(zone); len(after) != len(before) || after[0] != before[0] {
		t.Errorf("zone changed by a refused batch: %+v", after)
	}
	if w := emu.Writes(zone); len(w) != 0 {
		t.Errorf("refused batch logged %d writes", len(w))
	}
}

// TestApplyZoneSplitsBatches: more operations than a batch may hold (200
// on the Free plan) go in several batches of whole edits; when a later
// batch fails, the error counts the edits of those before it
// (dns.PartialError), and only those are in the zone.
func TestApplyZoneSplitsBatches(t *testing.T) {
	t.Parallel()
	const zone = "example.org"
	emu := cfemu.New(t)
	emu.AddZone(zone)
	p := newProvider(t, emu, emu.Token)
	ctx := context.Background()
	edits := hosts(250, ip, nil)
	// Each edit of two records: 100 edits (200 operations) per batch.
	for i := range edits {
		edits[i].Add = append(edits[i].Add, libdns.RR{Name: edits[i].Add[0].Name, Type: "A", Data: ip2(i), TTL: time.Hour})
	}
	emu.Seed(zone, cfemu.Record{Name: "h220", Type: "CNAME", Content: "elsewhere.example.net", TTL: 300})
	n, err := dns.ApplyZone(ctx, p, zone, edits)
	var pe *dns.PartialError
	if !errors.As(err, &pe) || n != 200 || pe.Applied != 200 {
		t.Fatalf("ApplyZone failing in its third batch = %d, %v; want 200 applied", n, err)
	}
	if c := emu.Count(batchCall); c != 3 {
		t.Errorf("%d batches sent, want 3 (200 + 200 + the refused one)", c)
	}
	if got := len(emu.Records(zone)); got != 401 {
		t.Errorf("zone holds %d records, want 400 of the first two batches and the CNAME", got)
	}
	// Once the conflict is gone, the remaining edits go in one batch.
	emu.ResetCalls()
	if n, err := dns.ApplyZone(ctx, p, zone, edits[200:]); err == nil || n != 0 {
		t.Fatalf("ApplyZone of the last 50 with the conflict still there = %d, %v", n, err)
	}
	if c := emu.Count(batchCall); c != 1 {
		t.Errorf("%d batches for 100 operations, want 1", c)
	}
}

// TestApplyZoneBatchAnswerLost: the batch is applied but its answer lost:
// the zone is read back, the batch not sent again, no record doubled.
func TestApplyZoneBatchAnswerLost(t *testing.T) {
	t.Parallel()
	for _, status := range []int{0, http.StatusBadGateway} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			const zone = "example.org"
			emu := cfemu.New(t)
			emu.AddZone(zone)
			p := newProvider(t, emu, emu.Token)
			emu.Inject(emulator.Fault{Pattern: batchCall, LoseAnswer: true, Status: status})
			if n, err := dns.ApplyZone(context.Background(), p, zone, hosts(20, ip, nil)); err != nil || n != 20 {
				t.Fatalf("ApplyZone with the batch's answer lost = %d, %v", n, err)
			}
			if got := len(emu.Records(zone)); got != 20 {
				t.Errorf("zone holds %d records, want 20 (none doubled)", got)
			}
			if c := emu.Count(batchCall); c != 1 {
				t.Errorf("batch sent %d times, want once", c)
			}
		})
	}
}
