package queue

import (
	"context"
	"errors"
	"fmt"
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

// pgTestQueues opens n queues (nodes "n0", "n1"...) on one new database.
func pgTestQueues(t *testing.T, n int) ([]*Queue, *pgxpool.Pool) {
	t.Helper()
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
	t.Cleanup(pool.Close)
	var qs []*Queue
	for i := range n {
		node := fmt.Sprintf("n%d", i)
		q, err := Open(ctx, Options{Postgres: pool, Node: node, Hostname: "mx." + node + ".test", Resolver: noResolver{},
			LeaseTime: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		qs = append(qs, q)
	}
	return qs, pool
}

// TestPGSharedBodyDSNAndAdmin: a message for two domains is two records
// sharing one body, which stays until the last record is gone (Remove of
// one, delivery of the other); a permanent failure queues a DSN with its
// body in the same transaction; Retry and List see every node's records.
func TestPGSharedBodyDSNAndAdmin(t *testing.T) {
	qs, pool := pgTestQueues(t, 2)
	a, b := qs[0], qs[1]
	ctx := context.Background()
	bodies := func() int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM queue_bodies").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	msg := "From: alice@a.test\r\nSubject: two domains\r\n\r\nhello\r\n"
	if err := a.Enqueue(ctx, "alice@a.test", []string{"bob@b.test", "carol@c.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx)
	if err != nil || len(list) != 2 || list[0].Blob != list[1].Blob || bodies() != 1 || b.Len() != 2 {
		t.Fatalf("after Enqueue to two domains: %d records (%v), %d bodies; want 2 records sharing 1 body", len(list), err, bodies())
	}
	var toB, toC Message
	for _, m := range list {
		if m.Domain == "b.test" {
			toB = m
		} else {
			toC = m
		}
	}
	if err := b.Remove(ctx, toB.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, toB.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	if n := bodies(); n != 1 {
		t.Fatalf("%d bodies after removing one of two records, want 1", n)
	}
	// Retry from node b makes node a's record due now.
	later := time.Now().Add(time.Hour)
	if _, err := pool.Exec(ctx, "UPDATE queue_messages SET next = $1", later); err != nil {
		t.Fatal(err)
	}
	if err := b.Retry(ctx, ""); err != nil {
		t.Fatal(err)
	}
	cs, err := a.pg.claim(ctx, time.Now().Add(time.Second), 10, func(string) bool { return true })
	if err != nil || len(cs) != 1 || cs[0].id != toC.ID {
		t.Fatalf("claim after Retry: %v, %v; want %s", cs, err, toC.ID)
	}
	// carol fails for good: the record is done, a DSN to alice is queued
	// with its own body, and the shared body is gone.
	f, err := a.be.openBody(ctx, &toC)
	if err != nil {
		t.Fatal(err)
	}
	res := []result{{rcpt: "carol@c.test", perm: true, status: "5.1.1", diag: "550 no such user", mta: "mx.c.test"}}
	if err := a.record(ctx, &cs[0].lease, &toC, f, res, time.Time{}); err != nil {
		t.Fatal(err)
	}
	list, err = b.List(ctx)
	if err != nil || len(list) != 1 || !list[0].IsDSN || list[0].Domain != "a.test" || list[0].Rcpts[0].Addr != "alice@a.test" {
		t.Fatalf("after the failure: %+v, %v; want one DSN record to alice@a.test", list, err)
	}
	body, err := b.be.openBody(ctx, &list[0])
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, list[0].Size)
	if _, err := body.ReadAt(raw, 0); err != nil {
		t.Fatal(err)
	}
	d, err := ParseDSN(strings.NewReader(string(raw)))
	if err != nil || len(d.Recipients) != 1 || d.Recipients[0].Status != "5.1.1" || !strings.Contains(string(d.OriginalHeader), "Subject: two domains") {
		t.Fatalf("DSN body: %+v, %v; want carol failed 5.1.1 with the original header", d, err)
	}
	if n := bodies(); n != 1 {
		t.Errorf("%d bodies after the delivery, want 1 (the DSN's)", n)
	}
}

// TestPGLeaseLost claims a record on node A, lets its lease expire, has
// node B claim it, and checks that A's outcome is refused (errLeaseLost)
// and changes nothing, that A cannot renew the lease any more, and that
// B's outcome is recorded. A lease still running is claimed by nobody.
func TestPGLeaseLost(t *testing.T) {
	qs, pool := pgTestQueues(t, 2)
	a, b := qs[0], qs[1]
	ctx := context.Background()
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
