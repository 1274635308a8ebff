package apply_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/apply"
	"github.com/mailctl/mailctl/providers/dns"
)

// partialProvider applies zones whole but stops after the first n edits,
// as Cloudflare's batches do when a later batch is refused.
type partialProvider struct {
	slowProvider
	n int
}

func (p partialProvider) ApplyZone(_ context.Context, zone string, edits []dns.SetEdit) error {
	if len(edits) <= p.n {
		return nil
	}
	return &dns.PartialError{Applied: p.n, Err: fmt.Errorf("batch refused in zone %s", zone)}
}

// TestApplyZonePartial: when a provider applied only the first changes of
// a zone (dns.PartialError), those are counted and reported complete, the
// others not applied.
func TestApplyZonePartial(t *testing.T) {
	t.Parallel()
	var changes []plan.Change
	for i := range 5 {
		c := create("a.example", fmt.Sprintf("h%d", i), "A", "192.0.2.1")
		c.Provider = "provider.x.y"
		changes = append(changes, c)
	}
	var out syncBuffer
	res, err := apply.DNS(context.Background(), &plan.Plan{Changes: changes},
		map[string]dns.Provider{"provider.x.y": partialProvider{n: 3}}, apply.Options{Progress: &out})
	if err == nil || !strings.Contains(err.Error(), "batch refused") || !strings.Contains(err.Error(), "first 3 changes") {
		t.Errorf("DNS error = %v, want the refusal and the 3 applied", err)
	}
	want := []string{changes[3].Address, changes[4].Address}
	if res.Added != 3 || !slices.Equal(res.NotApplied, want) {
		t.Errorf("DNS = %+v, want 3 added and %v not applied", res, want)
	}
	for _, c := range changes[:3] {
		if !strings.Contains(out.String(), c.Address+": "+c.Action.Verb()+" complete") {
			t.Errorf("no completion line for %s:\n%s", c.Address, out.String())
		}
	}
}
