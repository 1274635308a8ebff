package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
)

func TestRecipientDelimiter(t *testing.T) {
	t.Parallel()
	d := testDirectory(t)
	if got := d.RecipientDelimiter(); got != "+" {
		t.Errorf("default delimiter = %q, want +", got)
	}
	resolve := func(addr string) string {
		r, err := d.Resolve(addr)
		if errors.Is(err, auth.ErrUnknownRecipient) {
			return "unknown"
		}
		if err != nil {
			t.Fatalf("Resolve(%q) = %v", addr, err)
		}
		return strings.Join(r.Users, ",")
	}
	steps := []struct {
		delims string
		want   map[string]string
	}{
		{"+", map[string]string{"alice+x@example.org": "alice@example.org", "alice-x@example.org": "unknown"}},
		{"+-", map[string]string{
			"alice+x@example.org": "alice@example.org", "alice-x@example.org": "alice@example.org",
			"alice-x+y@example.org": "alice@example.org", // split at the first delimiter of any kind
			"team-2026@example.org": "alice@example.org,bob@example.org",
		}},
		{"-", map[string]string{"alice+x@example.org": "unknown", "alice-x+y@example.org": "alice@example.org"}},
		{"", map[string]string{"alice+x@example.org": "unknown", "alice@example.org": "alice@example.org"}},
	}
	for _, s := range steps {
		if err := d.SetRecipientDelimiter(s.delims); err != nil {
			t.Fatalf("SetRecipientDelimiter(%q) = %v", s.delims, err)
		}
		for addr, want := range s.want {
			if got := resolve(addr); got != want {
				t.Errorf("delimiter %q: Resolve(%q) = %s, want %s", s.delims, addr, got, want)
			}
		}
	}
	for _, bad := range []string{"a", ".", "++", "+@", " "} {
		if err := d.SetRecipientDelimiter(bad); err == nil {
			t.Errorf("SetRecipientDelimiter(%q) = nil, want an error", bad)
		}
	}
	if got := d.RecipientDelimiter(); got != "" {
		t.Errorf("a refused delimiter changed the setting to %q", got)
	}
}
