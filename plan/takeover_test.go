package plan

import (
	"slices"
	"testing"
)

func TestFindMXTakeovers(t *testing.T) {
	mx := func(domain string, action Action, before, after []string) Change {
		c := Change{Address: "dns." + domain + ".MX", Domain: domain, Name: "@", RRType: "MX", Action: action}
		if before != nil {
			c.Before = &RRSet{TTL: 3600, Values: before}
		}
		if after != nil {
			c.After = &RRSet{TTL: 3600, Values: after}
		}
		return c
	}
	ours := []string{"mx1.example.org"}
	changes := []Change{
		mx("google.test", Update, []string{"1 smtp.google.com."}, []string{"10 mx1.example.org."}),
		mx("ms.test", Replace, []string{"0 ms-test.mail.protection.outlook.com."}, []string{"10 mx1.example.org."}),
		mx("other.test", Update, []string{"10 mx.other-host.net.", "10 mx1.example.org."}, []string{"10 mx1.example.org."}),
		mx("ours.test", Update, []string{"20 MX1.example.org."}, []string{"10 mx1.example.org."}),
		mx("new.test", Create, nil, []string{"10 mx1.example.org."}),
		mx("null.test", Update, []string{"0 ."}, []string{"10 mx1.example.org."}),
		mx("migrated.test", Update, []string{"1 smtp.google.com."}, []string{"10 mx1.example.org."}),
		mx("same.test", NoOp, []string{"1 smtp.google.com."}, []string{"1 smtp.google.com."}),
		{Address: "dns.sub.test.www.MX", Domain: "sub.test", Name: "www", RRType: "MX", Action: Update,
			Before: &RRSet{Values: []string{"1 smtp.google.com."}}, After: &RRSet{Values: []string{"10 mx1.example.org."}}},
	}
	got := FindMXTakeovers(changes, ours, func(d string) bool { return d == "migrated.test" })
	want := map[string]string{"google.test": "Google Workspace", "ms.test": "Microsoft 365", "other.test": ""}
	if len(got) != len(want) {
		t.Fatalf("takeovers = %+v, want %v", got, want)
	}
	for _, tk := range got {
		svc, ok := want[tk.Domain]
		if !ok || tk.Service != svc || !slices.Equal(tk.After, []string{"mx1.example.org"}) {
			t.Errorf("takeover %+v, want service %q", tk, svc)
		}
	}
	if got[2].Domain == "other.test" && !slices.Equal(got[2].Current, []string{"mx.other-host.net"}) {
		t.Errorf("other.test current = %q, want only the foreign host", got[2].Current)
	}
}
