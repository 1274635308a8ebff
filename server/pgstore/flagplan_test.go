package pgstore

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestSetFlagsPlanStaleStatistics: a mailbox filled with 2000 messages
// after the last ANALYZE of messages (the statistics know only another
// mailbox's 500) is where the planner took the mailbox's messages for one
// row and joined them to the statement's 2000 computed rows in a nested
// loop: 4 million comparisons, 0.6 s per STORE 1:* (bench/pg.sh: 1.27 s
// for STORE +FLAGS and -FLAGS). With setFlagsSettings the plan compares
// each message once, and no JIT compilation is paid.
func TestSetFlagsPlanStaleStatistics(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	pg := testenv.StartPostgres(t)
	s := migrated(t, pg.NewDatabase(t))
	ctx := ctxT(t)
	if err := s.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if _, _, err := s.Append(ctx, alice, "INBOX", strings.NewReader(fetchBenchMessage(i, 512)), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE messages"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, alice, "Bench", ""); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if _, _, err := s.Append(ctx, alice, "Bench", strings.NewReader(fetchBenchMessage(i, 512)), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var id int64
	if err := s.pool.QueryRow(ctx, "SELECT id FROM mailboxes WHERE name = 'Bench'").Scan(&id); err != nil {
		t.Fatal(err)
	}
	// The general statement (a keyword) and systemFlagStatements's UPDATE.
	general, err := setFlagsQuery(store.FlagsAdd)
	if err != nil {
		t.Fatal(err)
	}
	update, _, _, _ := systemFlagStatements(store.FlagsAdd, []string{store.FlagFlagged})
	update += updateReturning
	for _, tc := range []struct {
		flag, q string
		args    []any
	}{
		{"$Junk", general, []any{id, []int64{1}, []int64{2000}, []string{"$Junk"}, false, int64(0), int64(1 << 40)}},
		{store.FlagFlagged, update, []any{alice, "Bench", []int64{1}, []int64{2000}, []string{store.FlagFlagged}, false, int64(0)}},
	} {
		t.Run(tc.flag, func(t *testing.T) { testFlagPlan(t, s, tc.q, tc.args) })
	}
}

func testFlagPlan(t *testing.T, s *Store, q string, args []any) {
	ctx := ctxT(t)
	// plan returns the rows the statement's joins filtered out and
	// whether it was compiled, with or without the settings.
	plan := func(settings bool) (removed float64, jit bool) {
		t.Helper()
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if settings {
			if _, err := tx.Exec(ctx, setFlagsSettings); err != nil {
				t.Fatal(err)
			}
		}
		var out []byte
		if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+q, args...).Scan(&out); err != nil {
			t.Fatal(err)
		}
		var doc []map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatal(err)
		}
		var walk func(n map[string]any)
		walk = func(n map[string]any) {
			if v, ok := n["Rows Removed by Join Filter"].(float64); ok {
				removed += v
			}
			if kids, ok := n["Plans"].([]any); ok {
				for _, k := range kids {
					walk(k.(map[string]any))
				}
			}
		}
		walk(doc[0]["Plan"].(map[string]any))
		_, jit = doc[0]["JIT"]
		return removed, jit
	}
	removed, jit := plan(true)
	if removed > 10000 || jit {
		t.Errorf("STORE 1:* of 2000 messages on stale statistics: %.0f rows removed by join filters, JIT %v; want a plan that compares each message once, without JIT", removed, jit)
	}
	without, _ := plan(false)
	t.Logf("rows removed by join filters: %.0f with the settings, %.0f without", removed, without)
}
