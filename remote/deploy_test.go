package remote_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/remote"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// failReader fails the test when read: the upload must be skipped.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("binary read although the release is on the server")
	return 0, errors.New("must not be read")
}

func TestInstallRelease(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	c := dial(t, remote.SSHConfig{Address: sshd.Addr, Identity: sshd.ClientKeyFile, HostKey: sshd.HostKeyLine(0)})
	ctx := context.Background()
	base := t.TempDir()
	l := remote.Layout{Base: base}

	bins := make([][]byte, 6)
	for i := range bins {
		bins[i] = []byte(fmt.Sprintf("#!/bin/sh\necho build %d\n", i))
	}

	t.Run("checksum mismatch", func(t *testing.T) {
		_, err := l.InstallRelease(ctx, c, "1.0.0", strings.NewReader("tampered"), sum(bins[0]))
		if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("InstallRelease with a wrong checksum = %v, want a checksum mismatch", err)
		}
		entries, _ := os.ReadDir(filepath.Join(base, "releases"))
		if len(entries) != 0 {
			t.Errorf("releases/ holds %d entries after a failed upload, want none", len(entries))
		}
		if _, err := os.Lstat(filepath.Join(base, "current")); err == nil {
			t.Error("current exists after a failed upload")
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		for _, tc := range []struct{ version, sum string }{{"1.0", "abc"}, {"../x", sum(bins[0])}, {"", sum(bins[0])}} {
			if _, err := l.InstallRelease(ctx, c, tc.version, strings.NewReader("x"), tc.sum); err == nil {
				t.Errorf("InstallRelease(%q, %q) succeeded", tc.version, tc.sum)
			}
		}
	})

	var names []string
	t.Run("install and switch", func(t *testing.T) {
		prev := ""
		for i, b := range bins {
			rel, err := l.InstallRelease(ctx, c, fmt.Sprintf("1.0.%d", i), strings.NewReader(string(b)), sum(b))
			if err != nil {
				t.Fatalf("InstallRelease %d: %v", i, err)
			}
			want := fmt.Sprintf("1.0.%d-%s", i, sum(b)[:12])
			if rel.Name != want || !rel.Uploaded || !rel.Changed || rel.Previous != prev {
				t.Errorf("InstallRelease %d = %+v, want name %s uploaded, changed, previous %q", i, rel, want, prev)
			}
			names = append(names, rel.Name)
			prev = rel.Name
			out, err := exec.Command(filepath.Join(base, "current", "mailctl")).Output()
			if err != nil || string(out) != fmt.Sprintf("build %d\n", i) {
				t.Errorf("current/mailctl printed %q, %v", out, err)
			}
		}
		target, _ := os.Readlink(filepath.Join(base, "current"))
		if target != "releases/"+names[5] {
			t.Errorf("current -> %s, want releases/%s", target, names[5])
		}
		target, _ = os.Readlink(filepath.Join(base, "previous"))
		if target != "releases/"+names[4] {
			t.Errorf("previous -> %s, want releases/%s", target, names[4])
		}
		got := releaseDirs(t, base)
		want := append([]string(nil), names[3:]...)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("kept releases %v, want the last 3 %v", got, want)
		}
		info, _ := os.Stat(filepath.Join(base, "releases", names[5], "mailctl"))
		if info.Mode().Perm() != 0o755 {
			t.Errorf("binary mode %v, want 0755", info.Mode())
		}
	})
	t.Run("same release again changes nothing", func(t *testing.T) {
		rel, err := l.InstallRelease(ctx, c, "1.0.5", failReader{t}, sum(bins[5]))
		if err != nil || rel.Uploaded || rel.Changed || rel.Name != names[5] {
			t.Fatalf("InstallRelease(same) = %+v, %v; want no upload, no change", rel, err)
		}
	})
	t.Run("back to a kept release without upload", func(t *testing.T) {
		rel, err := l.InstallRelease(ctx, c, "1.0.3", failReader{t}, sum(bins[3]))
		if err != nil || rel.Uploaded || !rel.Changed || rel.Previous != names[5] {
			t.Fatalf("InstallRelease(kept) = %+v, %v; want a switch without upload", rel, err)
		}
	})
	t.Run("a corrupted release is uploaded again", func(t *testing.T) {
		os.WriteFile(filepath.Join(base, "releases", names[4], "mailctl"), []byte("garbage"), 0o755)
		rel, err := l.InstallRelease(ctx, c, "1.0.4", strings.NewReader(string(bins[4])), sum(bins[4]))
		if err != nil || !rel.Uploaded {
			t.Fatalf("InstallRelease(corrupted) = %+v, %v; want a new upload", rel, err)
		}
	})
	t.Run("current and previous are never pruned", func(t *testing.T) {
		// Install 1.0.0 .. 1.0.2 again: current and previous remain.
		for i := 0; i < 3; i++ {
			if _, err := l.InstallRelease(ctx, c, fmt.Sprintf("1.0.%d", i), strings.NewReader(string(bins[i])), sum(bins[i])); err != nil {
				t.Fatal(err)
			}
		}
		got := releaseDirs(t, base)
		if len(got) != 3 {
			t.Errorf("kept %v, want 3 releases", got)
		}
		cur, _ := os.Readlink(filepath.Join(base, "current"))
		prev, _ := os.Readlink(filepath.Join(base, "previous"))
		for _, link := range []string{cur, prev} {
			if _, err := os.Stat(filepath.Join(base, link)); err != nil {
				t.Errorf("%s was pruned: %v", link, err)
			}
		}
	})
}

func releaseDirs(t *testing.T, base string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(base, "releases"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestReleaseName(t *testing.T) {
	s := sum([]byte("x"))
	tests := []struct{ version, want string }{
		{"1.2.3", "1.2.3-" + s[:12]},
		{"1.2.3-" + s[:12], "1.2.3-" + s[:12]},
		{"v0.1.0+dirty", "v0.1.0+dirty-" + s[:12]},
	}
	for _, tt := range tests {
		got, err := remote.ReleaseName(tt.version, strings.ToUpper(s))
		if err != nil || got != tt.want {
			t.Errorf("ReleaseName(%q) = %q, %v; want %q", tt.version, got, err, tt.want)
		}
	}
}

func TestUnitHardening(t *testing.T) {
	u := remote.Unit(remote.UnitOptions{})
	for _, want := range []string{
		"User=mailctl", "ExecStart=/opt/mailctl/current/mailctl serve -config /etc/mailctl/server.json",
		"ExecReload=/bin/kill -HUP $MAINPID", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/lib/mailctl", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
		"ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
		"ProtectControlGroups=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
		"SystemCallArchitectures=native", "SystemCallFilter=@system-service", "Restart=on-failure",
		"LimitNOFILE=65536", "WantedBy=multi-user.target",
	} {
		if !strings.Contains(u, "\n"+want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
	// systemd-analyze verify checks every key (Debian package systemd).
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze not found (install the Debian package systemd)")
	}
	{
		dir := t.TempDir()
		p := filepath.Join(dir, "mailctl.service")
		os.WriteFile(p, []byte(strings.ReplaceAll(u, "/opt/mailctl/current/mailctl", "/bin/true")), 0o644)
		// It exits 0 on unknown keys but names the file and line.
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
		if err != nil || strings.Contains(string(out), "mailctl.service:") {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}

var (
	fakeOnce sync.Once
	fakeDir  string
	fakeErr  error
)

// fakeServer builds the fake "mailctl serve" of testdata/fakeserver with
// the given build tag and mode, and returns its bytes.
func fakeServer(t *testing.T, build, mode string) []byte {
	t.Helper()
	fakeOnce.Do(func() { fakeDir, fakeErr = os.MkdirTemp("", "fakeserver") })
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	out := filepath.Join(fakeDir, build+"-"+mode)
	if _, err := os.Stat(out); err != nil {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.build="+build+" -X main.mode="+mode, "-o", out, "./testdata/fakeserver")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build fake server: %v\n%s", err, b)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fakeDir != "" {
		os.RemoveAll(fakeDir)
	}
	os.Exit(code)
}
