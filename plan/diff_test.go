package plan_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/desired"
)

// TestDiffKeepValues: a set that owns only its TTL keeps the current
// values, creates nothing when there are none, is left alone on destroy,
// and says how long to wait before KeepUntil.
func TestDiffKeepValues(t *testing.T) {
	t.Parallel()
	google := []libdns.RR{
		{Name: "@", Type: "MX", Data: "1 aspmx.l.google.com.", TTL: time.Hour},
		{Name: "@", Type: "MX", Data: "5 alt1.aspmx.l.google.com.", TTL: time.Hour},
		{Name: "@", Type: "TXT", Data: "google-site-verification=x", TTL: time.Hour},
	}
	lowered := []libdns.RR{
		{Name: "@", Type: "MX", Data: "1 aspmx.l.google.com.", TTL: 5 * time.Minute},
		{Name: "@", Type: "MX", Data: "5 alt1.aspmx.l.google.com.", TTL: 5 * time.Minute},
	}
	want := desired.RRSet{Domain: "example.org", Provider: "provider.zonefile.z", Zone: "example.org", Name: "example.org",
		Type: "MX", TTL: 300, Values: []string{"10 mx1.example.org."}, KeepValues: true, KeepUntil: `phase = "cutover"`,
		Notes: []string{"kept"}}
	destroy := want
	destroy.Values = nil
	cases := []struct {
		name    string
		want    desired.RRSet
		current []libdns.RR
		action  plan.Action
		after   string // "ttl values..."
		note    string // the last note
	}{
		{"lower the TTL", want, google, plan.Update, "300 [1 aspmx.l.google.com. 5 alt1.aspmx.l.google.com.]",
			`wait 1h (the old MX TTL) after this apply before phase = "cutover"`},
		{"already lowered", want, lowered, plan.NoOp, "300 [1 aspmx.l.google.com. 5 alt1.aspmx.l.google.com.]",
			"the MX TTL is already 5m"},
		{"nothing to keep", want, nil, plan.NoOp, "<nil>", `there is no MX record to keep: none is created before phase = "cutover"`},
		{"destroy", destroy, google, plan.NoOp, "3600 [1 aspmx.l.google.com. 5 alt1.aspmx.l.google.com.]", "kept"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := plan.DiffDNS([]desired.RRSet{tc.want}, map[string][]libdns.RR{plan.ZoneKey("provider.zonefile.z", "example.org"): tc.current})
			if len(cs) != 1 {
				t.Fatalf("DiffDNS = %d changes, want 1", len(cs))
			}
			c := cs[0]
			after := "<nil>"
			if c.After != nil {
				after = fmt.Sprintf("%d %v", c.After.TTL, c.After.Values)
			}
			if c.Action != tc.action || after != tc.after {
				t.Errorf("DiffDNS = %q after %s, want %q after %s", c.Action, after, tc.action, tc.after)
			}
			if len(c.Notes) == 0 || c.Notes[0] != "kept" || !strings.HasPrefix(c.Notes[len(c.Notes)-1], tc.note) {
				t.Errorf("notes = %q, want [kept ... %q]", c.Notes, tc.note)
			}
			// Apply deletes and re-adds the same values with the new TTL.
			del, add := plan.DNSEdits(c)
			if c.Action == plan.Update && (len(del) != 2 || len(add) != 2 || add[0].TTL != 5*time.Minute) {
				t.Errorf("DNSEdits = -%v +%v, want the two MX re-added with TTL 300", del, add)
			}
		})
	}
}

func TestFormatTTL(t *testing.T) {
	t.Parallel()
	for ttl, want := range map[int]string{3600: "1h", 300: "5m", 90: "1m30s", 86400: "24h", 5400: "1h30m", 45: "45s"} {
		if got := plan.FormatTTL(ttl); got != want {
			t.Errorf("FormatTTL(%d) = %q, want %q", ttl, got, want)
		}
	}
}

// TestNotes: notes of unchanged resources are the plan's notes; those of
// changes stay with their change.
func TestNotes(t *testing.T) {
	t.Parallel()
	p := &plan.Plan{Changes: []plan.Change{
		{Address: "dns.example.org.MX", Action: plan.Update, Notes: []string{"shown with the change"}},
		{Address: "dns.example.org._dmarc.TXT", Notes: []string{"DMARC can be raised"}},
	}}
	if got := p.Notes(); len(got) != 1 || got[0] != "dns.example.org._dmarc.TXT: DMARC can be raised" {
		t.Errorf("Notes() = %q", got)
	}
}

func TestDiffServerReloadOrRestart(t *testing.T) {
	running := &plan.ServerState{Release: "1-abc", ConfigDigest: "aaaa", Running: true,
		RestartDigests: map[string]string{"listen": "l1", "limits": "m1"}}
	want := func(cfg string, listen string) plan.ServerState {
		return plan.ServerState{Release: "1-abc", ConfigDigest: cfg, Running: true,
			RestartDigests: map[string]string{"listen": listen, "limits": "m1"}}
	}
	notes := func(before *plan.ServerState, after plan.ServerState) string {
		c := plan.DiffServer("mx", before, after)[0]
		if c.Action != plan.Update && len(c.Notes) > 0 {
			t.Errorf("notes %q on a %v", c.Notes, c.Action)
		}
		return strings.Join(c.Notes, "; ")
	}
	if got := notes(running, want("bbbb", "l1")); got != "configuration: aaaa -> bbbb (reload)" {
		t.Errorf("users changed: %q", got)
	}
	if got := notes(running, want("bbbb", "l2")); got != "configuration: aaaa -> bbbb (restart: listen changed, a reload does not apply it)" {
		t.Errorf("listen changed: %q", got)
	}
	// Reloaded by hand with a new port: the file is current, the process is not.
	if got := notes(running, want("aaaa", "l2")); got != "the service still runs with its former listen (reloaded since): restart" {
		t.Errorf("pending restart: %q", got)
	}
	if got := notes(running, want("aaaa", "l1")); got != "" {
		t.Errorf("no change: %q", got)
	}
	// A server that does not report its settings: reload, as before.
	old := *running
	old.RestartDigests = nil
	if got := notes(&old, want("bbbb", "l2")); got != "configuration: aaaa -> bbbb (reload)" {
		t.Errorf("server without digests: %q", got)
	}
}
