package refresh_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/refresh"
)

// TestStoreSchemaItem: the plan of a server on PostgreSQL shows the
// store's schema version as an item: "A -> B" when the database is
// behind (the server then changes), unknown when it could not be read
// (never left out), a warning when the database is newer than the binary.
func TestStoreSchemaItem(t *testing.T) {
	t.Parallel()
	cfg := loadSrc(t, zoneSrc)
	after := plan.ServerState{Release: "1.0-abc", ConfigDigest: "d", Running: true}
	for _, tc := range []struct {
		name    string
		store   refresh.StorePlan
		action  plan.Action
		note    string
		warning string
	}{
		{"behind", refresh.StorePlan{Known: true, Schema: 1, Binary: 2}, plan.Update, "store schema 1 -> 2 (migrated before the server starts)", ""},
		{"current", refresh.StorePlan{Known: true, Schema: 2, Binary: 2}, plan.NoOp, "", ""},
		{"unknown", refresh.StorePlan{Why: "the server's release cannot tell", Binary: 2}, plan.NoOp,
			"store schema unknown -> 2 (the server's release cannot tell; apply migrates it before the server starts)", ""},
		{"newer", refresh.StorePlan{Known: true, Schema: 3, Binary: 2}, plan.NoOp,
			"store schema 3 is newer than this mailctl's (2): apply refuses it; upgrade mailctl", "server.mx1: the store's schema 3 is newer"},
		{"new URL", refresh.StorePlan{Why: "the store's URL changes", URLChanges: true, Binary: 2}, plan.Update,
			"store connection URL: (sensitive) changes (restart)", ""},
	} {
		before := after
		p, _, err := refresh.Plan(context.Background(), cfg, nil, refresh.Options{NoRefresh: true, Targets: []string{"server.mx1"},
			Servers: map[string]refresh.ServerPlan{"mx1": {Before: &before, After: after, Store: &tc.store}}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var c plan.Change
		for _, ch := range p.Changes {
			if ch.Address == "server.mx1" {
				c = ch
			}
		}
		if c.Action != tc.action || (tc.note != "" && !slices.Contains(c.Notes, tc.note)) || (tc.note == "" && len(c.Notes) != 0) {
			t.Errorf("%s: server.mx1 %q %q, want %q with note %q", tc.name, c.Action, c.Notes, tc.action, tc.note)
		}
		if got := strings.Join(p.Warnings, "\n"); (tc.warning == "") != (got == "") || !strings.Contains(got, tc.warning) {
			t.Errorf("%s: warnings %q, want %q", tc.name, got, tc.warning)
		}
	}
}

// TestDKIMDiffers: a server whose copy of a shared domain's DKIM keys is
// not its first server's is told apart; the first server and a server
// holding the same keys are not.
func TestDKIMDiffers(t *testing.T) {
	t.Parallel()
	keys := func(server, rec string) desired.DKIMKey {
		return desired.DKIMKey{Domain: "example.org", Selector: "mailctl-ed25519", Record: rec, Server: server}
	}
	cfg := nodesCfg(t)
	ks := []desired.DKIMKey{keys("a", "A"), keys("b", "A"), keys("c", "C")}
	for name, want := range map[string][]string{"a": nil, "b": nil, "c": {"example.org"}} {
		if got := refresh.DKIMDiffers(cfg, name, ks); !slices.Equal(got, want) {
			t.Errorf("DKIMDiffers(%s) = %q, want %q", name, got, want)
		}
	}
}

// nodesCfg is a domain of three servers a, b, c (built, not loaded: the
// store it needs is refused by the loader until serve runs on it).
func nodesCfg(t *testing.T) *config.Config {
	t.Helper()
	var servers []*config.Server
	for _, n := range []string{"a", "b", "c"} {
		servers = append(servers, &config.Server{Name: n, Hostname: n + ".example.org"})
	}
	return &config.Config{Servers: servers, Domains: []*config.Domain{{Name: "example.org", Server: servers[0], Servers: servers}}}
}

// TestDKIMDiffersItem: a server whose copy of a domain's DKIM keys
// differs changes in the plan ("copied from it (reload)"); a server not
// deployed yet gets the copy with its creation, without an item.
func TestDKIMDiffersItem(t *testing.T) {
	t.Parallel()
	cfg := loadSrc(t, zoneSrc)
	after := plan.ServerState{Release: "1.0-abc", ConfigDigest: "d", Running: true}
	before := after
	for _, tc := range []struct {
		before *plan.ServerState
		action plan.Action
		note   bool
	}{{&before, plan.Update, true}, {nil, plan.Create, false}} {
		p, _, err := refresh.Plan(context.Background(), cfg, nil, refresh.Options{NoRefresh: true, Targets: []string{"server.mx1"},
			Servers: map[string]refresh.ServerPlan{"mx1": {Before: tc.before, After: after, DKIMDiffers: []string{"example.org"}}}})
		if err != nil {
			t.Fatal(err)
		}
		c := p.Changes[0]
		const note = "DKIM keys of example.org differ from the first server's: copied from it (reload)"
		if c.Address != "server.mx1" || c.Action != tc.action || slices.Contains(c.Notes, note) != tc.note {
			t.Errorf("before %v: %s %q %q, want %q, note %v", tc.before != nil, c.Address, c.Action, c.Notes, tc.action, tc.note)
		}
	}
}
