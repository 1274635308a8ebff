package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
)

type noResolver struct{ Resolver }

// TestPGLeaseLost claims a record on node A, lets its lease expire, has
// node B claim it, and checks that A's outcome is refused (errLeaseLost)
// and changes nothing, that A cannot renew the lease any more, and that
// B's outcome is recorded. A lease still running is claimed by nobody.
func TestPGLeaseLost(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	open := func(node string) *Queue {
		q, err := Open(ctx, Options{Postgres: pool, Node: node, Hostname: node, Resolver: noResolver{}, LeaseTime: time.Minute,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	a, b := open("a"), open("b")
	if err := a.Enqueue(ctx, "alice@a.test", []string{"bob@b.test", "carol@b.test"}, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	yes := func(string) bool { return true }
	now := time.Now()
	ca, err := a.pg.claim(ctx, now, 10, yes)
	if err != nil || len(ca) != 1 {
		t.Fatalf("node a claimed %v, %v; want one record", ca, err)
	}
	if cb, err := b.pg.claim(ctx, now, 10, yes); err != nil || len(cb) != 0 {
		t.Fatalf("node b claimed %v, %v while a's lease runs; want nothing", cb, err)
	}
	if _, err := pool.Exec(ctx, "UPDATE queue_messages SET lease_until = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	cb, err := b.pg.claim(ctx, now, 10, yes)
	if err != nil || len(cb) != 1 || cb[0].id != ca[0].id {
		t.Fatalf("node b claimed %v, %v after a's lease expired; want %s", cb, err, ca[0].id)
	}
	m, err := a.be.get(ctx, ca[0].id)
	if err != nil {
		t.Fatal(err)
	}
	// a's late outcome: bob delivered, carol failed for good.
	res := []result{{rcpt: "bob@b.test", ok: true, status: "2.0.0"}, {rcpt: "carol@b.test", perm: true, status: "5.1.1", diag: "no such user"}}
	if err := a.record(ctx, &ca[0].lease, m, nil, res, time.Time{}); !errors.Is(err, errLeaseLost) {
		t.Fatalf("a's outcome after losing the lease: %v, want errLeaseLost", err)
	}
	if ok, err := a.pg.renew(ctx, &ca[0].lease); err != nil || ok {
		t.Errorf("a renewed the lease it lost: %v, %v", ok, err)
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 1 || len(list[0].pending()) != 2 || list[0].Attempts != 0 {
		t.Fatalf("after a's refused outcome: %+v, %v; want the record unchanged, 2 recipients pending", list, err)
	}
	// b's outcome: bob delivered, carol deferred; no DSN (only failures).
	res = []result{{rcpt: "bob@b.test", ok: true, status: "2.0.0"}, {rcpt: "carol@b.test", status: "4.2.0", diag: "try later"}}
	if err := b.record(ctx, &cb[0].lease, m, nil, res, time.Time{}); err != nil {
		t.Fatalf("b's outcome: %v", err)
	}
	list, err = b.List(ctx)
	if err != nil || len(list) != 1 || list[0].Attempts != 1 || list[0].Rcpts[0].State != StateDelivered ||
		list[0].Rcpts[1].State != StatePending || list[0].LastError != "try later" {
		t.Fatalf("after b's outcome: %+v, %v; want bob delivered, carol pending, 1 attempt", list, err)
	}
	var owner *string
	if err := pool.QueryRow(ctx, "SELECT lease_owner FROM queue_messages").Scan(&owner); err != nil || owner != nil {
		t.Errorf("lease after b's outcome: %v, %v; want released", owner, err)
	}
}
