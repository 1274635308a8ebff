// Package archtest holds tests of the repository's package structure.
//
// The provisioner (plan/..., providers/..., remote/...) talks to the
// bundled server only through the contract (package contract) and a few
// leaf packages the two sides share: the server configuration schema
// (server/config, with the address syntax of server/auth it validates
// with), the MTA-STS policy (server/mtasts) and the Authentication-Results
// syntax (server/authres). Importing any other server package would pull
// the whole mail server (IMAP, queue, store, ...) into the provisioner.
package archtest

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mailctl/mailctl/"

// sharedLeaves are the server packages the provisioner may import.
var sharedLeaves = []string{
	module + "server/auth",
	module + "server/authres",
	module + "server/config",
	module + "server/mtasts",
}

// contractImports are the only packages of the module the contract may
// import.
var contractImports = []string{
	module + "internal/formatversion",
}

// deps returns the non-test dependencies (transitive, with the package
// itself) of each package matching patterns, as go list reports them.
func deps(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	args := append([]string{"list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`}, patterns...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(patterns, " "), err, stderr.String())
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	if len(m) == 0 {
		t.Fatalf("go list %s listed no package", strings.Join(patterns, " "))
	}
	return m
}

// TestProvisionerImportsOnlyTheContract fails when a provisioner package
// depends on a server package other than the shared leaves.
func TestProvisionerImportsOnlyTheContract(t *testing.T) {
	pkgs := deps(t, "github.com/mailctl/mailctl/plan/...", "github.com/mailctl/mailctl/providers/...", "github.com/mailctl/mailctl/remote/...")
	for _, p := range sortedKeys(pkgs) {
		var bad []string
		for _, d := range pkgs[p] {
			if strings.HasPrefix(d, module+"server/") && !slices.Contains(sharedLeaves, d) {
				bad = append(bad, strings.TrimPrefix(d, module))
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s depends on server packages outside the contract: %s", strings.TrimPrefix(p, module), strings.Join(bad, ", "))
		}
	}
}

// TestSharedLeavesStayLeaves fails when a shared leaf (or the contract)
// grows a dependency on another package of the module, which would reach
// the provisioner through it.
func TestSharedLeavesStayLeaves(t *testing.T) {
	pkgs := deps(t, append([]string{module + "contract"}, sharedLeaves...)...)
	for _, p := range sortedKeys(pkgs) {
		allowed := append(slices.Clone(sharedLeaves), contractImports...)
		allowed = append(allowed, module+"contract")
		for _, d := range pkgs[p] {
			if strings.HasPrefix(d, module) && !slices.Contains(allowed, d) {
				t.Errorf("%s depends on %s: a shared leaf may depend only on the contract, the other shared leaves and %s",
					strings.TrimPrefix(p, module), strings.TrimPrefix(d, module), strings.Join(contractImports, ", "))
			}
		}
	}
}

func sortedKeys(m map[string][]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
