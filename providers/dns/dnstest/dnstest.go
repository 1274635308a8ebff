// Package dnstest is the shared test suite every DNS provider adapter must
// pass (STYLE.md rule 10): it creates, updates and deletes records through
// the dns.Provider interface and checks after every step that reading the
// zone again gives exactly the expected set, including TXT records longer
// than one RFC 1035 character-string (DKIM keys, RFC 6376) and SRV records
// (RFC 2782).
package dnstest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
)

// NewFunc returns a provider and an empty zone it holds. It is called once
// per subtest.
type NewFunc func(t *testing.T) (dns.Provider, string)

// Step is one Apply of a scenario.
type Step struct {
	Del, Add []libdns.RR
}

// Scenario is a named list of steps applied in order.
type Scenario struct {
	Name  string
	Steps []Step
}

const h = time.Hour

// LongDKIM is an RSA-2048 DKIM key record (RFC 6376 section 3.6.1), longer
// than 255 bytes.
const LongDKIM = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwUX1bNCI1lJ1OQOHrRLmYjx7ZBxTQc3JnA0UPCSq8YmD4x9c5CRY6b3r0y6mUeoOPrQJFdZmZ7oRsVHO4tCLP3S3B5Ee9aU0FSWmGyJbNnQX5v4qc+cJK3A9Qm4TB2qQ5WQmZUqWv2lB3ykqG8Yt9D7UrS0cI3o3hTqvYjCkJtq0gKXGZf1yFQ5sU2Y1yWzJXsR5Hx8m7QO8mG2hUqG1n2dY0cWWZ3Hk1vT6xU8vB2jRm+7uQ0N4Q1K9s4uP1Gg4aL7J0N3kE6V5t9wZrT2b9cO8yM8WbVd1L4oYQ7v3Q2XfH0e2l1G2w0j5CwP+4m3r1qS7xN9L4ZyP3kG2c5F7tW0IDAQAB"

func rr(name, typ, data string, ttl time.Duration) libdns.RR {
	return libdns.RR{Name: name, Type: typ, Data: data, TTL: ttl}
}

// Scenarios returns the suite's scenarios for zone.
func Scenarios(zone string) []Scenario {
	mx1 := "mx1." + zone + "."
	mx2 := "mx2." + zone + "."
	aOld := rr("mx1", "A", "192.0.2.10", h)
	aNew := rr("mx1", "A", "192.0.2.10", 5*time.Minute)
	spf := rr("@", "TXT", "v=spf1 mx ~all", h)
	spf2 := rr("@", "TXT", "v=spf1 mx include:_spf.example.net -all", h)
	verify := rr("@", "TXT", "google-site-verification=abc123", h)
	apexA := rr("@", "A", "192.0.2.80", h)
	mxA := rr("@", "MX", "10 "+mx1, h)
	mxB := rr("@", "MX", "20 "+mx2, h)
	mxC := rr("@", "MX", "30 "+mx2, h)
	dkim := rr("mx1-2026._domainkey", "TXT", LongDKIM, h)
	dkimShort := rr("mx1-2026._domainkey", "TXT", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", 5*time.Minute)
	subs := rr("_submissions._tcp", "SRV", "0 1 465 "+mx1, h)
	subs2 := rr("_submissions._tcp", "SRV", "10 1 465 "+mx2, h)
	imaps := rr("_imaps._tcp", "SRV", "0 1 993 "+mx1, h)
	return []Scenario{
		{"create", []Step{{Add: []libdns.RR{aOld}}}},
		{"update TTL", []Step{
			{Add: []libdns.RR{aOld}},
			{Del: []libdns.RR{aOld}, Add: []libdns.RR{aNew}},
		}},
		{"multi-value MX", []Step{
			{Add: []libdns.RR{mxA, mxB}},
			{Del: []libdns.RR{mxB}, Add: []libdns.RR{mxC}},
		}},
		{"long DKIM TXT", []Step{
			{Add: []libdns.RR{dkim}},
		}},
		{"long DKIM TXT replaced", []Step{
			{Add: []libdns.RR{dkim}},
			{Del: []libdns.RR{dkim}, Add: []libdns.RR{dkimShort}},
		}},
		{"SRV", []Step{
			{Add: []libdns.RR{subs, subs2}},
			{Add: []libdns.RR{imaps}},
			{Del: []libdns.RR{subs2}},
		}},
		{"delete", []Step{
			{Add: []libdns.RR{aOld}},
			{Add: []libdns.RR{mxA, mxB}},
			{Del: []libdns.RR{aOld}},
			{Del: []libdns.RR{mxA, mxB}},
		}},
		{"foreign records untouched", []Step{
			{Add: []libdns.RR{verify}},
			{Add: []libdns.RR{apexA}},
			{Add: []libdns.RR{spf}},
			{Add: []libdns.RR{mxA}},
			{Del: []libdns.RR{spf}, Add: []libdns.RR{spf2}},
			{Del: []libdns.RR{spf2}},
			{Del: []libdns.RR{mxA}},
		}},
	}
}

// Zones is how many times Run calls its NewFunc, for tests that prepare
// zones up front.
func Zones() int { return len(Scenarios("x")) + 3 + len(NeverEmptyChanges()) }

// ZoneSteps are the steps of the whole-zone check: each is one
// dns.ApplyZone of the edits of several RRsets, as apply makes them for a
// new domain, then for a change of several sets.
func ZoneSteps(zone string) [][]dns.SetEdit {
	mx1 := "mx1." + zone + "."
	mx2 := "mx2." + zone + "."
	a := rr("mx1", "A", "192.0.2.10", h)
	mx := rr("@", "MX", "10 "+mx1, h)
	spf := rr("@", "TXT", "v=spf1 mx ~all", h)
	dkim := rr("mx1-2026._domainkey", "TXT", LongDKIM, h)
	dmarc := rr("_dmarc", "TXT", "v=DMARC1; p=none", h)
	subs := rr("_submissions._tcp", "SRV", "0 1 465 "+mx1, h)
	return [][]dns.SetEdit{
		{{Add: []libdns.RR{a}}, {Add: []libdns.RR{mx}}, {Add: []libdns.RR{spf}}, {Add: []libdns.RR{dkim}}, {Add: []libdns.RR{dmarc}}, {Add: []libdns.RR{subs}}},
		{
			{Del: []libdns.RR{a}, Add: []libdns.RR{rr("mx1", "A", "192.0.2.10", 5*time.Minute)}},
			{Del: []libdns.RR{mx}, Add: []libdns.RR{rr("@", "MX", "20 "+mx2, h)}},
			{Del: []libdns.RR{dmarc}, Add: []libdns.RR{rr("_dmarc", "TXT", "v=DMARC1; p=quarantine", h)}},
			{Del: []libdns.RR{subs}},
		},
	}
}

// RunZone applies ZoneSteps to zone, each step in one dns.ApplyZone, and
// checks the zone after each.
func RunZone(t *testing.T, p dns.Provider, zone string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want, err := p.Records(ctx, zone)
	if err != nil {
		t.Fatalf("Records(%q) before: %v", zone, err)
	}
	for i, edits := range ZoneSteps(zone) {
		n, err := dns.ApplyZone(ctx, p, zone, edits)
		if err != nil || n != len(edits) {
			t.Fatalf("step %d: ApplyZone of %d sets = %d, %v", i, len(edits), n, err)
		}
		for _, e := range edits {
			want = Expect(want, e.Del, e.Add, zone)
		}
		got, err := p.Records(ctx, zone)
		if err != nil {
			t.Fatalf("step %d: Records(%q) = %v", i, zone, err)
		}
		if diff := Diff(got, want); diff != "" {
			t.Fatalf("step %d: Records(%q) after ApplyZone differs (-got +want):\n%s", i, zone, diff)
		}
	}
}

// Run runs every scenario in a subtest with a fresh provider and zone, then
// the never-empties, whole-zone and concurrency checks, and checks Zones
// for providers that list zones.
func Run(t *testing.T, newProvider NewFunc) {
	t.Helper()
	for _, sc := range Scenarios("placeholder.invalid") {
		t.Run(sc.Name, func(t *testing.T) {
			p, zone := newProvider(t)
			RunScenario(t, p, zone, sc.Name)
		})
	}
	// Seen only before and after each Apply here; adapters whose Apply
	// makes several API calls also run RunNeverEmpties on an emulator's
	// record of each call.
	t.Run("never empties", func(t *testing.T) {
		RunNeverEmpties(t, func(t *testing.T) Observed {
			p, zone := newProvider(t)
			return Observed{Provider: p, Zone: zone}
		})
	})
	t.Run("whole zone at once", func(t *testing.T) {
		p, zone := newProvider(t)
		RunZone(t, p, zone)
	})
	t.Run("concurrent applies", func(t *testing.T) {
		p, zone := newProvider(t)
		RunConcurrent(t, p, zone)
	})
	t.Run("zones", func(t *testing.T) {
		p, zone := newProvider(t)
		z, ok := p.(dns.Zoner)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := p.Records(ctx, zone); err != nil {
			t.Fatal(err)
		}
		// zonefile lists zones that have a file: write one record.
		a := rr("zones-check", "A", "192.0.2.99", h)
		if err := p.Apply(ctx, zone, nil, []libdns.RR{a}); err != nil {
			t.Fatal(err)
		}
		zones, err := z.Zones(ctx)
		if err != nil {
			t.Fatalf("Zones() = %v", err)
		}
		if dns.FindZone("mail."+zone, zones) == "" {
			t.Fatalf("Zones() = %v, want %q among them", zones, zone)
		}
	})
}

// RunConcurrent applies changes to eight RRsets of zone at once, as the
// engine does with -parallelism, and checks the result.
func RunConcurrent(t *testing.T, p dns.Provider, zone string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before, err := p.Records(ctx, zone)
	if err != nil {
		t.Fatal(err)
	}
	var add []libdns.RR
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		r := rr(fmt.Sprintf("host%d", i), "A", fmt.Sprintf("192.0.2.%d", 100+i), h)
		add = append(add, r)
		go func() { errs <- p.Apply(ctx, zone, nil, []libdns.RR{r}) }()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Apply = %v", err)
		}
	}
	got, err := p.Records(ctx, zone)
	if err != nil {
		t.Fatal(err)
	}
	if diff := Diff(got, Expect(before, nil, add, zone)); diff != "" {
		t.Fatalf("after concurrent applies Records differs (-got +want):\n%s", diff)
	}
}

// RunScenario applies the named scenario's steps to zone and checks the zone
// after each step; it returns the final records.
func RunScenario(t *testing.T, p dns.Provider, zone, name string) []libdns.RR {
	t.Helper()
	var sc Scenario
	for _, s := range Scenarios(zone) {
		if s.Name == name {
			sc = s
		}
	}
	if sc.Name == "" {
		t.Fatalf("unknown scenario %q", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want, err := p.Records(ctx, zone)
	if err != nil {
		t.Fatalf("Records(%q) before: %v", zone, err)
	}
	var got []libdns.RR
	for i, st := range sc.Steps {
		if err := p.Apply(ctx, zone, st.Del, st.Add); err != nil {
			t.Fatalf("step %d: Apply(del %v, add %v) = %v", i, st.Del, st.Add, err)
		}
		want = Expect(want, st.Del, st.Add, zone)
		got, err = p.Records(ctx, zone)
		if err != nil {
			t.Fatalf("step %d: Records(%q) = %v", i, zone, err)
		}
		if diff := Diff(got, want); diff != "" {
			t.Fatalf("step %d: Records(%q) after Apply(del %v, add %v) differs (-got +want):\n%s", i, zone, st.Del, st.Add, diff)
		}
	}
	return got
}

// Expect returns the records of cur after deleting del and adding add, all
// canonical.
func Expect(cur, del, add []libdns.RR, zone string) []libdns.RR {
	drop := map[dns.Key]bool{}
	for _, r := range del {
		drop[dns.KeyOf(dns.Canonical(r, zone))] = true
	}
	var out []libdns.RR
	for _, r := range cur {
		if !drop[dns.KeyOf(dns.Canonical(r, zone))] {
			out = append(out, dns.Canonical(r, zone))
		}
	}
	for _, r := range add {
		out = append(out, dns.Canonical(r, zone))
	}
	dns.Sort(out)
	return out
}

// Diff compares two record sets (name, type, data and TTL) and returns a
// readable difference, "" when equal.
func Diff(got, want []libdns.RR) string {
	count := map[string]int{}
	for _, r := range got {
		count[line(r)]++
	}
	for _, r := range want {
		count[line(r)]--
	}
	var b strings.Builder
	for _, r := range got {
		if l := line(r); count[l] > 0 {
			fmt.Fprintf(&b, "- %s\n", l)
			count[l]--
		}
	}
	for _, r := range want {
		if l := line(r); count[l] < 0 {
			fmt.Fprintf(&b, "+ %s\n", l)
			count[l]++
		}
	}
	return b.String()
}

func line(r libdns.RR) string {
	return fmt.Sprintf("%s %d %s %q", r.Name, int(r.TTL.Seconds()), r.Type, r.Data)
}
