package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/refresh"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/server/pgstore"
)

// nodesOf is what apply does for the servers that share a store or a
// domain: each store URL (a secret, in memory only) and the DKIM keys
// each server copies from its domains' first server.
func nodesOf(cfg *config.Config) apply.Nodes {
	n := apply.Nodes{StoreURL: map[string]string{}, DKIMFrom: map[string]map[string]string{}, DKIMPeers: map[string]map[string][]string{}}
	for _, s := range cfg.Servers {
		if s.Store != nil && s.Store.Postgres.Str != "" {
			n.StoreURL[s.Name] = s.Store.Postgres.Str
		}
	}
	for _, d := range cfg.Domains {
		if len(d.Servers) > 1 {
			if n.DKIMPeers[d.Server.Name] == nil {
				n.DKIMPeers[d.Server.Name] = map[string][]string{}
			}
			for _, s := range d.Servers[1:] {
				n.DKIMPeers[d.Server.Name][d.Name] = append(n.DKIMPeers[d.Server.Name][d.Name], s.Name)
			}
		}
		for _, s := range d.Servers[min(1, len(d.Servers)):] {
			if n.DKIMFrom[s.Name] == nil {
				n.DKIMFrom[s.Name] = map[string]string{}
			}
			n.DKIMFrom[s.Name][d.Name] = d.Server.Name
		}
	}
	return n
}

// readStore reads, through the server, the schema version of its store
// and whether its URL file holds the configured URL; what it cannot read
// is unknown, with the reason.
func readStore(ctx context.Context, conn *target.Conn, s *config.Server, before *plan.ServerState, progress *plan.Progress) *refresh.StorePlan {
	sp := &refresh.StorePlan{Binary: pgstore.SchemaVersion()}
	if before == nil {
		sp.URLChanges, sp.Why = true, "not deployed yet"
		return sp
	}
	done := progress.Start(fmt.Sprintf("server.%s: Still reading the store's schema version", s.Name))
	defer done()
	current, err := conn.StoreURLCurrent(ctx, s.Store.Postgres.Str)
	switch {
	case err != nil:
		sp.Why = "its URL file cannot be read"
		return sp
	case !current:
		sp.URLChanges, sp.Why = true, "the store's URL changes"
		return sp
	}
	v, ok := conn.ReadStoreSchema(ctx)
	if !ok {
		sp.Why = "the server's release cannot tell"
		return sp
	}
	sp.Schema, sp.Known = v.Database, true
	return sp
}

// dkimDiffers records, for each server read, the shared domains whose
// DKIM keys it does not hold as their first server does.
func (s *servers) dkimDiffers(cfg *config.Config) {
	for name, sp := range s.plans {
		sp.DKIMDiffers = refresh.DKIMDiffers(cfg, name, s.keys)
		s.plans[name] = sp
	}
}

// contactedServers are the servers a plan with targets reads
// (serverContacted), and the other servers of their domains: apply copies
// DKIM keys between them (from the first, or to a first that has none).
func contactedServers(cfg *config.Config, targets []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range cfg.Servers {
		if serverContacted(s.Name, targets) {
			out[s.Name] = true
		}
	}
	for _, d := range cfg.Domains {
		if slices.ContainsFunc(d.Servers, func(s *config.Server) bool { return out[s.Name] }) {
			for _, s := range d.Servers {
				out[s.Name] = true
			}
		}
	}
	return out
}
