package apply_test

import (
	"bytes"
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/providers/dns"
)

// slowProvider takes delay for each Apply.
type slowProvider struct{ delay time.Duration }

func (p slowProvider) Records(context.Context, string) ([]libdns.RR, error) { return nil, nil }
func (p slowProvider) Apply(ctx context.Context, _ string, _, _ []libdns.RR) error {
	select {
	case <-time.After(p.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStillApplying: a change that takes long prints Terraform's "Still
// creating... [Ns elapsed]" while it runs.
func TestStillApplying(t *testing.T) {
	t.Parallel()
	p := &plan.Plan{Changes: []plan.Change{{
		Address: "dns.example.org._dmarc.TXT", Type: "dns_rrset", Action: plan.Create, Provider: "provider.x.y",
		Zone: "example.org", Name: "_dmarc", RRType: "TXT", After: &plan.RRSet{TTL: 3600, Values: []string{"v=DMARC1; p=none"}},
	}}}
	var out syncBuffer
	res, err := apply.DNS(context.Background(), p, map[string]dns.Provider{"provider.x.y": slowProvider{300 * time.Millisecond}},
		apply.Options{Progress: &out, StillEvery: 50 * time.Millisecond})
	if err != nil || res.Added != 1 {
		t.Fatalf("DNS = %+v, %v", res, err)
	}
	if !regexp.MustCompile(`(?m)^dns\.example\.org\._dmarc\.TXT: Still creating\.\.\. \[\d+s elapsed\]$`).MatchString(out.String()) {
		t.Errorf("no progress line for a slow change:\n%s", out.String())
	}
}
