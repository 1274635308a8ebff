package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/preflight"
	"github.com/mailctl/mailctl/plan/verify"
)

// probePort is where a systemd socket unit in the guest greets like an MX:
// the guest has no route out, so the outbound port 25 probe that passes
// is a local one.
const probePort = 2525

// installProbe starts a socket-activated greeter on 127.0.0.1:probePort in
// the guest (minbase has no nc or python) and removes it when the test
// ends.
func installProbe(ctx context.Context, t *testing.T) {
	t.Helper()
	c := dialVPS(t)
	script := fmt.Sprintf(`set -e
cat > /run/systemd/system/preflight-probe.socket <<'EOF'
[Socket]
ListenStream=127.0.0.1:%d
Accept=yes
EOF
cat > /run/systemd/system/preflight-probe@.service <<'EOF'
[Service]
ExecStart=/bin/sh -c 'printf "220 probe.test ESMTP preflight\r\n"; read -r line'
StandardInput=socket
StandardOutput=socket
EOF
systemctl daemon-reload
systemctl start preflight-probe.socket`, probePort)
	if out, err := c.Run(ctx, script, nil); err != nil {
		t.Fatalf("install the probe unit: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		c.Run(context.Background(), "systemctl stop preflight-probe.socket; rm -f /run/systemd/system/preflight-probe.socket /run/systemd/system/preflight-probe@.service", nil)
	})
}

type preflightReport struct {
	Results []verify.Result `json:"results"`
}

func (r preflightReport) get(t *testing.T, check string) verify.Result {
	t.Helper()
	for _, res := range r.Results {
		if res.Check == check {
			return res
		}
	}
	t.Fatalf("no %s result in %+v", check, r.Results)
	return verify.Result{}
}

// TestPreflightVPS runs the built mailctl preflight against the Debian VM:
// SSH with the pinned key, the OS, memory, disk and ports of a fresh
// server pass; outbound port 25 passes towards a greeter and fails, with
// the provider fix, towards the host (the VM's network is restricted, as
// a provider that blocks port 25).
func TestPreflightVPS(t *testing.T) {
	v := sharedVPS(t)
	ctx, cancel := vmContext(t, 8*time.Minute)
	defer cancel()
	installProbe(ctx, t)

	bin := filepath.Join(t.TempDir(), "mailctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/mailctl").CombinedOutput(); err != nil {
		t.Fatalf("build mailctl: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`provider "zonefile" "z" {
  dir = "zones"
}
server "vps" {
  hostname = "mx1.example.org"
  ipv4     = "192.0.2.10"
  ssh {
    address  = %q
    host_key = %q
    identity = %q
  }
  tls {
    self_signed = true
  }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.vps
}
`, v.Addr, v.HostKey, v.KeyFile)
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	runPreflight := func(probe string) (preflightReport, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, "-chdir", dir, "preflight", "-json", "-dnsbl", "none", "-outbound-probe", probe, "-timeout", "120s")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		t0 := time.Now()
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		t.Logf("mailctl preflight -outbound-probe %s: exit %d in %.1fs", probe, code, time.Since(t0).Seconds())
		if code != 0 && code != 2 {
			t.Fatalf("mailctl preflight: %v\n%s", err, stderr.String())
		}
		var rep preflightReport
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("preflight -json: %v\n%s", err, stdout.String())
		}
		for _, r := range rep.Results {
			t.Logf("  %-10s %-6s %s", r.Check, r.Status, r.Detail)
		}
		return rep, code
	}

	rep, code := runPreflight(fmt.Sprintf("127.0.0.1:%d", probePort))
	for _, c := range []string{"ssh", "os", "memory", "ports", "outbound25"} {
		if r := rep.get(t, c); r.Status != verify.Pass {
			t.Errorf("%s = %v %q (fix %q), want pass", c, r.Status, r.Detail, r.Fix)
		}
	}
	// The VM's disk is 2 GiB, about 1.6 GiB free: under the 2 GiB warning.
	if r := rep.get(t, "disk"); r.Status == verify.Fail || !strings.Contains(r.Detail, "/ ") {
		t.Errorf("disk = %v %q, want pass or warn", r.Status, r.Detail)
	}
	if r := rep.get(t, "outbound25"); !strings.Contains(r.Detail, "220 probe.test ESMTP preflight") {
		t.Errorf("outbound25 = %q, want the greeting", r.Detail)
	}
	if r := rep.get(t, "ptr"); r.Status != verify.Warn {
		t.Errorf("ptr without a provider = %v, want warn", r.Status)
	}
	if code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}

	// A listener of the host, at 10.0.2.2 for the guest: restrict=on keeps
	// the guest from reaching it, as a provider blocking port 25 does.
	_, hostPort, err := net.SplitHostPort(testenv.SMTPGreeter(t, "220 host.test ESMTP"))
	if err != nil {
		t.Fatal(err)
	}
	rep, code = runPreflight("10.0.2.2:" + hostPort)
	r := rep.get(t, "outbound25")
	if r.Status != verify.Fail || !strings.Contains(r.Fix, "your provider blocks outbound port 25") {
		t.Errorf("outbound25 to the host = %v %q (fix %q), want fail with the provider fix", r.Status, r.Detail, r.Fix)
	}
	if code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}

	// The default probe, through the check that verify adds: the guest has
	// no resolver, so the name of Gmail's MX does not resolve.
	c := dialVPS(t)
	t0 := time.Now()
	rs := preflight.Outbound25Check(c, nil, "").Run(ctx)
	t.Logf("Outbound25Check with the default probe: %.1fs: %+v", time.Since(t0).Seconds(), rs)
	if len(rs) != 1 || rs[0].Status != verify.Fail || !strings.Contains(rs[0].Detail, "cannot resolve gmail-smtp-in.l.google.com") {
		t.Errorf("Outbound25Check(default probe) = %+v, want fail: cannot resolve", rs)
	}
}
