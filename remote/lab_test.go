package remote_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailctl/mailctl/remote"
)

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func banner(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		t.Fatalf("dial %d: %v", port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestLab(t *testing.T) {
	ctx := context.Background()
	ok1 := fakeServer(t, "1", "ok")
	ok2 := fakeServer(t, "2", "ok")
	broken := fakeServer(t, "3", "broken")
	ports := freePorts(t, 3)
	health := remote.Health{BannerPorts: ports[:2], ListenPorts: ports[2:], Timeout: 10 * time.Second}
	config := func(extra string) []byte {
		return []byte(fmt.Sprintf(`{"banner_ports":[%d,%d],"listen_ports":[%d]%s}`, ports[0], ports[1], ports[2], extra))
	}
	lab := remote.Lab{Dir: filepath.Join(t.TempDir(), ".mailctl")}
	t.Cleanup(func() { lab.Stop(context.Background()) })
	deploy := func(t *testing.T, bin []byte, version string, cfg []byte) (remote.DeployResult, error) {
		t.Helper()
		return lab.Deploy(ctx, remote.DeployOptions{Version: version, Binary: strings.NewReader(string(bin)), SHA256: sum(bin), Config: cfg, Health: health})
	}
	actions := func(r remote.DeployResult) string {
		var a []string
		for _, s := range r.Actions {
			a = append(a, strings.Fields(s)[0])
		}
		return strings.Join(a, ",")
	}
	pid := func(t *testing.T) int {
		t.Helper()
		p, ok := lab.Running()
		if !ok {
			t.Fatal("lab server not running")
		}
		b, err := os.ReadFile(lab.PIDFile())
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(p) {
			t.Fatalf("pid file = %q, %v; want %d", b, err, p)
		}
		return p
	}

	if _, err := lab.Status(ctx); err != remote.ErrNotDeployed {
		t.Fatalf("Status before deploy = %v, want ErrNotDeployed", err)
	}
	var first int
	t.Run("first deploy starts", func(t *testing.T) {
		r, err := deploy(t, ok1, "1", config(""))
		if err != nil {
			t.Fatal(err)
		}
		if got := actions(r); got != "install,write,start" {
			t.Errorf("actions = %v, want install, write config, start", r.Actions)
		}
		first = pid(t)
		if got := banner(t, ports[0]); got != "220 fake ESMTP build 1" {
			t.Errorf("banner = %q", got)
		}
		// Detached: its own session and process group.
		if sid, _ := unix.Getsid(first); sid != first {
			t.Errorf("server session id = %d, want its own (%d)", sid, first)
		}
	})
	t.Run("second deploy changes nothing", func(t *testing.T) {
		r, err := deploy(t, ok1, "1", config(""))
		if err != nil || r.Changed() {
			t.Fatalf("Deploy = %v, %v; want no change", r.Actions, err)
		}
		if p := pid(t); p != first {
			t.Errorf("pid %d, want unchanged %d", p, first)
		}
	})
	t.Run("config change reloads", func(t *testing.T) {
		r, err := deploy(t, ok1, "1", config(`,"x":1`))
		if err != nil || actions(r) != "write,reload" {
			t.Fatalf("Deploy = %v, %v; want write config, reload", r.Actions, err)
		}
		if p := pid(t); p != first {
			t.Errorf("pid %d, want unchanged %d after a reload", p, first)
		}
		waitFor(t, func() bool {
			b, _ := os.ReadFile(lab.LogFile())
			return strings.Contains(string(b), "fakeserver reloaded (1)")
		}, "the server logs its reload")
	})
	t.Run("restarted when dead", func(t *testing.T) {
		syscall.Kill(first, syscall.SIGKILL)
		waitFor(t, func() bool { _, ok := lab.Running(); return !ok }, "the server is dead")
		r, err := deploy(t, ok1, "1", config(`,"x":1`))
		if err != nil || actions(r) != "start" {
			t.Fatalf("Deploy = %v, %v; want start", r.Actions, err)
		}
		if p := pid(t); p == first {
			t.Errorf("pid unchanged %d after a restart", p)
		}
	})
	t.Run("new release restarts", func(t *testing.T) {
		before := pid(t)
		r, err := deploy(t, ok2, "1", config(`,"x":1`))
		if err != nil || actions(r) != "install,restart" {
			t.Fatalf("Deploy = %v, %v; want install, restart", r.Actions, err)
		}
		if p := pid(t); p == before {
			t.Error("pid unchanged after a new release")
		}
		if syscall.Kill(before, 0) == nil {
			t.Errorf("old server %d still runs", before)
		}
		if got := banner(t, ports[0]); got != "220 fake ESMTP build 2" {
			t.Errorf("banner = %q, want build 2", got)
		}
		out, err := lab.Status(ctx)
		var st struct{ Version string }
		if err != nil || json.Unmarshal(out, &st) != nil || st.Version != "2" {
			t.Errorf("Status = %s, %v; want version 2", out, err)
		}
	})
	t.Run("broken release rolls back", func(t *testing.T) {
		good := pid(t)
		_ = good
		r, err := deploy(t, broken, "1", config(`,"x":1`))
		if err == nil {
			t.Fatalf("Deploy(broken) = %v, want an error", r.Actions)
		}
		msg := err.Error()
		for _, want := range []string{"exited", "rolled back to release 1-" + sum(ok2)[:12], "broken build 3"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		pid(t)
		if got := banner(t, ports[0]); got != "220 fake ESMTP build 2" {
			t.Errorf("after rollback banner = %q, want build 2", got)
		}
		r, err = deploy(t, ok2, "1", config(`,"x":1`))
		if err != nil || r.Changed() {
			t.Errorf("Deploy(good) after rollback = %v, %v; want no change", r.Actions, err)
		}
	})
	t.Run("destroy", func(t *testing.T) {
		p := pid(t)
		os.WriteFile(filepath.Join(lab.Layout().DataDir, "mail"), []byte("keep me"), 0o600)
		changed, err := lab.Destroy(ctx, false)
		if err != nil || !changed {
			t.Fatalf("Destroy = %v, %v", changed, err)
		}
		if syscall.Kill(p, 0) == nil {
			t.Errorf("server %d still runs", p)
		}
		for _, f := range []string{lab.PIDFile(), lab.Layout().ConfigFile, lab.Layout().Current(), lab.Layout().Releases()} {
			if _, err := os.Lstat(f); err == nil {
				t.Errorf("%s still exists", f)
			}
		}
		if _, err := os.Stat(filepath.Join(lab.Layout().DataDir, "mail")); err != nil {
			t.Errorf("data removed without purge: %v", err)
		}
		changed, err = lab.Destroy(ctx, true)
		if err != nil || !changed {
			t.Fatalf("Destroy(purge) = %v, %v", changed, err)
		}
		if left, err := os.ReadDir(lab.Dir); err == nil {
			t.Errorf("lab dir remains after purge, with %v", left)
		}
		changed, err = lab.Destroy(ctx, true)
		if err != nil || changed {
			t.Errorf("Destroy again = %v, %v; want no change", changed, err)
		}
	})
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLabEnvAndForeignServer: the lab server does not inherit apply's
// environment (provider tokens); destroy does not trust the pid file when
// another server of the lab runs (started by hand with a relative
// -config), says so, and removes nothing.
func TestLabEnvAndForeignServer(t *testing.T) {
	ctx := context.Background()
	t.Setenv("HCLOUD_TOKEN", "secret-provider-token")
	bin := fakeServer(t, "1", "ok")
	ports := freePorts(t, 3)
	health := remote.Health{BannerPorts: ports[:2], ListenPorts: ports[2:], Timeout: 10 * time.Second}
	cfg := []byte(fmt.Sprintf(`{"banner_ports":[%d,%d],"listen_ports":[%d]}`, ports[0], ports[1], ports[2]))
	lab := remote.Lab{Dir: filepath.Join(t.TempDir(), ".mailctl")}
	t.Cleanup(func() { lab.Stop(context.Background()) })
	if _, err := lab.Deploy(ctx, remote.DeployOptions{Version: "1", Binary: strings.NewReader(string(bin)), SHA256: sum(bin), Config: cfg, Health: health}); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(lab.LogFile())
	if !strings.Contains(string(log), "fakeserver env: ") || !strings.Contains(string(log), "PATH=") {
		t.Fatalf("log %q lacks the server's environment", log)
	}
	if strings.Contains(string(log), "secret-provider-token") {
		t.Errorf("the lab server inherited HCLOUD_TOKEN: %q", log)
	}

	// The recorded server dies; one started by hand takes its place.
	recorded, _ := lab.Running()
	syscall.Kill(recorded, syscall.SIGKILL)
	waitFor(t, func() bool { _, ok := lab.Running(); return !ok }, "the recorded server is dead")
	l := lab.Layout()
	manual := exec.Command(l.Binary(), "serve", "-config", "../server.json")
	manual.Dir = l.DataDir
	if err := manual.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { manual.Process.Kill(); manual.Wait() })
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "the manual server listens")
	mail := filepath.Join(l.DataDir, "mail")
	os.WriteFile(mail, []byte("keep me"), 0o600)

	changed, err := lab.Destroy(ctx, true)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(manual.Process.Pid)) || changed {
		t.Fatalf("Destroy with a server running by hand = %v, %v; want an error naming pid %d", changed, err, manual.Process.Pid)
	}
	if _, err := os.Stat(mail); err != nil {
		t.Errorf("data removed while a server runs: %v", err)
	}
	if _, err := os.Stat(l.ConfigFile); err != nil {
		t.Errorf("configuration removed while a server runs: %v", err)
	}
	if syscall.Kill(manual.Process.Pid, 0) != nil {
		t.Errorf("the manual server was stopped")
	}
	manual.Process.Kill()
	manual.Wait()
	if changed, err := lab.Destroy(ctx, true); err != nil || !changed {
		t.Fatalf("Destroy once it stopped = %v, %v", changed, err)
	}
	if _, err := os.Stat(mail); err == nil {
		t.Errorf("data kept after Destroy(purge)")
	}
}
