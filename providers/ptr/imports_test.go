package ptr_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDNSImport: the reverse DNS registry and its adapters share
// providers/base with the DNS registry and import nothing of it, so that
// a change to one registry does not reach into the other.
func TestNoDNSImport(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is needed to list imports")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/mailctl/mailctl/providers/ptr/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/mailctl/mailctl/providers/dns" || strings.HasPrefix(p, "github.com/mailctl/mailctl/providers/dns/") {
			t.Errorf("providers/ptr/... depends on %s", p)
		}
	}
}
