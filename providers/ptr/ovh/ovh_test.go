package ovh_test

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
	ovhemu "github.com/mailctl/mailctl/internal/emulator/ovh"
	"github.com/mailctl/mailctl/providers/base"
	"github.com/mailctl/mailctl/providers/ptr"
	"github.com/mailctl/mailctl/providers/ptr/ovh"
	"github.com/mailctl/mailctl/providers/ptr/ptrtest"
)

const (
	postReverse = "POST /1.0/ip/{block}/reverse"
	getReverse  = "GET /1.0/ip/{block}/reverse/{ipReverse}"
)

func newProvider(t testing.TB, emu *ovhemu.Server, ak, as, ck string) *ovh.Provider {
	t.Helper()
	p, err := ptr.New("ovh", ptr.Config{Attrs: map[string]string{
		"endpoint": emu.Endpoint, "application_key": ak, "application_secret": as, "consumer_key": ck,
	}})
	if err != nil {
		t.Fatal(err)
	}
	op := p.(*ovh.Provider)
	op.SetHTTPOptions(base.HTTPOptions{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	op.ResolveTimeout, op.ResolveMinWait, op.ResolveMaxWait = 2*time.Second, 10*time.Millisecond, 50*time.Millisecond
	return op
}

func good(t testing.TB, emu *ovhemu.Server) *ovh.Provider {
	return newProvider(t, emu, emu.ApplicationKey, emu.ApplicationSecret, emu.ConsumerKey)
}

var next atomic.Int32

// addresses gives the account a fresh IPv4 /32 and IPv6 /64.
func addresses(emu *ovhemu.Server) (netip.Addr, netip.Addr) {
	n := next.Add(1)
	v4 := netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", n))
	v6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::25", n))
	emu.AddIPBlock(v4.String() + "/32")
	emu.AddIPBlock(fmt.Sprintf("2001:db8:%x::/64", n))
	return v4, v6
}

func TestSuite(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	ptrtest.Run(t, func(t *testing.T) ptrtest.Env {
		v4, v6 := addresses(emu)
		return ptrtest.Env{
			Provider: good(t, emu),
			IPv4:     v4,
			IPv6:     v6,
			Forward:  func(host string, ip netip.Addr) { emu.AddForward(host, ip.String()) },
		}
	})
}

// TestBlock sets the reverse of an address inside a larger failover block,
// found by the ?ip= filter, and the block's '/' escaped in the path.
func TestBlock(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	emu.AddIPBlock("198.51.100.0/28")
	emu.AddIPBlock("198.51.100.8/32")
	emu.SetForwardCheck(false)
	p := good(t, emu)
	ctx := context.Background()
	for _, ip := range []string{"198.51.100.3", "198.51.100.8"} {
		if err := p.Set(ctx, netip.MustParseAddr(ip), "mx."+ip+".example.org"); err != nil {
			t.Fatalf("Set(%s): %v", ip, err)
		}
		if got, want := emu.Reverse(ip), "mx."+ip+".example.org."; got != want {
			t.Errorf("stored reverse of %s = %q, want %q", ip, got, want)
		}
	}
}

// TestNotResolving reproduces OVH's refusal while the A record is missing:
// Set retries, gives up with a clear error, and succeeds once the record
// appears during the retries.
func TestNotResolving(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	p := good(t, emu)
	ctx := context.Background()

	t.Run("gives up", func(t *testing.T) {
		v4, _ := addresses(emu)
		p := good(t, emu)
		p.ResolveTimeout = 200 * time.Millisecond
		emu.ResetCalls()
		start := time.Now()
		err := p.Set(ctx, v4, "mx1.example.org")
		if !errors.Is(err, ptr.ErrNotResolving) {
			t.Fatalf("Set without the A record = %v, want ptr.ErrNotResolving", err)
		}
		for _, want := range []string{"mx1.example.org", v4.String(), "A record", "Cannot check if", "gave up"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
			t.Errorf("gave up after %s, want about 200ms", d)
		}
		if n := emu.Count(postReverse); n < 3 {
			t.Errorf("%d POSTs, want retries", n)
		}
	})

	t.Run("context ends", func(t *testing.T) {
		_, v6 := addresses(emu)
		// Long enough for OVH's first refusal on a loaded machine; the
		// context may end during a retry's wait or its POST.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := p.Set(cctx, v6, "mx1.example.org")
		if !errors.Is(err, ptr.ErrNotResolving) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "AAAA record") {
			t.Fatalf("Set = %v, want ErrNotResolving and DeadlineExceeded naming the AAAA record", err)
		}
	})

	t.Run("succeeds once the record appears", func(t *testing.T) {
		v4, _ := addresses(emu)
		base := emu.Count(postReverse)
		done := make(chan error, 1)
		go func() { done <- p.Set(ctx, v4, "mx2.example.org") }()
		// Let OVH refuse three times, then publish the A record.
		for emu.Count(postReverse) < base+3 {
			select {
			case err := <-done:
				t.Fatalf("Set returned %v before the A record existed", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		emu.AddZone("example.org")
		emu.Seed("example.org", ovhemu.Record{SubDomain: "mx2", FieldType: "A", Target: v4.String(), TTL: 60})
		if err := <-done; err != nil {
			t.Fatalf("Set after the A record appeared: %v", err)
		}
		if got := emu.Reverse(v4.String()); got != "mx2.example.org." {
			t.Fatalf("stored reverse = %q", got)
		}
	})
}

// TestConverged checks that setting the current value makes no change, so
// that a re-run of apply does not wait on a forward record broken meanwhile.
func TestConverged(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	v4, v6 := addresses(emu)
	emu.SetReverse(v4.String(), "mx1.example.org.")
	p := good(t, emu)
	ctx := context.Background()
	if err := p.Set(ctx, v4, "MX1.example.org."); err != nil {
		t.Fatalf("Set of the current value: %v", err)
	}
	if err := p.Set(ctx, v6, ""); err != nil {
		t.Fatalf("removing an unset reverse: %v", err)
	}
	if n := emu.Count(postReverse) + emu.Count("DELETE /1.0/ip/{block}/reverse/{ipReverse}"); n != 0 {
		t.Fatalf("%d changes, want none", n)
	}
}

func TestCredentialErrors(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	v4, _ := addresses(emu)
	emu.SetForwardCheck(false)
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		ak, as, ck string
		want       string
	}{
		{"application key", "nope", emu.ApplicationSecret, emu.ConsumerKey, "application_key was refused (HTTP 401)"},
		{"application secret", emu.ApplicationKey, "nope", emu.ConsumerKey, "application_secret (or application_key) was refused"},
		{"consumer key", emu.ApplicationKey, emu.ApplicationSecret, "nope", "consumer_key (not validated, expired or revoked) was refused"},
		{"read-only consumer key", emu.ApplicationKey, emu.ApplicationSecret, emu.ReadOnlyConsumerKey, "consumer_key lacks a permission (HTTP 403): it needs access rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t, emu, tc.ak, tc.as, tc.ck)
			err := p.Set(ctx, v4, "mx1.example.org")
			if !errors.Is(err, ptr.ErrAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Set = %v, want ErrAuth saying %q", err, tc.want)
			}
		})
	}
	if got := emu.Reverse(v4.String()); got != "" {
		t.Fatalf("a refused call stored %q", got)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	emu := ovhemu.New(t)
	v4, _ := addresses(emu)
	emu.SetReverse(v4.String(), "old.example.org.")
	p := good(t, emu)
	ctx := context.Background()

	emu.Inject(emulator.Fault{Pattern: getReverse, Status: http.StatusTooManyRequests, RetryAfter: "0", Count: 2})
	emu.Inject(emulator.Fault{Pattern: getReverse, Status: http.StatusInternalServerError, Count: 1})
	got, err := p.Get(ctx, v4)
	if err != nil || got != "old.example.org" {
		t.Fatalf("Get after 429, 429, 500 = %q, %v", got, err)
	}
	if n := emu.Count(getReverse); n != 4 {
		t.Errorf("%d GETs, want 4 (3 faults then success)", n)
	}

	emu.Inject(emulator.Fault{Pattern: getReverse, Status: http.StatusServiceUnavailable, Count: 10})
	defer emu.ClearFaults()
	_, err = p.Get(ctx, v4)
	if err == nil || !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), "read the reverse of "+v4.String()) {
		t.Fatalf("Get with a persistent 503 = %v", err)
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	if _, ok := ptr.Lookup("ovh"); !ok {
		t.Fatal("kind ovh not registered")
	}
	_, err := ptr.New("ovh", ptr.Config{Attrs: map[string]string{"application_key": "x", "zone": "y"}})
	if !errors.Is(err, ptr.ErrConfig) || !strings.Contains(err.Error(), `"consumer_key"`) || !strings.Contains(err.Error(), `no attribute "zone"`) {
		t.Fatalf("New with missing and unknown attributes = %v", err)
	}
	if _, err := ptr.New("ovh", ptr.Config{Attrs: map[string]string{"endpoint": "ovh-mars", "application_key": "a", "application_secret": "b", "consumer_key": "c"}}); !errors.Is(err, ptr.ErrConfig) {
		t.Fatalf("New with an unknown endpoint = %v", err)
	}
}
