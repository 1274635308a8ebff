package remote_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/remote"
)

// fakeTools puts dpkg-query, apt-get and systemctl on PATH that log their
// arguments and answer from files: a package is installed when
// dir/installed/NAME exists, a service active when dir/active/NAME does.
func fakeTools(t *testing.T) (dir string, calls func() []string) {
	dir = t.TempDir()
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, filepath.Join(dir, "installed"), filepath.Join(dir, "active")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(dir, "calls")
	scripts := map[string]string{
		"dpkg-query": `p=$(eval echo \${$#}); [ -e "$D/installed/$p" ] && echo -n 'install ok installed' || exit 1`,
		"apt-get": `echo "apt-get $*" >> "$D/calls"
case "$1" in install) for a in "$@"; do case "$a" in -*|install) ;; *) touch "$D/installed/$a";; esac; done;; esac`,
		"systemctl": `echo "systemctl $*" >> "$D/calls"
case "$1" in is-active) [ -e "$D/active/$3" ];; enable) touch "$D/active/$4";; esac`,
	}
	for name, body := range scripts {
		text := "#!/bin/sh\nD=" + dir + "\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return dir, func() []string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
}

// TestEnsurePackages: a missing package is installed without questions and
// its service enabled and started; the second run changes nothing; a
// stopped service is started again; bad names never reach the shell.
func TestEnsurePackages(t *testing.T) {
	dir, calls := fakeTools(t)
	ctx := context.Background()
	got, err := remote.EnsurePackages(ctx, remote.Local{}, []string{"rspamd"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "rspamd" {
		t.Errorf("installed %q, want [rspamd]", got)
	}
	want := []string{"apt-get update -q", "apt-get install -y -q --no-install-recommends rspamd",
		"systemctl is-active --quiet rspamd", "systemctl enable --now --quiet rspamd"}
	if c := calls(); strings.Join(c, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant\n%s", strings.Join(c, "\n"), strings.Join(want, "\n"))
	}

	got, err = remote.EnsurePackages(ctx, remote.Local{}, []string{"rspamd"})
	if err != nil || len(got) != 0 {
		t.Errorf("second run: installed %q, %v; want nothing", got, err)
	}
	if c := calls(); strings.Join(c, "\n") != "systemctl is-active --quiet rspamd" {
		t.Errorf("second run calls %q", c)
	}

	os.Remove(filepath.Join(dir, "active", "rspamd"))
	if _, err := remote.EnsurePackages(ctx, remote.Local{}, []string{"rspamd"}); err != nil {
		t.Fatal(err)
	}
	if c := calls(); len(c) != 2 || c[1] != "systemctl enable --now --quiet rspamd" {
		t.Errorf("stopped service: calls %q", c)
	}

	for _, bad := range []string{"rspamd; rm -rf /", "Rspamd", "-y"} {
		if _, err := remote.EnsurePackages(ctx, remote.Local{}, []string{bad}); err == nil || !strings.Contains(err.Error(), "not a Debian package name") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if c := calls(); len(c) != 1 || c[0] != "" {
		t.Errorf("bad names ran %q", c)
	}
}
