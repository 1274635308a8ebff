package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePorts returns n TCP ports free on 127.0.0.1 right now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// labOnFreePorts writes examples/local/mail.hcl into a new directory with
// its ports moved to free ones, so that it runs beside TestLocalLab.
func labOnFreePorts(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../../examples/local/mail.hcl")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(src)
	ports := freePorts(t, 6)
	for i, old := range []string{"2525", "2587", "2465", "2143", "2993", "2443"} {
		moved := strings.Replace(conf, "= "+old, "= "+strconv.Itoa(ports[i]), 1)
		if moved == conf {
			t.Fatalf("examples/local/mail.hcl has no port %s to move", old)
		}
		conf = moved
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf, 0o644)
	return dir
}

// stopLab kills the lab server of dir as a crash or a reboot would,
// leaving its release, configuration and data in place.
func stopLab(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".mailctl", "mailctl.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("lab server pid %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPlanStoppedLab: with the lab server stopped, plan does not show its
// mailboxes as to be created nor its DKIM records as to change from an
// empty state: it fails naming the cause, unless the server is outside
// -target; `apply -target=server.lab` starts it again.
func TestPlanStoppedLab(t *testing.T) {
	bin := buildBinary(t)
	dir := labOnFreePorts(t)
	t.Cleanup(func() { mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve") })
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false", "-wait=0"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	stopLab(t, dir)

	out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode")
	if code != 1 {
		t.Errorf("plan with the server stopped = %d, want 1:\n%s", code, out)
	}
	for _, bad := range []string{"will be created", "known after apply", "Plan:"} {
		if strings.Contains(out, bad) {
			t.Errorf("plan with the server stopped shows %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, "Error: server.lab: server not running") || !strings.Contains(out, "apply -target=server.lab") {
		t.Errorf("plan with the server stopped does not name the cause and the way out:\n%s", out)
	}

	// The server outside -target: the plan goes on, with Terraform's
	// warning about targeting.
	out, code = mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode", "-target=dns.example.test.MX")
	if code != 0 || !strings.Contains(out, "Warning: Resource targeting is in effect") {
		t.Errorf("plan -target=dns.example.test.MX with the server stopped = %d, want 0 and a targeting warning:\n%s", code, out)
	}

	// The server alone: apply starts it, then the full plan is clean.
	out, code = mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false", "-wait=0", "-target=server.lab")
	if code != 0 || !strings.Contains(out, "the service is not running: start it") || strings.Contains(out, "user.alice@example.test will be created") {
		t.Fatalf("apply -target=server.lab = %d:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("plan after the restart = %d:\n%s", code, out)
	}
}
