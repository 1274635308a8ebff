package dns_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/providers/dns"
)

func rr(name, typ, data string, ttl int) libdns.RR {
	return libdns.RR{Name: name, Type: typ, Data: data, TTL: time.Duration(ttl) * time.Second}
}

func TestGroupRRsets(t *testing.T) {
	t.Parallel()
	raise := func(c libdns.RR) (libdns.RR, error) {
		if c.Type == "CNAME" && c.Name == "@" {
			return c, errors.New("no CNAME at the apex")
		}
		c.TTL = max(c.TTL, time.Minute)
		return c, nil
	}
	for _, tc := range []struct {
		name     string
		del, add []libdns.RR
		prepare  func(libdns.RR) (libdns.RR, error)
		want     []dns.RRset
		wantErr  string
	}{
		{
			name: "sets in order of first appearance, del first, canonical",
			del:  []libdns.RR{rr("Mail.Example.org.", "a", "192.0.2.1", 300), rr("@", "MX", "10 mx1.example.org.", 300)},
			add:  []libdns.RR{rr("@", "TXT", "v=spf1 -all", 300), rr("example.org.", "mx", "20 mx2", 600), rr("mail", "A", "192.0.2.2", 300)},
			want: []dns.RRset{
				{Name: "mail", Type: "A", Del: []libdns.RR{rr("mail", "A", "192.0.2.1", 300)}, Add: []libdns.RR{rr("mail", "A", "192.0.2.2", 300)}},
				{Name: "@", Type: "MX", Del: []libdns.RR{rr("@", "MX", "10 mx1.example.org.", 300)}, Add: []libdns.RR{rr("@", "MX", "20 mx2.example.org.", 600)}},
				{Name: "@", Type: "TXT", Add: []libdns.RR{rr("@", "TXT", "v=spf1 -all", 300)}},
			},
		},
		{
			name:    "prepare changes added records only",
			del:     []libdns.RR{rr("www", "A", "192.0.2.1", 30)},
			add:     []libdns.RR{rr("www", "A", "192.0.2.2", 30)},
			prepare: raise,
			want: []dns.RRset{
				{Name: "www", Type: "A", Del: []libdns.RR{rr("www", "A", "192.0.2.1", 30)}, Add: []libdns.RR{rr("www", "A", "192.0.2.2", 60)}},
			},
		},
		{
			name:    "prepare refuses",
			add:     []libdns.RR{rr("www", "A", "192.0.2.2", 300), rr("@", "CNAME", "other.example.net.", 300)},
			prepare: raise,
			wantErr: "no CNAME at the apex",
		},
		{name: "nothing", want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := dns.GroupRRsets("example.org", tc.del, tc.add, tc.prepare)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// stored is a provider's record: an id and a type of its own (OVH's SPF).
type stored struct {
	id, typ, data string
	ttl           int
}

func TestPairEdits(t *testing.T) {
	t.Parallel()
	asRR := func(s stored) libdns.RR { return rr("@", dns.TXTLike(s.typ), s.data, s.ttl) }
	// OVH's rule: a record stored as SPF only takes an SPF policy.
	fits := func(s stored, a libdns.RR) bool {
		return s.typ == a.Type || s.typ == "SPF" && strings.HasPrefix(a.Data, "v=spf1")
	}
	none := func(stored, libdns.RR) bool { return false }
	mx1, mx2, mx3 := stored{"1", "MX", "10 mx1.", 300}, stored{"2", "MX", "20 mx2.", 300}, stored{"3", "MX", "30 mx3.", 300}
	spf, site := stored{"4", "SPF", "v=spf1 mx -all", 300}, stored{"5", "TXT", "site-verification=x", 300}
	type E = dns.Edit[stored]
	for _, tc := range []struct {
		name string
		old  []stored
		add  []libdns.RR
		fits func(stored, libdns.RR) bool
		want dns.Edits[stored]
	}{
		{
			name: "TTL only: kept in place",
			old:  []stored{mx1, mx2},
			add:  []libdns.RR{rr("@", "MX", "20 mx2.", 60), rr("@", "MX", "10 mx1.", 60)},
			want: dns.Edits[stored]{Keep: []E{{mx2, rr("@", "MX", "20 mx2.", 60)}, {mx1, rr("@", "MX", "10 mx1.", 60)}}},
		},
		{
			name: "replaced: changed in place, in order",
			old:  []stored{mx1, mx2},
			add:  []libdns.RR{rr("@", "MX", "10 new1.", 300), rr("@", "MX", "20 new2.", 300)},
			want: dns.Edits[stored]{Change: []E{{mx1, rr("@", "MX", "10 new1.", 300)}, {mx2, rr("@", "MX", "20 new2.", 300)}}},
		},
		{
			name: "more added than old: the rest created",
			old:  []stored{mx1},
			add:  []libdns.RR{rr("@", "MX", "10 mx1.", 300), rr("@", "MX", "20 new2.", 300), rr("@", "MX", "30 new3.", 300)},
			want: dns.Edits[stored]{
				Keep:   []E{{mx1, rr("@", "MX", "10 mx1.", 300)}},
				Create: []libdns.RR{rr("@", "MX", "20 new2.", 300), rr("@", "MX", "30 new3.", 300)},
			},
		},
		{
			name: "fewer added than old: the rest deleted",
			old:  []stored{mx1, mx2, mx3},
			add:  []libdns.RR{rr("@", "MX", "30 mx3.", 300), rr("@", "MX", "5 new.", 300)},
			want: dns.Edits[stored]{
				Keep:   []E{{mx3, rr("@", "MX", "30 mx3.", 300)}},
				Change: []E{{mx1, rr("@", "MX", "5 new.", 300)}},
				Delete: []stored{mx2},
			},
		},
		{
			name: "emptied set: all deleted",
			old:  []stored{mx1, mx2},
			want: dns.Edits[stored]{Delete: []stored{mx1, mx2}},
		},
		{
			name: "fits: an SPF-typed record takes only an SPF policy",
			old:  []stored{spf, site},
			add:  []libdns.RR{rr("@", "TXT", "google-site-verification=y", 300), rr("@", "TXT", "v=spf1 a -all", 300)},
			fits: fits,
			want: dns.Edits[stored]{Change: []E{
				{site, rr("@", "TXT", "google-site-verification=y", 300)},
				{spf, rr("@", "TXT", "v=spf1 a -all", 300)},
			}},
		},
		{
			name: "fits refuses all: created, then the old deleted",
			old:  []stored{mx1},
			add:  []libdns.RR{rr("@", "MX", "10 new.", 300)},
			fits: none,
			want: dns.Edits[stored]{Create: []libdns.RR{rr("@", "MX", "10 new.", 300)}, Delete: []stored{mx1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old := append([]stored(nil), tc.old...)
			got := dns.PairEdits(old, tc.add, asRR, tc.fits)
			if !reflect.DeepEqual(old, tc.old) {
				t.Errorf("PairEdits changed its argument: %v", old)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
