package hetzner_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/emulator"
	hemu "github.com/mailctl/mailctl/internal/emulator/hetzner"
	"github.com/mailctl/mailctl/providers/base"
	"github.com/mailctl/mailctl/providers/ptr"
	"github.com/mailctl/mailctl/providers/ptr/hetzner"
	"github.com/mailctl/mailctl/providers/ptr/ptrtest"
)

const (
	listServers    = "GET /v1/servers"
	serverChange   = "POST /v1/servers/{id}/actions/change_dns_ptr"
	primaryChange  = "POST /v1/primary_ips/{id}/actions/change_dns_ptr"
	listActions    = "GET /v1/actions"
	listPrimaryIPs = "GET /v1/primary_ips"
)

func newProvider(t testing.TB, emu *hemu.Server, token string) *hetzner.Provider {
	t.Helper()
	p, err := ptr.New("hetzner", ptr.Config{Attrs: map[string]string{"token": token, "endpoint": emu.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	hp := p.(*hetzner.Provider)
	hp.SetOptions(base.HTTPOptions{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, time.Millisecond)
	return hp
}

var next atomic.Int32

// addServer creates a server with a fresh IPv4 address and IPv6 /64.
func addServer(emu *hemu.Server) (int64, netip.Addr, netip.Addr) {
	n := next.Add(1)
	v4 := netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", n))
	v6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::25", n))
	id := emu.AddServer(fmt.Sprintf("mx%d", n), v4.String(), fmt.Sprintf("2001:db8:%x::/64", n))
	return id, v4, v6
}

func TestSuite(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	ptrtest.Run(t, func(t *testing.T) ptrtest.Env {
		_, v4, v6 := addServer(emu)
		return ptrtest.Env{Provider: newProvider(t, emu, emu.Token), IPv4: v4, IPv6: v6}
	})
}

// TestPrimaryIP sets the PTR of unassigned Primary IPs, found after the
// servers.
func TestPrimaryIP(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	emu.AddServer("other", "198.51.100.1", "")
	emu.AddPrimaryIP("spare-v4", "198.51.100.77")
	emu.AddPrimaryIP("spare-v6", "2001:db8:77::/64")
	p := newProvider(t, emu, emu.Token)
	ctx := context.Background()
	for _, ip := range []string{"198.51.100.77", "2001:db8:77::1"} {
		a := netip.MustParseAddr(ip)
		if err := p.Set(ctx, a, "spare.example.org"); err != nil {
			t.Fatalf("Set(%s): %v", ip, err)
		}
		if got, err := p.Get(ctx, a); err != nil || got != "spare.example.org" {
			t.Fatalf("Get(%s) = %q, %v", ip, got, err)
		}
	}
	if n, m := emu.Count(primaryChange), emu.Count(serverChange); n != 2 || m != 0 {
		t.Fatalf("change_dns_ptr calls: %d on Primary IPs, %d on servers; want 2, 0", n, m)
	}
}

// TestWaitsForAction checks that Set returns only once the action has
// completed, so that the new PTR is in place.
func TestWaitsForAction(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	emu.SetActionPolls(3)
	_, v4, _ := addServer(emu)
	p := newProvider(t, emu, emu.Token)
	if err := p.Set(context.Background(), v4, "mx1.example.org"); err != nil {
		t.Fatal(err)
	}
	if got := emu.PTR(v4.String()); got != "mx1.example.org" {
		t.Fatalf("PTR when Set returned = %q, want the new value", got)
	}
	if n := emu.Count(listActions); n != 3 {
		t.Errorf("%d action polls, want 3", n)
	}
	if n := emu.RunningActions(); n != 0 {
		t.Errorf("%d actions still running", n)
	}
}

func TestIdempotentWithoutAction(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	_, v4, v6 := addServer(emu)
	p := newProvider(t, emu, emu.Token)
	ctx := context.Background()
	for range 2 {
		if err := p.Set(ctx, v4, "mx1.example.org"); err != nil {
			t.Fatal(err)
		}
	}
	// Removing an IPv6 PTR that does not exist needs no action either.
	if err := p.Set(ctx, v6, ""); err != nil {
		t.Fatal(err)
	}
	if n := emu.Count(serverChange); n != 1 {
		t.Fatalf("%d change_dns_ptr calls, want 1", n)
	}
}

// TestPagination finds a server on the second page of the list.
func TestPagination(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	for i := range 55 {
		emu.AddServer(fmt.Sprintf("s%d", i), fmt.Sprintf("198.51.100.%d", i+1), "")
	}
	_, v4, _ := addServer(emu)
	p := newProvider(t, emu, emu.Token)
	if err := p.Set(context.Background(), v4, "last.example.org"); err != nil {
		t.Fatal(err)
	}
	if n := emu.Count(listServers); n != 2 {
		t.Fatalf("%d server list calls, want 2 pages", n)
	}
}

func TestActionFails(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	_, v4, _ := addServer(emu)
	emu.FailNextAction("rdns_backend_error", "reverse DNS backend unavailable")
	p := newProvider(t, emu, emu.Token)
	err := p.Set(context.Background(), v4, "mx1.example.org")
	if err == nil || !strings.Contains(err.Error(), "reverse DNS backend unavailable") || !strings.Contains(err.Error(), "set the PTR of "+v4.String()) {
		t.Fatalf("Set with a failing action = %v", err)
	}
}

func TestCredentialErrors(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	_, v4, _ := addServer(emu)
	ctx := context.Background()
	for _, tc := range []struct {
		name, token, want string
		get               bool
	}{
		{"wrong token", "nope", "token was refused (HTTP 401)", true},
		{"empty token", "", "", false},
		{"read-only token", emu.ReadOnlyToken, "token lacks a permission (HTTP 403): it needs Read & Write", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.token == "" {
				if _, err := ptr.New("hetzner", ptr.Config{Attrs: map[string]string{"endpoint": emu.Endpoint}}); !errors.Is(err, ptr.ErrConfig) || !strings.Contains(err.Error(), `"token"`) {
					t.Fatalf("New without a token = %v", err)
				}
				return
			}
			p := newProvider(t, emu, tc.token)
			err := p.Set(ctx, v4, "mx1.example.org")
			if !errors.Is(err, ptr.ErrAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Set = %v, want ErrAuth saying %q", err, tc.want)
			}
			_, err = p.Get(ctx, v4)
			if tc.get != (err != nil) {
				t.Fatalf("Get = %v", err)
			}
		})
	}
	if got := emu.PTR(v4.String()); got != hemu.DefaultPTR(v4) {
		t.Fatalf("a refused call changed the PTR to %q", got)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	_, v4, _ := addServer(emu)
	p := newProvider(t, emu, emu.Token)
	ctx := context.Background()

	emu.Inject(emulator.Fault{Pattern: listServers, Status: http.StatusTooManyRequests, RetryAfter: "0", Count: 2})
	emu.Inject(emulator.Fault{Pattern: listServers, Status: http.StatusInternalServerError, Count: 1})
	emu.Inject(emulator.Fault{Pattern: serverChange, Status: http.StatusBadGateway, Count: 1})
	if err := p.Set(ctx, v4, "mx1.example.org"); err != nil {
		t.Fatalf("Set after 429, 429, 500, 502: %v", err)
	}
	if n, m := emu.Count(listServers), emu.Count(serverChange); n != 4 || m != 2 {
		t.Errorf("%d list calls, %d change calls; want 4 and 2", n, m)
	}
	if got := emu.PTR(v4.String()); got != "mx1.example.org" {
		t.Errorf("PTR = %q", got)
	}

	emu.Inject(emulator.Fault{Pattern: listServers, Status: http.StatusServiceUnavailable, Count: 10})
	defer emu.ClearFaults()
	_, err := p.Get(ctx, v4)
	if err == nil || !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), "maintenance") {
		t.Fatalf("Get with a persistent 503 = %v", err)
	}
}

// TestRejectedBeforeCalls checks that a malformed hostname is refused
// without any API call.
func TestRejectedBeforeCalls(t *testing.T) {
	t.Parallel()
	emu := hemu.New(t)
	_, v4, _ := addServer(emu)
	p := newProvider(t, emu, emu.Token)
	for _, h := range []string{"not a name", "localhost", strings.Repeat("a", 64) + ".example.org"} {
		if err := p.Set(context.Background(), v4, h); err == nil {
			t.Errorf("Set(%q) succeeded", h)
		}
	}
	if n := emu.Total(); n != 0 {
		t.Fatalf("%d API calls, want none", n)
	}
}
