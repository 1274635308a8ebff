package inbound_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/queue"
)

// TestGreylistShared runs two MX nodes whose greylists share one
// PostgreSQL database: a sender deferred by node A and retrying at node B
// is told the time left (not a fresh delay), is accepted by B once the
// delay is over, and is then accepted by A too.
func TestGreylistShared(t *testing.T) {
	k := testenv.StartKnot(t, "example.test")
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
	clock := &fakeClock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}
	var addrs []string
	var greys []*inbound.Greylist
	for range 2 {
		g, err := inbound.OpenGreylistPostgres(ctx, pool, inbound.GreylistOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		addr, _ := mx(t, inbound.Options{Resolver: &queue.DNS{Servers: []string{k.Addr}}, Greylist: g})
		addrs = append(addrs, addr)
		greys = append(greys, g)
	}
	rcpt := func(node int, ip, from string) error {
		c := dialFrom(t, ip, addrs[node])
		defer c.Close()
		if err := c.Mail(from, nil); err != nil {
			t.Fatal(err)
		}
		return c.Rcpt("bob@example.test", nil)
	}
	greylisted := func(err error, seconds string) bool {
		se, ok := err.(*gosmtp.SMTPError)
		return ok && se.Code == 451 && se.EnhancedCode == (gosmtp.EnhancedCode{4, 7, 1}) &&
			strings.Contains(se.Message, "in "+seconds+" seconds")
	}
	if err := rcpt(0, "127.0.0.1", "a@example.net"); !greylisted(err, "300") {
		t.Fatalf("first attempt at node A: %v, want 451 4.7.1 in 300 seconds", err)
	}
	clock.Advance(4 * time.Minute)
	if err := rcpt(1, "127.0.0.1", "a@example.net"); !greylisted(err, "60") {
		t.Fatalf("retry at node B after 4m: %v, want 451 4.7.1 in 60 seconds", err)
	}
	clock.Advance(time.Minute)
	if err := rcpt(1, "127.0.0.9", "a@example.net"); err != nil {
		t.Fatalf("retry at node B after 5m from the same /24: %v, want accepted", err)
	}
	if err := rcpt(0, "127.0.0.1", "a@example.net"); err != nil {
		t.Fatalf("node A after B passed the triplet: %v, want accepted", err)
	}
	if err := rcpt(0, "127.0.0.1", "other@example.net"); !greylisted(err, "300") {
		t.Errorf("new sender at node A: %v, want 451 in 300 seconds", err)
	}
	// Both nodes agree on expiry: a passed triplet lives 36 days after its
	// last use, a pending one 2 days.
	clock.Advance(3 * 24 * time.Hour)
	if n, err := greys[1].Expire(ctx); err != nil || n != 1 {
		t.Errorf("Expire after 3 days = %d, %v; want the pending triplet removed", n, err)
	}
	ok, _, err := greys[1].Check(ctx, net.ParseIP("127.0.0.1"), "a@example.net", "bob@example.test")
	if err != nil || !ok {
		t.Errorf("passed triplet after 3 days at node B: %v %v, want passed", ok, err)
	}
	clock.Advance(40 * 24 * time.Hour)
	if n, err := greys[0].Expire(ctx); err != nil || n != 1 {
		t.Errorf("Expire after 40 more days = %d, %v; want the passed triplet removed", n, err)
	}
	ok, wait, err := greys[0].Check(ctx, net.ParseIP("127.0.0.1"), "a@example.net", "bob@example.test")
	if err != nil || ok || wait != 5*time.Minute {
		t.Errorf("expired triplet at node A: %v %v %v, want deferred 5m", ok, wait, err)
	}
}
