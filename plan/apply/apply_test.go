package apply_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/providers/dns"
	"github.com/mailctl/mailctl/providers/dns/dnstest"
	_ "github.com/mailctl/mailctl/providers/dns/zonefile"
)

// slowProvider takes delay for each Apply.
type slowProvider struct{ delay time.Duration }

func (p slowProvider) Records(context.Context, string) ([]libdns.RR, error) { return nil, nil }
func (p slowProvider) Apply(ctx context.Context, _ string, _, _ []libdns.RR) error {
	select {
	case <-time.After(p.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStillApplying: a change that takes long prints Terraform's "Still
// creating... [Ns elapsed]" while it runs.
func TestStillApplying(t *testing.T) {
	t.Parallel()
	p := &plan.Plan{Changes: []plan.Change{{
		Address: "dns.example.org._dmarc.TXT", Type: "dns_rrset", Action: plan.Create, Provider: "provider.x.y",
		Zone: "example.org", Name: "_dmarc", RRType: "TXT", After: &plan.RRSet{TTL: 3600, Values: []string{"v=DMARC1; p=none"}},
	}}}
	var out syncBuffer
	res, err := apply.DNS(context.Background(), p, map[string]dns.Provider{"provider.x.y": slowProvider{300 * time.Millisecond}},
		apply.Options{Progress: &out, StillEvery: 50 * time.Millisecond})
	if err != nil || res.Added != 1 {
		t.Fatalf("DNS = %+v, %v", res, err)
	}
	if !regexp.MustCompile(`(?m)^dns\.example\.org\._dmarc\.TXT: Still creating\.\.\. \[\d+s elapsed\]$`).MatchString(out.String()) {
		t.Errorf("no progress line for a slow change:\n%s", out.String())
	}
}

// create is a plan change creating the RRset name/typ of zone.
func create(zone, name, typ string, values ...string) plan.Change {
	addr := "dns." + zone + "." + name + "." + typ
	return plan.Change{Address: addr, Type: "dns_rrset", Action: plan.Create, Provider: "provider.zonefile.z",
		Zone: zone, Domain: zone, Name: name, RRType: typ, After: &plan.RRSet{TTL: 3600, Values: values}}
}

// TestApplyOneWritePerZone: the RRsets of a zone are applied in one
// provider call: a zone file is written, its serial bumped and its reload
// command run once per zone, not once per RRset (which ran the reload 11
// times for a new domain and used up the YYYYMMDDnn serials of a day in
// about seven applies). A zone whose write fails leaves all of its
// changes not applied and the other zones applied.
func TestApplyOneWritePerZone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "reloads")
	prov, err := dns.New("zonefile", dns.Config{Attrs: map[string]string{
		"dir": dir, "reload_command": `echo "$MAILCTL_ZONE" >> ` + log,
	}})
	if err != nil {
		t.Fatal(err)
	}
	var changes []plan.Change
	for _, zone := range []string{"a.example", "b.example"} {
		changes = append(changes,
			create(zone, "@", "MX", "10 mx1.a.example."),
			create(zone, "@", "TXT", "v=spf1 mx ~all"),
			create(zone, "_dmarc", "TXT", "v=DMARC1; p=none"),
			create(zone, "_imaps._tcp", "SRV", "0 1 993 mx1.a.example."),
			create(zone, "_submissions._tcp", "SRV", "0 1 465 mx1.a.example."),
			create(zone, "autoconfig", "CNAME", "mx1.a.example."),
		)
	}
	bad := create("c.example", "www", "A", "192.0.2.1")
	changes = append(changes, create("c.example", "@", "TXT", "fine"), bad)
	changes[len(changes)-1].After.Values = []string{"not an address"}
	var out syncBuffer
	res, err := apply.DNS(context.Background(), &plan.Plan{Changes: changes},
		map[string]dns.Provider{"provider.zonefile.z": prov}, apply.Options{Progress: &out, Parallelism: 1})
	if err == nil || !strings.Contains(err.Error(), "apply 2 changes in zone c.example") {
		t.Errorf("DNS error = %v, want the failed zone c.example", err)
	}
	if res.Added != 12 || len(res.NotApplied) != 2 {
		t.Errorf("DNS = %+v, want 12 added and c.example's 2 changes not applied", res)
	}
	reloads, _ := os.ReadFile(log)
	if got := string(reloads); got != "a.example\nb.example\n" {
		t.Errorf("reload command ran for %q, want once per zone written", got)
	}
	serial := time.Now().UTC().Format("20060102") + "00"
	for _, zone := range []string{"a.example", "b.example"} {
		b, err := os.ReadFile(filepath.Join(dir, zone+".zone"))
		if err != nil || !strings.Contains(string(b), " "+serial+" ") || strings.Count(string(b), "\n") != 10 {
			t.Errorf("%s.zone (%v) =\n%s\nwant serial %s (one write) and the 6 sets", zone, err, b, serial)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "c.example.zone")); err == nil {
		t.Error("c.example.zone was written although one of its changes failed")
	}
	for _, c := range changes[:12] {
		if !strings.Contains(out.String(), c.Address+": "+c.Action.Verb()+" complete") {
			t.Errorf("no completion line for %s:\n%s", c.Address, out.String())
		}
	}
}

// TestNeverEmptyEditsAreApplys: the shared never-empties check of every
// DNS provider (dnstest) sends what apply sends for its changes.
func TestNeverEmptyEditsAreApplys(t *testing.T) {
	t.Parallel()
	for _, c := range dnstest.NeverEmptyChanges() {
		ch := plan.Change{Zone: "example.org", Name: c.Rel, RRType: c.Type,
			Before: &plan.RRSet{TTL: int(c.BeforeTTL.Seconds()), Values: c.BeforeValues},
			After:  &plan.RRSet{TTL: int(c.AfterTTL.Seconds()), Values: c.AfterVals}}
		wdel, wadd := plan.DNSEdits(ch)
		del, add := c.Edits()
		if !reflect.DeepEqual(del, wdel) || !reflect.DeepEqual(add, wadd) {
			t.Errorf("%s: dnstest edits del %v add %v, apply sends del %v add %v", c.Name, del, add, wdel, wadd)
		}
	}
}
