package refresh

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
)

// StorePlan is what plan read of a server's PostgreSQL store.
type StorePlan struct {
	// Schema is the schema version of the database, when Known.
	Schema int
	Known  bool
	// Why says why the version is unknown ("not deployed yet").
	Why string
	// Binary is the schema version of the release to deploy.
	Binary int
	// URLChanges is true when the server's URL file does not hold the
	// configured URL (or does not exist yet).
	URLChanges bool
}

// nodeChanges adds to a server's changes (DiffServer's, the server's
// first) what concerns it as a node of several: its store's schema
// version as a "store schema A -> B" item (unknown when it could not be
// read: never left out), a store URL that changes, and DKIM keys that
// are not its domains' first server's. Each makes the server change.
func nodeChanges(changes []plan.Change, sp ServerPlan, p *plan.Plan) []plan.Change {
	c := &changes[0]
	update := func(note string) {
		if c.Action == plan.NoOp {
			c.Action = plan.Update
		}
		c.Notes = append(c.Notes, note)
	}
	if st := sp.Store; st != nil {
		switch {
		case !st.Known:
			c.Notes = append(c.Notes, fmt.Sprintf("store schema unknown -> %d (%s; apply migrates it before the server starts)", st.Binary, st.Why))
		case st.Schema > st.Binary:
			c.Notes = append(c.Notes, fmt.Sprintf("store schema %d is newer than this mailctl's (%d): apply refuses it; upgrade mailctl", st.Schema, st.Binary))
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: the store's schema %d is newer than this mailctl's %d: apply will refuse to deploy; upgrade mailctl", c.Address, st.Schema, st.Binary))
		case st.Schema < st.Binary:
			update(fmt.Sprintf("store schema %d -> %d (migrated before the server starts)", st.Schema, st.Binary))
		}
		if st.URLChanges && c.Action != plan.Create {
			update("store connection URL: (sensitive) changes (restart)")
		}
	}
	if len(sp.DKIMDiffers) > 0 && c.Action != plan.Create {
		update("DKIM keys of " + strings.Join(sp.DKIMDiffers, ", ") + " differ from the first server's: copied from it (reload)")
	}
	return changes
}

// DKIMDiffers returns the domains of server name whose DKIM keys, as the
// servers reported them, are not those of the domain's first server;
// a domain whose first server reported none is left out (nothing to
// copy yet).
func DKIMDiffers(cfg *config.Config, name string, keys []desired.DKIMKey) []string {
	var out []string
	for _, d := range cfg.Domains {
		if len(d.Servers) < 2 || d.Server.Name == name || !slices.ContainsFunc(d.Servers, func(s *config.Server) bool { return s.Name == name }) {
			continue
		}
		want, have := map[string]string{}, map[string]string{}
		for _, k := range keys {
			switch {
			case k.Domain != d.Name:
			case k.Server == d.Server.Name:
				want[k.Selector] = k.Record
			case k.Server == name:
				have[k.Selector] = k.Record
			}
		}
		if len(want) > 0 && !maps.Equal(want, have) {
			out = append(out, d.Name)
		}
	}
	return out
}

// mergeUsers makes one change of the user changes that several servers
// of a domain plan for one address (the same mailbox, in their shared
// store), with the notes of each.
func mergeUsers(changes []plan.Change) []plan.Change {
	at := map[string]int{}
	out := changes[:0]
	for _, c := range changes {
		if c.Type != plan.KindUser {
			out = append(out, c)
			continue
		}
		key := c.Address + "\x00" + string(c.Action)
		i, dup := at[key]
		if !dup {
			at[key] = len(out)
			out = append(out, c)
			continue
		}
		for _, n := range c.Notes {
			if !slices.Contains(out[i].Notes, n) {
				out[i].Notes = append(out[i].Notes, n)
			}
		}
	}
	return out
}
