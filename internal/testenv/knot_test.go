package testenv_test

import (
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
