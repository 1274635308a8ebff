package testenv_test

import (
	"context"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
)

func TestStartKnot(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org", "example.net.")
	for _, zone := range []string{"example.org", "example.net"} {
		ans := k.Query(t, zone, mdns.TypeSOA)
		if len(ans) != 1 || ans[0].Header().Rrtype != mdns.TypeSOA {
			t.Fatalf("SOA %s = %v, want one SOA", zone, ans)
		}
	}
	// A signed transfer with the returned key succeeds.
	m := new(mdns.Msg)
	m.SetAxfr("example.org.")
	m.SetTsig(k.TSIGName, mdns.Fqdn(k.TSIGAlg), 300, 0)
	tr := &mdns.Transfer{TsigSecret: map[string]string{k.TSIGName: k.TSIGSecret}}
	ch, err := tr.In(m, k.Addr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("AXFR: %v", env.Error)
		}
		n += len(env.RR)
	}
	if n != 4 {
		t.Fatalf("AXFR returned %d records, want SOA NS A SOA", n)
	}
}

// TestKnotSecondary: the secondary serves the primary's zone, lags after
// an update at the primary until Refresh, and is listed in the zone's NS.
func TestKnotSecondary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := testenv.StartKnot(t, "example.org")
	sec := testenv.StartKnotSecondary(t, primary, "example.org")
	if sec.Addr == primary.Addr {
		t.Fatalf("secondary listens on the primary's address %s", sec.Addr)
	}

	var ns []string
	for _, rr := range sec.Query(t, "example.org", mdns.TypeNS) {
		ns = append(ns, rr.(*mdns.NS).Ns)
	}
	slices.Sort(ns)
	if want := []string{"ns1.example.org.", "ns2.example.org."}; !slices.Equal(ns, want) {
		t.Errorf("secondary NS example.org = %v, want %v", ns, want)
	}
	if got := sec.NSName("example.org."); got != "ns2.example.org" {
		t.Errorf("NSName = %q, want ns2.example.org", got)
	}
	before := primary.Serial(t, "example.org")
	if got := sec.Serial(t, "example.org"); got != before {
		t.Fatalf("secondary serial = %d, want the primary's %d", got, before)
	}

	mx, err := mdns.NewRR("example.org. 300 IN MX 10 mx1.example.org.")
	if err != nil {
		t.Fatal(err)
	}
	if err := primary.Update(ctx, "example.org", nil, []mdns.RR{mx}); err != nil {
		t.Fatal(err)
	}
	after := primary.Serial(t, "example.org")
	if after == before {
		t.Fatalf("the update did not change the primary's serial %d", after)
	}
	if got := primary.Query(t, "example.org", mdns.TypeMX); len(got) != 1 {
		t.Fatalf("primary MX = %v, want the new one", got)
	}
	// No NOTIFY, an hour's refresh: the secondary still serves the old zone.
	if got := sec.Query(t, "example.org", mdns.TypeMX); len(got) != 0 {
		t.Errorf("secondary MX before Refresh = %v, want none", got)
	}
	if got := sec.Serial(t, "example.org"); got != before {
		t.Errorf("secondary serial before Refresh = %d, want %d", got, before)
	}

	sec.Refresh(t, "example.org")
	if got := sec.Query(t, "example.org", mdns.TypeMX); len(got) != 1 || got[0].(*mdns.MX).Mx != "mx1.example.org." {
		t.Errorf("secondary MX after Refresh = %v, want the new one", got)
	}
	if got := sec.Serial(t, "example.org"); got != after {
		t.Errorf("secondary serial after Refresh = %d, want %d", got, after)
	}
}
