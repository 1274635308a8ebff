package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mailctl/mailctl/remote"
)

// buildFake builds remote/testdata/fakeserver, a stand-in for
// "mailctl serve" that greets on its banner ports.
func buildFake(t *testing.T, build, mode string) ([]byte, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "fake")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.build="+build+" -X main.mode="+mode, "-o", out, "github.com/mailctl/mailctl/remote/testdata/fakeserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fake server: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

func hostBanner(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial forwarded port %d: %v", port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// show returns systemctl show properties of the unit.
func show(t *testing.T, c remote.Target, props ...string) map[string]string {
	t.Helper()
	out, err := c.Run(context.Background(), "systemctl show mailctl -p "+strings.Join(props, " -p "), nil)
	if err != nil {
		t.Fatalf("systemctl show: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func run(t *testing.T, c remote.Target, cmd string) string {
	t.Helper()
	out, err := c.Run(context.Background(), cmd, nil)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimSpace(string(out))
}

func TestDeployToVPS(t *testing.T) {
	v := sharedVPS(t)
	start := time.Now()
	c := dialVPS(t)
	t.Logf("SSH connect: %.2fs", time.Since(start).Seconds())
	start = time.Now()
	run(t, c, "true")
	t.Logf("one command on the open connection: %.2fs", time.Since(start).Seconds())
	ctx, cancel := vmContext(t, 6*time.Minute)
	defer cancel()
	// Start clean even if another test left a deployment behind.
	if _, err := remote.Destroy(ctx, c, true); err != nil {
		t.Fatalf("Destroy before the test: %v", err)
	}
	t.Cleanup(func() { remote.Destroy(context.Background(), c, true) })

	ok1, sum1 := buildFake(t, "1", "ok")
	ok2, sum2 := buildFake(t, "2", "ok")
	broken, sumBroken := buildFake(t, "3", "broken")
	cfg := func(extra string) []byte {
		return []byte(`{"banner_ports":[25,587],"listen_ports":[465,993]` + extra + "}")
	}
	health := remote.Health{Timeout: vmTimeout(90 * time.Second)}
	deploy := func(bin []byte, sum string, config []byte) (remote.DeployResult, time.Duration, error) {
		t0 := time.Now()
		r, err := remote.Deploy(ctx, c, remote.DeployOptions{Version: "0.1.0", Binary: strings.NewReader(string(bin)), SHA256: sum, Config: config, Health: health})
		return r, time.Since(t0), err
	}

	if _, err := remote.Status(ctx, c); !errors.Is(err, remote.ErrNotDeployed) {
		t.Fatalf("Status before deploy = %v, want ErrNotDeployed", err)
	}

	var before map[string]string
	t.Run("first deploy", func(t *testing.T) {
		r, d, err := deploy(ok1, sum1, cfg(""))
		t.Logf("first deploy: %.1fs, %d bytes, actions %v", d.Seconds(), len(ok1), r.Actions)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Actions) != 5 || r.Actions[len(r.Actions)-1] != "restart" {
			t.Errorf("actions = %v, want user, release, config, unit, restart", r.Actions)
		}
		before = show(t, c, "ActiveState", "ActiveEnterTimestamp", "MainPID", "User", "NoNewPrivileges",
			"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "AmbientCapabilities",
			"CapabilityBoundingSet", "RestrictNamespaces", "MemoryDenyWriteExecute", "LockPersonality",
			"ReadWritePaths", "LimitNOFILE", "Restart", "UnitFileState", "SystemCallArchitectures")
		want := map[string]string{
			"ActiveState": "active", "User": "mailctl", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
			"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
			"AmbientCapabilities": "cap_net_bind_service", "CapabilityBoundingSet": "cap_net_bind_service",
			"RestrictNamespaces": "yes", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes",
			"ReadWritePaths": "/var/lib/mailctl", "LimitNOFILE": "65536", "Restart": "on-failure",
			"UnitFileState": "enabled", "SystemCallArchitectures": "native",
		}
		for k, w := range want {
			if before[k] != w {
				t.Errorf("systemctl show %s = %q, want %q", k, before[k], w)
			}
		}
		if u := run(t, c, "ps -o user= -p "+before["MainPID"]); u != "mailctl" {
			t.Errorf("server runs as %q, want mailctl", u)
		}
		if got := hostBanner(t, v.HostPort(25)); got != "220 fake ESMTP build 1" {
			t.Errorf("banner on forwarded port 25 = %q", got)
		}
		if got := run(t, c, "stat -c '%a %U %G' /etc/mailctl /etc/mailctl/server.json /var/lib/mailctl /var/lib/mailctl/fakeserver.started"); got != "750 root mailctl\n640 root mailctl\n700 mailctl mailctl\n600 mailctl mailctl" {
			t.Errorf("modes and owners:\n%s", got)
		}
		if got := run(t, c, "getent passwd mailctl | cut -d: -f7"); got != "/usr/sbin/nologin" {
			t.Errorf("mailctl shell = %q", got)
		}
		// The sandbox: the server cannot write outside its data directory.
		if out, err := c.Run(ctx, "systemd-run --wait --quiet -p User=mailctl -p ProtectSystem=strict touch /etc/mailctl/x", nil); err == nil {
			t.Errorf("a ProtectSystem=strict process wrote to /etc/mailctl: %s", out)
		}
	})
	t.Run("second deploy changes nothing", func(t *testing.T) {
		r, d, err := deploy(ok1, sum1, cfg(""))
		t.Logf("no-op deploy: %.1fs", d.Seconds())
		if err != nil || r.Changed() {
			t.Fatalf("Deploy = %v, %v; want no change", r.Actions, err)
		}
		after := show(t, c, "ActiveEnterTimestamp", "MainPID")
		if after["ActiveEnterTimestamp"] != before["ActiveEnterTimestamp"] || after["MainPID"] != before["MainPID"] {
			t.Errorf("service restarted: %v -> %v", before, after)
		}
	})
	t.Run("config change reloads", func(t *testing.T) {
		r, d, err := deploy(ok1, sum1, cfg(`,"x":1`))
		t.Logf("config-only deploy: %.1fs", d.Seconds())
		if err != nil || strings.Join(r.Actions, ",") != "write config,reload" {
			t.Fatalf("Deploy = %v, %v; want write config, reload", r.Actions, err)
		}
		after := show(t, c, "ActiveEnterTimestamp", "MainPID")
		if after["ActiveEnterTimestamp"] != before["ActiveEnterTimestamp"] || after["MainPID"] != before["MainPID"] {
			t.Errorf("service restarted instead of reloaded: %v -> %v", before, after)
		}
		if got := run(t, c, "cat /var/lib/mailctl/fakeserver.reloads"); got != "1" {
			t.Errorf("reloads = %q, want 1", got)
		}
	})
	t.Run("new release restarts", func(t *testing.T) {
		r, d, err := deploy(ok2, sum2, cfg(`,"x":1`))
		t.Logf("new release deploy: %.1fs", d.Seconds())
		if err != nil || len(r.Actions) != 2 || r.Actions[1] != "restart" {
			t.Fatalf("Deploy = %v, %v; want install release, restart", r.Actions, err)
		}
		if got := hostBanner(t, v.HostPort(25)); got != "220 fake ESMTP build 2" {
			t.Errorf("banner = %q, want build 2", got)
		}
		out, err := remote.Status(ctx, c)
		var st struct{ Version string }
		if err != nil || json.Unmarshal(out, &st) != nil || st.Version != "2" {
			t.Errorf("Status = %s, %v; want version 2", out, err)
		}
	})
	t.Run("broken release rolled back", func(t *testing.T) {
		r, d, err := deploy(broken, sumBroken, cfg(`,"x":1`))
		t.Logf("broken deploy + rollback: %.1fs", d.Seconds())
		if err == nil {
			t.Fatalf("Deploy(broken) = %v, want an error", r.Actions)
		}
		msg := err.Error()
		t.Logf("the error a user reads:\n%s", msg)
		for _, want := range []string{"health check failed", "rolled back to release 0.1.0-" + sum2[:12], "broken build 3"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error lacks %q:\n%s", want, msg)
			}
		}
		if got := run(t, c, "readlink /opt/mailctl/current"); got != "releases/0.1.0-"+sum2[:12] {
			t.Errorf("current -> %s, want the build 2 release", got)
		}
		if got := hostBanner(t, v.HostPort(25)); got != "220 fake ESMTP build 2" {
			t.Errorf("banner after rollback = %q, want build 2", got)
		}
	})
	t.Run("destroy", func(t *testing.T) {
		changed, err := remote.Destroy(ctx, c, false)
		if err != nil || !changed {
			t.Fatalf("Destroy = %v, %v", changed, err)
		}
		if got := run(t, c, "test -e /etc/systemd/system/mailctl.service || test -e /opt/mailctl || test -e /etc/mailctl || echo gone; test -d /var/lib/mailctl && echo kept"); got != "gone\nkept" {
			t.Errorf("after Destroy: %q, want unit/releases/config gone, data kept", got)
		}
		if got := run(t, c, "systemctl is-active mailctl || true"); got != "inactive" {
			t.Errorf("unit state %q, want inactive", got)
		}
		if _, err := remote.Status(ctx, c); !errors.Is(err, remote.ErrNotDeployed) {
			t.Errorf("Status after Destroy = %v, want ErrNotDeployed", err)
		}
	})
}

func TestVPSHostKeyChanged(t *testing.T) {
	v := sharedVPS(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(other.Public())
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherPub)))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	host, port, _ := net.SplitHostPort(v.Addr)
	os.WriteFile(kh, []byte("["+host+"]:"+port+" "+line+"\n"), 0o600)
	for _, cfg := range []remote.SSHConfig{
		{Address: v.Addr, Identity: v.KeyFile, HostKey: line},
		{Address: v.Addr, Identity: v.KeyFile, KnownHosts: kh, AcceptNewHostKey: true},
	} {
		ctx, cancel := vmContext(t, 60*time.Second)
		c, err := remote.DialSSH(ctx, cfg)
		cancel()
		if err == nil {
			c.Close()
			t.Fatal("DialSSH with a changed host key succeeded")
		}
		var hk *remote.HostKeyError
		if !errors.As(err, &hk) || !hk.Changed || !strings.Contains(err.Error(), `host_key = "`+v.HostKey+`"`) {
			t.Errorf("DialSSH error = %v; want a changed host key error with the pin %q", err, v.HostKey)
		}
	}
}
