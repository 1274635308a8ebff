package dkimrotate_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/dkimrotate"
)

const src = `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls { acme_email = "admin@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
  dkim {
    selector     = "mx1"
    rotate_every = "180d"
    grace_period = "7d"
  }
}
`

func load(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func keys(base, state string, created, retired time.Time) []desired.DKIMKey {
	var out []desired.DKIMKey
	for _, alg := range []string{"ed25519", "rsa"} {
		out = append(out, desired.DKIMKey{Domain: "example.org", Selector: base + "-" + alg, Record: "v=DKIM1; k=" + alg + "; p=" + base,
			State: state, Created: created, Retired: retired})
	}
	return out
}

// planFor runs dkimrotate.Plan on the desired records of cfg with ks.
func planFor(t *testing.T, cfg *config.Config, ks []desired.DKIMKey) ([]desired.RRSet, []plan.Change) {
	t.Helper()
	sets, changes, err := dkimrotate.Plan(cfg, ks, map[string]bool{"mx1": true}, now, desired.Records(cfg, ks))
	if err != nil {
		t.Fatal(err)
	}
	return sets, changes
}

func dkimSets(sets []desired.RRSet) map[string]desired.RRSet {
	m := map[string]desired.RRSet{}
	for _, s := range sets {
		if strings.Contains(s.Name, "._domainkey.") {
			m[strings.TrimSuffix(s.Name, "._domainkey.example.org")] = s
		}
	}
	return m
}

func TestPlanSteps(t *testing.T) {
	cfg := load(t, src)
	day := 24 * time.Hour

	t.Run("not due", func(t *testing.T) {
		sets, changes := planFor(t, cfg, keys("mx1", "signing", now.Add(-10*day), time.Time{}))
		if len(changes) != 0 {
			t.Fatalf("changes %+v", changes)
		}
		n := strings.Join(dkimSets(sets)["mx1-ed25519"].Notes, "\n")
		if !strings.Contains(n, "the next rotation is due on 2027-05-26") {
			t.Errorf("notes of the signing selector: %q", n)
		}
	})

	t.Run("rotate_every due", func(t *testing.T) {
		sets, changes := planFor(t, cfg, keys("mx1", "signing", now.Add(-200*day), time.Time{}))
		if len(changes) != 1 || changes[0].Address != "dkim.example.org" || changes[0].Action != plan.Update {
			t.Fatalf("changes %+v", changes)
		}
		got := changes[0].DKIM
		want := []plan.DKIMStep{{Action: "rotate", Selector: "mx1-20261207"}, {Action: "activate", Selector: "mx1-20261207", From: "mx1"}}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("steps %+v, want %+v", got, want)
		}
		m := dkimSets(sets)
		for _, s := range []string{"mx1-20261207-ed25519", "mx1-20261207-rsa"} {
			if r, ok := m[s]; !ok || !r.Unknown || r.Source != "server.mx1" {
				t.Errorf("record of %s: %+v (want known after apply, from server.mx1)", s, r)
			}
		}
		if !strings.Contains(strings.Join(changes[0].Notes, "\n"), "signing switches from mx1 to mx1-20261207") {
			t.Errorf("notes %q", changes[0].Notes)
		}
	})

	t.Run("pending", func(t *testing.T) {
		ks := append(keys("mx1", "signing", now.Add(-200*day), time.Time{}), keys("mx1-20261130", "pending", now, time.Time{})...)
		sets, changes := planFor(t, cfg, ks)
		if len(changes) != 1 || len(changes[0].DKIM) != 1 || changes[0].DKIM[0] != (plan.DKIMStep{Action: "activate", Selector: "mx1-20261130", From: "mx1"}) {
			t.Fatalf("changes %+v", changes)
		}
		r := dkimSets(sets)["mx1-20261130-rsa"]
		if len(r.Values) != 1 || !strings.Contains(strings.Join(r.Notes, ""), "signing switches to it after propagation") {
			t.Errorf("pending record %+v", r)
		}
	})

	t.Run("retired in grace", func(t *testing.T) {
		ks := append(keys("mx1-20261130", "signing", now.Add(-day), time.Time{}), keys("mx1", "retired", now.Add(-200*day), now.Add(-day))...)
		sets, changes := planFor(t, cfg, ks)
		if len(changes) != 0 {
			t.Fatalf("changes %+v", changes)
		}
		r := dkimSets(sets)["mx1-ed25519"]
		if len(r.Values) != 1 || !strings.Contains(strings.Join(r.Notes, ""), "deleted after the grace period, by the first apply from 2026-12-13 12:00 UTC") {
			t.Errorf("retired record %+v", r)
		}
	})

	t.Run("retired past grace", func(t *testing.T) {
		ks := append(keys("mx1-20261130", "signing", now.Add(-8*day), time.Time{}), keys("mx1", "retired", now.Add(-200*day), now.Add(-8*day))...)
		sets, changes := planFor(t, cfg, ks)
		if len(changes) != 1 || len(changes[0].DKIM) != 1 || changes[0].DKIM[0] != (plan.DKIMStep{Action: "remove", Selector: "mx1"}) {
			t.Fatalf("changes %+v", changes)
		}
		m := dkimSets(sets)
		for _, s := range []string{"mx1-ed25519", "mx1-rsa"} {
			if r := m[s]; len(r.Values) != 0 || r.Unknown {
				t.Errorf("record of %s is kept: %+v", s, r)
			}
		}
		if r := m["mx1-20261130-ed25519"]; len(r.Values) != 1 {
			t.Errorf("the signing record is not published: %+v", r)
		}
	})

	t.Run("server not read", func(t *testing.T) {
		_, changes, err := dkimrotate.Plan(cfg, keys("mx1", "signing", now.Add(-200*day), time.Time{}), map[string]bool{}, now, nil)
		if err != nil || len(changes) != 0 {
			t.Errorf("changes %+v, %v", changes, err)
		}
	})
}

func TestNextSelector(t *testing.T) {
	if s, _ := dkimrotate.NextSelector("mx1", now, []string{"mx1", "mx1-20261207"}); s != "mx1-20261207-2" {
		t.Errorf("NextSelector = %q", s)
	}
	if _, err := dkimrotate.NextSelector(strings.Repeat("a", 50), now, nil); err == nil {
		t.Errorf("a selector longer than a DNS label was accepted")
	}
}

type fakeServer struct{ calls []string }

func (f *fakeServer) DKIM(_ context.Context, action, domain, selector string) error {
	f.calls = append(f.calls, action+" "+domain+" "+selector)
	return nil
}

func TestActivateWaitsForEveryRecord(t *testing.T) {
	p := &plan.Plan{Changes: []plan.Change{
		{Address: "dkim.example.org", Type: plan.KindDKIM, Action: plan.Update, Domain: "example.org", Source: "server.mx1",
			DKIM: []plan.DKIMStep{{Action: "activate", Selector: "b", From: "a"}}},
		// Published by an earlier apply: a no-op now, still checked.
		{Address: "dns.example.org.b-ed25519._domainkey.TXT", Type: "dns_rrset", Domain: "example.org", RRType: "TXT", After: &plan.RRSet{Values: []string{"x"}}},
		{Address: "dns.example.org.b-rsa._domainkey.TXT", Type: "dns_rrset", Action: plan.Create, Domain: "example.org", RRType: "TXT", After: &plan.RRSet{Values: []string{"y"}}},
	}}
	srv := &fakeServer{}
	servers := map[string]dkimrotate.Server{"mx1": srv}
	var waited []plan.Change
	err := dkimrotate.Activate(context.Background(), p, servers, func(_ context.Context, cs []plan.Change) error {
		waited = cs
		return errors.New("timeout")
	}, io.Discard)
	if err == nil || len(srv.calls) != 0 {
		t.Fatalf("a failed wait still switched: %v, %v", err, srv.calls)
	}
	if len(waited) != 2 || waited[0].Action == plan.NoOp || waited[1].Action == plan.NoOp {
		t.Errorf("waited for %+v, want both records, as changes", waited)
	}
	if err := dkimrotate.Activate(context.Background(), p, servers, nil, io.Discard); err != nil || len(srv.calls) != 0 {
		t.Errorf("without a wait (-wait=0): %v, %v; want the switch deferred", err, srv.calls)
	}
	if err := dkimrotate.Activate(context.Background(), p, servers, func(context.Context, []plan.Change) error { return nil }, io.Discard); err != nil {
		t.Fatal(err)
	}
	if len(srv.calls) != 1 || srv.calls[0] != "activate example.org b" {
		t.Errorf("server calls %v", srv.calls)
	}
}
