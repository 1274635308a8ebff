package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/target"
)

// Nodes is what apply does for servers that share a PostgreSQL store or
// a domain (issue 20), before and after it deploys them.
//
// DKIM: a domain's keys are generated on its first server, as for a
// domain of one server, and copied from there to its other servers
// (private keys and rotation history, through the SSH connections,
// never written on this machine): before a server is deployed, so that it
// does not generate keys of its own on first start, and again once every
// server is deployed and after the rotation steps (which run on the
// first server), so that all servers sign with the published keys. This
// keeps the keys where they were made (on the servers, as for one
// server) rather than generating them here and giving this machine
// private keys to keep or to lose.
type Nodes struct {
	// StoreURL is the PostgreSQL URL of each server with a store, by
	// server name: a secret, kept in memory only and written to the
	// server's private URL file.
	StoreURL map[string]string
	// DKIMFrom maps a server to the domains whose DKIM keys it copies
	// and the server each is copied from (the domain's first server).
	DKIMFrom map[string]map[string]string
	// DKIMPeers maps a first server to its domains of several servers
	// and their other servers, in order: a first server without keys
	// for such a domain (added at the head of the list) takes those of
	// the first of them that has some, instead of making new ones that
	// would replace the published keys without a rotation's grace.
	DKIMPeers map[string]map[string][]string
}

// NodeServer is what the engine needs of a server for Nodes: a
// *target.Conn.
type NodeServer interface {
	WriteStoreURL(ctx context.Context, url string) (bool, error)
	MigrateStore(ctx context.Context, b target.Binary) (string, error)
	DKIMFiles(ctx context.Context, domain string) (map[string][]byte, error)
	SyncDKIMFiles(ctx context.Context, domain string, files map[string][]byte) (bool, error)
	Reload(ctx context.Context) error
}

var _ NodeServer = (*target.Conn)(nil)

// stopApply is a failure that stops the whole apply, not only its
// server: a store whose schema cannot be brought to the binary's.
type stopApply struct{ err error }

func (s stopApply) Error() string { return s.err.Error() }
func (s stopApply) Unwrap() error { return s.err }

// deployOrder sorts server changes so that the servers others copy DKIM
// keys from come first (their keys then exist when the others start),
// otherwise by address.
func (e *Engine) deployOrder(changes []plan.Change) {
	source := map[string]bool{}
	for _, doms := range e.Nodes.DKIMFrom {
		for _, from := range doms {
			source[from] = true
		}
	}
	sort.SliceStable(changes, func(i, j int) bool {
		a, b := source[plan.ServerName(changes[i].Address)], source[plan.ServerName(changes[j].Address)]
		if a != b {
			return a
		}
		return changes[i].Address < changes[j].Address
	})
}

// beforeDeploy writes the server's store URL, migrates the store's schema
// (once per store and apply: migrated holds the URLs done) and copies
// its shared DKIM keys. A migration failure is a stopApply.
func (e *Engine) beforeDeploy(ctx context.Context, name string, conn Server, migrated map[string]bool) (prepared, error) {
	var pr prepared
	url := e.Nodes.StoreURL[name]
	ns, ok := conn.(NodeServer)
	if !ok {
		if url != "" || len(e.Nodes.DKIMFrom[name]) > 0 {
			return pr, fmt.Errorf("server.%s: cannot prepare a node of several servers", name)
		}
		return pr, nil
	}
	if url != "" {
		changed, err := ns.WriteStoreURL(ctx, url)
		if err != nil {
			return pr, err
		}
		if changed {
			pr.storeURL = true
			e.progress("server.%s: wrote the store's connection URL", name)
		}
		if !migrated[url] {
			e.progress("server.%s: migrating the store's schema...", name)
			out, err := ns.MigrateStore(ctx, e.Binary)
			if err != nil {
				return pr, stopApply{err}
			}
			migrated[url] = true
			e.progress("server.%s: %s", name, out)
		}
	}
	adopted, err := e.adoptDKIM(ctx, name, ns)
	if err != nil {
		return pr, err
	}
	pr.dkim, err = e.syncDKIM(ctx, name, ns, false)
	pr.dkim = pr.dkim || adopted
	return pr, err
}

// adoptDKIM gives a first server without keys for one of its domains
// those of the domain's other servers (DKIMPeers), when one has some.
func (e *Engine) adoptDKIM(ctx context.Context, name string, ns NodeServer) (bool, error) {
	peers := e.Nodes.DKIMPeers[name]
	doms := make([]string, 0, len(peers))
	for d := range peers {
		doms = append(doms, d)
	}
	slices.Sort(doms)
	changed := false
	for _, d := range doms {
		own, err := ns.DKIMFiles(ctx, d)
		if err != nil {
			return changed, err
		}
		if len(own) > 0 {
			continue
		}
		for _, p := range peers[d] {
			src, ok := e.Servers[p].(NodeServer)
			if !ok {
				continue
			}
			files, err := src.DKIMFiles(ctx, d)
			if err != nil {
				return changed, err
			}
			if len(files) == 0 {
				continue
			}
			if _, err := ns.SyncDKIMFiles(ctx, d, files); err != nil {
				return changed, err
			}
			e.progress("server.%s: took the DKIM keys of %s from server.%s, which publishes them", name, d, p)
			changed = true
			break
		}
	}
	return changed, nil
}

// prepared says what beforeDeploy changed on a server.
type prepared struct {
	// storeURL: the URL file changed; the server restarts to use it.
	storeURL bool
	// dkim: DKIM keys were copied; the server reloads to sign with them.
	dkim bool
}

// syncDKIM copies the shared DKIM keys of server name from their first
// servers. A source without keys yet is skipped before the deployment
// (strict false): it gets them when it starts, and the pass after the
// deployments copies them.
func (e *Engine) syncDKIM(ctx context.Context, name string, ns NodeServer, strict bool) (bool, error) {
	from := e.Nodes.DKIMFrom[name]
	doms := make([]string, 0, len(from))
	for d := range from {
		doms = append(doms, d)
	}
	slices.Sort(doms)
	changed := false
	for _, d := range doms {
		src, ok := e.Servers[from[d]].(NodeServer)
		if !ok || e.Servers[from[d]] == nil {
			return changed, fmt.Errorf("server.%s copies the DKIM keys of %s from server.%s, which this apply does not reach: apply without -target, or target server.%s too", name, d, from[d], from[d])
		}
		files, err := src.DKIMFiles(ctx, d)
		if err != nil {
			return changed, err
		}
		if len(files) == 0 {
			if strict {
				return changed, fmt.Errorf("server.%s has no DKIM keys for %s to copy to server.%s", from[d], d, name)
			}
			continue
		}
		c, err := ns.SyncDKIMFiles(ctx, d, files)
		if err != nil {
			return changed, err
		}
		if c {
			e.progress("server.%s: copied the DKIM keys of %s from server.%s", name, d, from[d])
		}
		changed = changed || c
	}
	return changed, nil
}

// syncAllDKIM copies the shared DKIM keys to every server that copies
// some, and reloads those whose keys changed: after the deployments and
// after the rotation steps.
func (e *Engine) syncAllDKIM(ctx context.Context) error {
	names := make([]string, 0, len(e.Nodes.DKIMFrom))
	for n := range e.Nodes.DKIMFrom {
		if e.Servers[n] != nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var errs []error
	for _, n := range names {
		ns, ok := e.Servers[n].(NodeServer)
		if !ok {
			continue
		}
		changed, err := e.syncDKIM(ctx, n, ns, true)
		if err == nil && changed {
			err = ns.Reload(ctx)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
