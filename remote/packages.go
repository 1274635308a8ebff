package remote

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// debianPackage is the syntax of a Debian package name (Debian Policy
// 5.6.1), which also keeps it safe in a shell command.
var debianPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// packagesScript installs the packages given as arguments that are not
// installed, from the distribution, then makes sure each package's
// service of the same name is enabled and running. It prints
// "installed NAME..." when it installed something.
const packagesScript = `set -e
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
    echo "installed$missing"
fi
for p in "$@"; do
    systemctl is-active --quiet "$p" || systemctl enable --now --quiet "$p"
done
`

// EnsurePackages installs the Debian packages of pkgs that the target
// lacks (apt-get, non-interactive) and enables and starts the service of
// each (a package whose service has its name, like rspamd). It returns
// the packages it installed.
func EnsurePackages(ctx context.Context, t Target, pkgs []string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	for _, p := range pkgs {
		if !debianPackage.MatchString(p) {
			return nil, fmt.Errorf("install packages: %q is not a Debian package name", p)
		}
	}
	out, err := t.Run(ctx, "sh -c '"+strings.ReplaceAll(packagesScript, "'", `'\''`)+"' packages "+strings.Join(pkgs, " "), nil)
	if err != nil {
		return nil, fmt.Errorf("install packages %s: %w", strings.Join(pkgs, " "), err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(l, "installed "); ok {
			return strings.Fields(rest), nil
		}
	}
	return nil, nil
}
