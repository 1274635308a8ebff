package zonefile_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
	"github.com/mailctl/mailctl/providers/dns/zonefile"
)

func TestSuite(t *testing.T) {
	t.Parallel()
	dnstest.Run(t, func(t *testing.T) (dns.Provider, string) {
		p, err := dns.New("zonefile", dns.Config{Attrs: map[string]string{"dir": t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		return p, "example.org"
	})
}

// TestFileParses checks the written file with miekg/dns's parser: SOA first,
// the long DKIM record split in 255-byte strings and joined back equal.
func TestFileParses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := &zonefile.Provider{Dir: dir, Now: func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }}
	got := dnstest.RunScenario(t, p, "example.org", "long DKIM TXT")
	if len(got) != 1 || got[0].Data != dnstest.LongDKIM {
		t.Fatalf("Records = %v, want the DKIM record", got)
	}
	data, err := os.ReadFile(filepath.Join(dir, "example.org.zone"))
	if err != nil {
		t.Fatal(err)
	}
	zp := mdns.NewZoneParser(strings.NewReader(string(data)), "example.org.", "")
	var rrs []mdns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("parse written file: %v\n%s", err, data)
	}
	if len(rrs) != 3 {
		t.Fatalf("file holds %d records, want SOA, NS, TXT:\n%s", len(rrs), data)
	}
	soa, ok := rrs[0].(*mdns.SOA)
	if !ok || soa.Serial != 2026112300 {
		t.Fatalf("first record = %v, want SOA with serial 2026112300", rrs[0])
	}
	txt, ok := rrs[2].(*mdns.TXT)
	if !ok {
		t.Fatalf("third record = %v, want TXT", rrs[2])
	}
	if len(txt.Txt) != 2 || len(txt.Txt[0]) != 255 || strings.Join(txt.Txt, "") != dnstest.LongDKIM {
		t.Fatalf("TXT strings = %q, want the key split at 255 bytes", txt.Txt)
	}
}

func TestSerialAndStableOutput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	marker := filepath.Join(dir, "reloaded")
	p := &zonefile.Provider{Dir: dir, Now: func() time.Time { return now },
		ReloadCommand: `echo "$MAILCTL_ZONE $MAILCTL_ZONE_FILE" >> ` + marker}
	add := []libdns.RR{
		{Name: "www", Type: "A", Data: "192.0.2.2", TTL: time.Hour},
		{Name: "@", Type: "MX", Data: "10 mx1.example.org.", TTL: time.Hour},
		{Name: "a.b", Type: "CNAME", Data: "www", TTL: time.Hour},
		{Name: "mx1", Type: "A", Data: "192.0.2.1", TTL: time.Hour},
	}
	if err := p.Apply(ctx, "example.org", nil, add); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(p.Path("example.org"))
	want := `; zone example.org, written by mailctl
$ORIGIN example.org.
@	3600	IN	SOA	ns1.example.org. hostmaster.example.org. 2026112300 3600 900 1209600 300
@	3600	IN	NS	ns1.example.org.
@	3600	IN	MX	10 mx1.example.org.
a.b	3600	IN	CNAME	www.example.org.
mx1	3600	IN	A	192.0.2.1
www	3600	IN	A	192.0.2.2
`
	if string(first) != want {
		t.Fatalf("zone file =\n%s\nwant\n%s", first, want)
	}
	// Same records in another order: same file but for the serial.
	if err := p.Apply(ctx, "example.org", add, []libdns.RR{add[3], add[2], add[1], add[0]}); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(p.Path("example.org"))
	if got := strings.Replace(string(second), "2026112301", "2026112300", 1); got != want {
		t.Fatalf("after re-apply zone file =\n%s\nwant serial 2026112301 and\n%s", second, want)
	}
	log, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("reload command did not run: %v", err)
	}
	if lines := strings.Split(strings.TrimSpace(string(log)), "\n"); len(lines) != 2 || lines[0] != "example.org "+p.Path("example.org") {
		t.Fatalf("reload command ran with %q, want twice with zone and file", log)
	}
	zones, err := p.Zones(ctx)
	if err != nil || len(zones) != 1 || zones[0] != "example.org" {
		t.Fatalf("Zones() = %v, %v, want [example.org]", zones, err)
	}
}

func TestReloadFailure(t *testing.T) {
	t.Parallel()
	p := &zonefile.Provider{Dir: t.TempDir(), ReloadCommand: "echo boom >&2; exit 3"}
	err := p.Apply(context.Background(), "example.org", nil, []libdns.RR{{Name: "www", Type: "A", Data: "192.0.2.2", TTL: time.Hour}})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Apply with failing reload = %v, want error with its output", err)
	}
}

func TestNextSerial(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ old, want uint32 }{
		{0, 2026112300},
		{1, 2026112300},
		{2026112300, 2026112301},
		{2026112399, 2026112400},
		{2030010100, 2030010101},
	} {
		if got := zonefile.NextSerial(tc.old, now); got != tc.want {
			t.Errorf("NextSerial(%d) = %d, want %d", tc.old, got, tc.want)
		}
	}
}

func TestMissingDirAttribute(t *testing.T) {
	t.Parallel()
	if _, err := dns.New("zonefile", dns.Config{Attrs: map[string]string{}}); err == nil || !strings.Contains(err.Error(), `"dir"`) {
		t.Fatalf("New without dir = %v, want error naming dir", err)
	}
}

// TestServedByKnot writes zone files into the directory a real Knot serves,
// reloads it with knotc through reload_command, and queries it.
func TestServedByKnot(t *testing.T) {
	t.Parallel()
	k := testenv.StartKnot(t, "example.org")
	p, err := dns.New("zonefile", dns.Config{Attrs: map[string]string{
		"dir":            k.Dir,
		"reload_command": "knotc -c " + k.Conf + ` zone-reload "$MAILCTL_ZONE"`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Apply(ctx, "example.org", nil, []libdns.RR{
		{Name: "mx1-2026._domainkey", Type: "TXT", Data: dnstest.LongDKIM, TTL: time.Hour},
		{Name: "@", Type: "MX", Data: "10 mx1.example.org.", TTL: time.Hour},
	}); err != nil {
		t.Fatal(err)
	}
	// zone-reload is asynchronous: poll.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ans := k.Query(t, "mx1-2026._domainkey.example.org", mdns.TypeTXT)
		if len(ans) == 1 {
			if got := strings.Join(ans[0].(*mdns.TXT).Txt, ""); got != dnstest.LongDKIM {
				t.Fatalf("Knot serves %q, want the DKIM key", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Knot does not serve the DKIM record 5s after reload: %v", ans)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ans := k.Query(t, "example.org", mdns.TypeMX); len(ans) != 1 || ans[0].(*mdns.MX).Mx != "mx1.example.org." {
		t.Fatalf("MX = %v", ans)
	}
	// The NS and glue StartKnot wrote are kept.
	if ans := k.Query(t, "ns1.example.org", mdns.TypeA); len(ans) != 1 {
		t.Fatalf("glue A = %v, want kept", ans)
	}
}
