package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VPS is a disposable Debian 12 virtual machine (QEMU, systemd, OpenSSH,
// root login by key only) booted by the repository's scripts/vps/start.sh. Its
// SSH port and service ports are forwarded to free ports on 127.0.0.1;
// the guest has no other network.
type VPS struct {
	// Addr is the SSH address, 127.0.0.1:PORT.
	Addr string
	// KeyFile is root's private key; KnownHosts a known_hosts file with
	// the guest's ed25519 host key for Addr; HostKey the same key in
	// authorized_keys format (for a pinned host_key).
	KeyFile, KnownHosts, HostKey string
	// Accel is kvm or tcg; BootSeconds the boot-to-SSH time reported by
	// start.sh, Elapsed the whole start (including an image build).
	Accel       string
	BootSeconds float64
	Elapsed     time.Duration
	// StateDir holds the overlay disk, serial log and pid file.
	StateDir string

	forwards map[int]int // guest port -> host port
	dir      string      // the vps scripts' directory
	watchdog *exec.Cmd
}

// VPSGuestPorts are the guest ports forwarded to the host.
var VPSGuestPorts = []int{25, 587, 465, 993, 143, 443}

// VPSScriptsDir finds the directory of start.sh: $MAILCTL_VPS_DIR, else
// scripts/vps in the repository this package belongs to.
func VPSScriptsDir() (string, error) {
	if d := os.Getenv("MAILCTL_VPS_DIR"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find scripts/vps: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			c := filepath.Join(d, "scripts", "vps")
			if _, err := os.Stat(filepath.Join(c, "start.sh")); err != nil {
				return "", fmt.Errorf("find the VM scripts: %w (set MAILCTL_VPS_DIR)", err)
			}
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find scripts/vps: no go.mod above %s (set MAILCTL_VPS_DIR)", wd)
		}
	}
}

// BuildVPSImage builds the VM image with build-image.sh when it is not
// cached (a cache hit returns at once), printing a progress line to
// progress every 30 s: a cache miss downloads and bootstraps Debian, 3 to
// 10 minutes depending on the machine's load. Callers give it a deadline
// of its own, so that StartVPS's can stay that of a boot.
func BuildVPSImage(ctx context.Context, progress io.Writer) error {
	dir, err := VPSScriptsDir()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "build-image.sh"))
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("vps build-image.sh: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	start := time.Now()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				if ctx.Err() != nil {
					err = fmt.Errorf("%v (deadline exceeded after %s)", err, time.Since(start).Round(time.Second))
				}
				return fmt.Errorf("vps build-image.sh: %v\n%s", err, lastLines(stderr.String(), 40))
			}
			return nil
		case <-tick.C:
			fmt.Fprintf(progress, "building the test VM image (cache miss)... %s elapsed\n", time.Since(start).Round(time.Second))
		}
	}
}

// StartVPS boots a VM with start.sh (building the image first when it is
// not cached) in a fresh state directory, with every port forwarded to a
// free host port, and waits until root can log in. Stop it with Stop. It
// takes about 25 s under TCG with a cached image, 2-3 minutes without.
func StartVPS(ctx context.Context) (*VPS, error) {
	dir, err := VPSScriptsDir()
	if err != nil {
		return nil, err
	}
	state, err := os.MkdirTemp("", "mailctl-vps-")
	if err != nil {
		return nil, err
	}
	v := &VPS{StateDir: state, dir: dir, forwards: map[int]int{}}
	ports, err := freeTCPPorts(1 + len(VPSGuestPorts))
	if err != nil {
		return nil, err
	}
	var fw []string
	for i, g := range VPSGuestPorts {
		v.forwards[g] = ports[1+i]
		fw = append(fw, fmt.Sprintf("%d:%d", ports[1+i], g))
	}
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "start.sh"))
	cmd.Env = append(os.Environ(),
		"VPS_STATE_DIR="+state,
		"VPS_SSH_PORT="+strconv.Itoa(ports[0]),
		"VPS_FORWARDS="+strings.Join(fw, " "),
	)
	var stdout bytes.Buffer
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	// A watchdog stops the VM if this process dies without Stop (a test
	// timeout, a kill): no QEMU is ever left behind.
	v.watchdog = exec.Command("/bin/sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 2; done
VPS_STATE_DIR="$2" "$3" >/dev/null 2>&1; rm -rf "$2"`, "vps-watchdog", strconv.Itoa(os.Getpid()), state, filepath.Join(dir, "stop.sh"))
	v.watchdog.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := v.watchdog.Start(); err != nil {
		os.RemoveAll(state)
		return nil, fmt.Errorf("start the VM watchdog: %w", err)
	}
	go v.watchdog.Wait()
	start := time.Now()
	err = cmd.Run()
	v.Elapsed = time.Since(start)
	if err != nil {
		v.Stop()
		return nil, fmt.Errorf("vps start.sh: %v\n%s", err, lastLines(stderr.String(), 40))
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if k, val, ok := strings.Cut(sc.Text(), "="); ok {
			kv[k] = val
		}
	}
	v.Addr = kv["VPS_SSH_HOST"] + ":" + kv["VPS_SSH_PORT"]
	v.KeyFile = kv["VPS_SSH_KEY"]
	v.KnownHosts = kv["VPS_SSH_KNOWN_HOSTS"]
	v.Accel = kv["VPS_ACCEL"]
	v.BootSeconds, _ = strconv.ParseFloat(kv["VPS_BOOT_SECONDS"], 64)
	if kv["VPS_SSH_PORT"] == "" || v.KeyFile == "" || v.KnownHosts == "" {
		v.Stop()
		return nil, fmt.Errorf("vps start.sh printed no VPS_SSH_* settings:\n%s", stdout.String())
	}
	b, err := os.ReadFile(v.KnownHosts)
	if err != nil {
		v.Stop()
		return nil, err
	}
	if f := strings.Fields(string(b)); len(f) >= 3 {
		v.HostKey = f[1] + " " + f[2]
	}
	return v, nil
}

// HostPort returns the host port forwarded to guest port p.
func (v *VPS) HostPort(p int) int { return v.forwards[p] }

// SerialLog returns the end of the guest's console log.
func (v *VPS) SerialLog() string {
	b, _ := os.ReadFile(filepath.Join(v.StateDir, "serial.log"))
	return lastLines(string(b), 40)
}

// Stop stops the VM with stop.sh and removes its state directory.
func (v *VPS) Stop() error {
	if v == nil || v.StateDir == "" {
		return nil
	}
	if v.watchdog != nil && v.watchdog.Process != nil {
		v.watchdog.Process.Kill()
		v.watchdog = nil
	}
	cmd := exec.Command(filepath.Join(v.dir, "stop.sh"))
	cmd.Env = append(os.Environ(), "VPS_STATE_DIR="+v.StateDir)
	out, err := cmd.CombinedOutput()
	os.RemoveAll(v.StateDir)
	v.StateDir = ""
	if err != nil {
		return fmt.Errorf("vps stop.sh: %v\n%s", err, out)
	}
	return nil
}

func freeTCPPorts(n int) ([]int, error) {
	var ports []int
	seen := map[int]bool{}
	for len(ports) < n {
		p, err := freeTCPPort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
		if len(seen) > 10*n {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
	}
	return ports, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
