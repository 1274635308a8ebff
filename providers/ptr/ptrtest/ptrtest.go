// Package ptrtest is the shared test suite every reverse DNS adapter must
// pass (STYLE.md rule 10): it sets, updates, re-sets and removes the PTR of
// an IPv4 address (in-addr.arpa, RFC 1035 section 3.5) and of an IPv6
// address (ip6.arpa, RFC 3596 section 2.5) through the ptr.Provider
// interface and reads each back.
package ptrtest

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mailctl/mailctl/providers/ptr"
)

// Env is one subtest's provider and the addresses it may change.
type Env struct {
	Provider ptr.Provider
	// IPv4 and IPv6 are addresses the account holds, used by this subtest
	// only.
	IPv4, IPv6 netip.Addr
	// NotHeld is an address the account does not hold (default
	// 192.0.2.254).
	NotHeld netip.Addr
	// Forward, when set, makes host resolve to ip, as apply creates the
	// A/AAAA records before the PTRs; the suite calls it before each Set.
	Forward func(host string, ip netip.Addr)
}

// NewFunc returns a fresh Env; it is called once per subtest, possibly in
// parallel.
type NewFunc func(t *testing.T) Env

const timeout = 30 * time.Second

// Run runs the suite.
func Run(t *testing.T, newEnv NewFunc) {
	t.Helper()
	for _, fam := range []string{"IPv4", "IPv6"} {
		t.Run(fam, func(t *testing.T) {
			t.Parallel()
			for _, sc := range []struct {
				name string
				run  func(t *testing.T, e Env, ip netip.Addr)
			}{
				{"set and read back", testSet},
				{"update", testUpdate},
				{"second set is idempotent", testIdempotent},
				{"canonical form", testCanonical},
				{"remove", testRemove},
			} {
				t.Run(sc.name, func(t *testing.T) {
					t.Parallel()
					e := newEnv(t)
					ip := e.IPv4
					if fam == "IPv6" {
						ip = e.IPv6
					}
					if !ip.IsValid() {
						t.Fatalf("the Env has no %s address", fam)
					}
					sc.run(t, e, ip)
				})
			}
		})
	}
	t.Run("address not held", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ip := e.NotHeld
		if !ip.IsValid() {
			ip = netip.MustParseAddr("192.0.2.254")
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if got, err := e.Provider.Get(ctx, ip); !errors.Is(err, ptr.ErrNotFound) {
			t.Errorf("Get(%s) = %q, %v; want an error wrapping ptr.ErrNotFound", ip, got, err)
		}
		if err := e.Provider.Set(ctx, ip, "mx.example.org"); !errors.Is(err, ptr.ErrNotFound) {
			t.Errorf("Set(%s) = %v; want an error wrapping ptr.ErrNotFound", ip, err)
		}
	})
}

func set(t *testing.T, e Env, ip netip.Addr, host string) {
	t.Helper()
	if e.Forward != nil && host != "" {
		e.Forward(ptr.Canonical(host), ip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := e.Provider.Set(ctx, ip, host); err != nil {
		t.Fatalf("Set(%s, %q): %v", ip, host, err)
	}
}

func get(t *testing.T, e Env, ip netip.Addr) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got, err := e.Provider.Get(ctx, ip)
	if err != nil {
		t.Fatalf("Get(%s): %v", ip, err)
	}
	return got
}

func expect(t *testing.T, e Env, ip netip.Addr, want string) {
	t.Helper()
	if got := get(t, e, ip); got != want {
		t.Fatalf("Get(%s) = %q, want %q", ip, got, want)
	}
}

func testSet(t *testing.T, e Env, ip netip.Addr) {
	set(t, e, ip, "mx1.example.org")
	expect(t, e, ip, "mx1.example.org")
}

func testUpdate(t *testing.T, e Env, ip netip.Addr) {
	set(t, e, ip, "mx1.example.org")
	set(t, e, ip, "mx2.example.net")
	expect(t, e, ip, "mx2.example.net")
}

func testIdempotent(t *testing.T, e Env, ip netip.Addr) {
	set(t, e, ip, "mail.example.org")
	set(t, e, ip, "mail.example.org")
	expect(t, e, ip, "mail.example.org")
}

func testCanonical(t *testing.T, e Env, ip netip.Addr) {
	set(t, e, ip, "MX1.Example.ORG.")
	expect(t, e, ip, "mx1.example.org")
}

// testRemove sets then removes the PTR: Get must return what it returned
// before the first Set ("" or the provider's default name).
func testRemove(t *testing.T, e Env, ip netip.Addr) {
	before := get(t, e, ip)
	set(t, e, ip, "gone.example.org")
	expect(t, e, ip, "gone.example.org")
	set(t, e, ip, "")
	expect(t, e, ip, before)
}
