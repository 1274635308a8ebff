package dnstest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
)

// SetChange is an RRset's change as a plan makes it: the set before and
// after, each a TTL and values.
type SetChange struct {
	Name, Rel, Type string
	// Prefix restricts the owned records to those whose data contains it
	// (the SPF record among the apex TXT).
	Prefix                  string
	BeforeTTL, AfterTTL     time.Duration
	BeforeValues, AfterVals []string
	// Other are records at the same name that must stay.
	Other []libdns.RR
	// InPlace is true when a provider that changes records in place
	// (Capabilities.InPlace) makes it with in-place calls only.
	InPlace bool
}

// Edits returns what apply sends for c: the records to delete and to add,
// as plan.DNSEdits makes them (a record whose data and TTL stay is left
// alone; a TTL change rewrites every record).
func (c SetChange) Edits() (del, add []libdns.RR) {
	same := c.BeforeTTL == c.AfterTTL
	for _, v := range c.BeforeValues {
		if !same || !slices.Contains(c.AfterVals, v) {
			del = append(del, libdns.RR{Name: c.Rel, Type: c.Type, TTL: c.BeforeTTL, Data: v})
		}
	}
	for _, v := range c.AfterVals {
		if !same || !slices.Contains(c.BeforeValues, v) {
			add = append(add, libdns.RR{Name: c.Rel, Type: c.Type, TTL: c.AfterTTL, Data: v})
		}
	}
	return del, add
}

func records(rel, typ string, ttl time.Duration, values []string) []libdns.RR {
	var out []libdns.RR
	for _, v := range values {
		out = append(out, libdns.RR{Name: rel, Type: typ, TTL: ttl, Data: v})
	}
	return out
}

// NeverEmptyChanges are the changes of a mail migration and of the usual
// edits of a mail domain, each of which must never leave its RRset empty
// (an empty MX set sends mail to the apex address, RFC 5321 section 5.1)
// nor fuller than before and after (two SPF records are a permerror, RFC
// 7208 section 4.5; two CNAMEs are refused) at any moment a name server
// could serve.
func NeverEmptyChanges() []SetChange {
	google := []string{"1 aspmx.l.google.com.", "5 alt1.aspmx.l.google.com.", "5 alt2.aspmx.l.google.com.", "10 alt3.aspmx.l.google.com.", "10 alt4.aspmx.l.google.com."}
	return []SetChange{
		{Name: "presync: MX TTL lowered", Rel: "@", Type: "MX", BeforeTTL: h, AfterTTL: 5 * time.Minute,
			BeforeValues: google, AfterVals: google, InPlace: true},
		{Name: "cutover: Google's five MX replaced by one", Rel: "@", Type: "MX", BeforeTTL: 5 * time.Minute, AfterTTL: 5 * time.Minute,
			BeforeValues: google, AfterVals: []string{"10 mx1.example.org."}},
		{Name: "cutover: smtp.google.com replaced", Rel: "@", Type: "MX", BeforeTTL: 5 * time.Minute, AfterTTL: 5 * time.Minute,
			BeforeValues: []string{"1 smtp.google.com."}, AfterVals: []string{"10 mx1.example.org."}, InPlace: true},
		{Name: "MX added with a TTL change", Rel: "@", Type: "MX", BeforeTTL: h, AfterTTL: 5 * time.Minute,
			BeforeValues: []string{"10 mx1.example.org."}, AfterVals: []string{"10 mx1.example.org.", "20 mx2.example.org."}},
		{Name: "SPF include dropped", Rel: "@", Type: "TXT", Prefix: "v=spf1", BeforeTTL: h, AfterTTL: h,
			BeforeValues: []string{"v=spf1 ip4:203.0.113.10 include:_spf.google.com ~all"},
			AfterVals:    []string{"v=spf1 ip4:203.0.113.10 ~all"},
			Other:        []libdns.RR{{Name: "@", Type: "TXT", Data: "google-site-verification=abc", TTL: h}}, InPlace: true},
		{Name: "CNAME retargeted", Rel: "mta-sts", Type: "CNAME", BeforeTTL: h, AfterTTL: 5 * time.Minute,
			BeforeValues: []string{"mta-sts.old.example.net."}, AfterVals: []string{"mx1.example.org."}, InPlace: true},
		{Name: "SRV retargeted", Rel: "_imaps._tcp", Type: "SRV", BeforeTTL: h, AfterTTL: h,
			BeforeValues: []string{"0 1 993 imap.old.example.net."}, AfterVals: []string{"0 1 993 mx1.example.org."}, InPlace: true},
		{Name: "long DKIM key replaced", Rel: "mx1._domainkey", Type: "TXT", BeforeTTL: h, AfterTTL: h,
			BeforeValues: []string{LongDKIM}, AfterVals: []string{"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, InPlace: true},
	}
}

// Write is what a zone held after one call that changed it, as an
// emulator records it: Call names the call ("PATCH /zones/..."); Records
// hold at least the name (relative to the zone), type and data of each.
type Write struct {
	Call    string
	Records []libdns.RR
}

// Observed is a provider for RunNeverEmpties and how to see its writes:
// Writes returns every write to zone so far, in order; nil means each
// Apply is one atomic write, seen by reading the zone after it.
// InPlaceCall is the prefix of the calls that change a record in place
// ("PATCH ", "PUT "), "" when the provider has none.
type Observed struct {
	Provider    dns.Provider
	Zone        string
	Writes      func() []Write
	InPlaceCall string
}

// RunNeverEmpties applies each of NeverEmptyChanges as apply does, to a
// fresh provider from newProvider seeded with the set's before records
// and the others, and checks every state a name server could have served
// meanwhile, then the final records.
func RunNeverEmpties(t *testing.T, newProvider func(t *testing.T) Observed) {
	t.Helper()
	for _, c := range NeverEmptyChanges() {
		t.Run(c.Name, func(t *testing.T) {
			o := newProvider(t)
			p, zone := o.Provider, o.Zone
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			initial, err := p.Records(ctx, zone) // a name server's glue, say
			if err != nil {
				t.Fatal(err)
			}
			other := append(slices.Clone(initial), c.Other...)
			seed := append(records(c.Rel, c.Type, c.BeforeTTL, c.BeforeValues), c.Other...)
			if err := p.Apply(ctx, zone, nil, seed); err != nil {
				t.Fatalf("seed: %v", err)
			}
			start := 0
			if o.Writes != nil {
				start = len(o.Writes())
			}
			del, add := c.Edits()
			if err := p.Apply(ctx, zone, del, add); err != nil {
				t.Fatalf("Apply(del %v, add %v) = %v", del, add, err)
			}
			got, err := p.Records(ctx, zone)
			if err != nil {
				t.Fatal(err)
			}
			writes := []Write{{Call: "Apply", Records: got}}
			if o.Writes != nil {
				writes = o.Writes()[start:]
			}
			rel := dns.RelativeName(dns.AbsoluteName(c.Rel, zone), zone)
			owned := func(recs []libdns.RR) int {
				n := 0
				for _, r := range recs {
					if strings.EqualFold(r.Name, rel) && r.Type == c.Type && strings.Contains(r.Data, c.Prefix) {
						n++
					}
				}
				return n
			}
			most := max(len(c.BeforeValues), len(c.AfterVals))
			if len(writes) == 0 {
				t.Fatal("Apply made no change")
			}
			for i, w := range writes {
				if n := owned(w.Records); n == 0 || n > most {
					t.Errorf("after call %d (%s) the %s %s set holds %d records, want 1 to %d", i, w.Call, rel, c.Type, n, most)
				}
				if c.InPlace && o.InPlaceCall != "" && !strings.HasPrefix(w.Call, o.InPlaceCall) {
					t.Errorf("call %d is %s, want only %s(changes in place)", i, w.Call, o.InPlaceCall)
				}
				if n := len(w.Records) - owned(w.Records); n != len(other) {
					t.Errorf("after call %d (%s) %d other records, want %d", i, w.Call, n, len(other))
				}
			}
			want := Expect(nil, nil, append(records(c.Rel, c.Type, c.AfterTTL, c.AfterVals), other...), zone)
			if d := Diff(got, want); d != "" {
				t.Errorf("Records after Apply differs (-got +want):\n%s", d)
			}
		})
	}
}
