package imap_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
)

// TestConformanceNodes (issue 20): the sessions of TestConformanceSessions
// on two nodes of one PostgreSQL database: two pgstore.Stores, an IMAP
// server on each, the sessions spread over both. A session learns what a
// session on the other node did only through the database's change feed
// (LISTEN/NOTIFY), so the checkpoints show that the nodes agree.
func TestConformanceNodes(t *testing.T) {
	seed := conformanceSeedFor(t)
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	auth := &passwords{users: map[string]string{alice: alicePW, bob: bobPW}}
	var nodes confNodes
	if raceBuild {
		// Each command is a few database round trips, each slowed by the
		// race detector: 10000 took 5.5 minutes on the shared 2-core
		// machine, close to the 8-minute bound.
		nodes.commands = 4000
	}
	for i := 0; i < 2; i++ {
		st, err := pgstore.Open(ctx, url, nil)
		if err != nil {
			t.Fatalf("open node %d: %v", i, err)
		}
		t.Cleanup(func() { st.Close() })
		if i == 0 {
			for _, u := range []string{alice, bob} {
				if err := st.EnsureUser(ctx, u, 0); err != nil {
					t.Fatal(err)
				}
			}
			nodes.st = st
		}
		nodes.addrs = append(nodes.addrs, servePlain(t, st, auth))
	}
	runConformance(t, nodes, seed)
}
