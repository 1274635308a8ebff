package remote_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/remote"
)

func dial(t *testing.T, cfg remote.SSHConfig) *remote.SSH {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := remote.DialSSH(ctx, cfg)
	if err != nil {
		t.Fatalf("DialSSH: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func whoami(t *testing.T, c remote.Target) {
	t.Helper()
	out, err := c.Run(context.Background(), "id -un", nil)
	if err != nil {
		t.Fatalf("Run(id -un) = %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "root" {
		t.Fatalf("Run(id -un) = %q, want root", got)
	}
}

// serveAgent serves an in-memory ssh-agent keyring on a unix socket.
func serveAgent(t *testing.T, keys ...any) string {
	t.Helper()
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	return sock
}

func TestSSHAuth(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	pin := sshd.HostKeyLine(0)

	// A key only the agent holds.
	_, agentKey, _ := ed25519.GenerateKey(rand.Reader)
	agentPub, _ := ssh.NewPublicKey(agentKey.Public())
	sshd.Authorize(t, agentPub)
	sock := serveAgent(t, agentKey)

	// An encrypted key file.
	_, encKey, _ := ed25519.GenerateKey(rand.Reader)
	encPub, _ := ssh.NewPublicKey(encKey.Public())
	sshd.Authorize(t, encPub)
	encFile := filepath.Join(t.TempDir(), "id_enc")
	if err := testenv.WritePrivateKey(encFile, encKey, "correct horse"); err != nil {
		t.Fatal(err)
	}

	// A home with the client key as ~/.ssh/id_ed25519.
	home := t.TempDir()
	os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
	b, _ := os.ReadFile(sshd.ClientKeyFile)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), b, 0o600)

	// A key that is not authorized.
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)
	strangerFile := filepath.Join(t.TempDir(), "id_stranger")
	testenv.WritePrivateKey(strangerFile, strangerKey, "")

	empty := t.TempDir()
	asked := 0
	tests := []struct {
		name    string
		cfg     remote.SSHConfig
		wantErr string
	}{
		{name: "identity file", cfg: remote.SSHConfig{Identity: sshd.ClientKeyFile, HomeDir: empty, AgentSocket: "/nonexistent"}},
		{name: "agent", cfg: remote.SSHConfig{AgentSocket: sock, HomeDir: empty}},
		{name: "default key file", cfg: remote.SSHConfig{HomeDir: home, AgentSocket: "/nonexistent"}},
		{name: "encrypted key with passphrase", cfg: remote.SSHConfig{Identity: encFile, HomeDir: empty,
			Passphrase: func(string) ([]byte, error) { asked++; return []byte("correct horse"), nil }}},
		{name: "encrypted key, wrong passphrase", cfg: remote.SSHConfig{Identity: encFile, HomeDir: empty,
			Passphrase: func(string) ([]byte, error) { return []byte("wrong"), nil }}, wantErr: "wrong passphrase"},
		{name: "encrypted key, no way to ask", cfg: remote.SSHConfig{Identity: encFile, HomeDir: empty}, wantErr: "is encrypted"},
		{name: "unauthorized key", cfg: remote.SSHConfig{Identity: strangerFile, HomeDir: empty}, wantErr: "no key was accepted"},
		{name: "no key at all", cfg: remote.SSHConfig{HomeDir: empty, AgentSocket: "/nonexistent"}, wantErr: "no key to log in with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Address = sshd.Addr
			cfg.HostKey = pin
			if tt.wantErr == "" {
				whoami(t, dial(t, cfg))
				return
			}
			c, err := remote.DialSSH(context.Background(), cfg)
			if err == nil {
				c.Close()
				t.Fatalf("DialSSH succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DialSSH error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if asked != 1 {
		t.Errorf("passphrase callback called %d times, want 1", asked)
	}
}

func TestSSHHostKey(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	host, port, _ := net.SplitHostPort(sshd.Addr)
	entry := "[" + host + "]:" + port
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(otherKey.Public())
	otherLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherPub)))
	base := remote.SSHConfig{Address: sshd.Addr, Identity: sshd.ClientKeyFile}

	knownHosts := func(t *testing.T, lines ...string) string {
		p := filepath.Join(t.TempDir(), "known_hosts")
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(entry + " " + l + "\n")
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("pinned ed25519", func(t *testing.T) {
		cfg := base
		cfg.HostKey = sshd.HostKeyLine(0)
		whoami(t, dial(t, cfg))
	})
	t.Run("pinned ecdsa", func(t *testing.T) {
		cfg := base
		cfg.HostKey = sshd.HostKeyLine(1)
		whoami(t, dial(t, cfg))
	})
	// known_hosts holding only one of the server's key types must not be
	// reported as a mismatch (golang/go#49631).
	for i, name := range []string{"known_hosts ed25519 only", "known_hosts ecdsa only"} {
		t.Run(name, func(t *testing.T) {
			cfg := base
			cfg.KnownHosts = knownHosts(t, sshd.HostKeyLine(i))
			whoami(t, dial(t, cfg))
		})
	}
	t.Run("default known_hosts in home", func(t *testing.T) {
		home := t.TempDir()
		os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
		os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), []byte(entry+" "+sshd.HostKeyLine(0)+"\n"), 0o600)
		cfg := base
		cfg.HomeDir = home
		whoami(t, dial(t, cfg))
	})

	refused := []struct {
		name        string
		cfg         func(t *testing.T) remote.SSHConfig
		wantChanged bool
	}{
		{"unknown: missing known_hosts", func(t *testing.T) remote.SSHConfig {
			c := base
			c.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
			return c
		}, false},
		{"unknown: other hosts only", func(t *testing.T) remote.SSHConfig {
			c := base
			p := filepath.Join(t.TempDir(), "known_hosts")
			os.WriteFile(p, []byte("[127.0.0.1]:1 "+sshd.HostKeyLine(0)+"\n"), 0o600)
			c.KnownHosts = p
			return c
		}, false},
		{"changed: pinned key differs", func(t *testing.T) remote.SSHConfig {
			c := base
			c.HostKey = otherLine
			return c
		}, true},
		{"changed: known_hosts differs, even with accept-new", func(t *testing.T) remote.SSHConfig {
			c := base
			c.KnownHosts = knownHosts(t, otherLine)
			c.AcceptNewHostKey = true
			return c
		}, true},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg(t)
			var before []byte
			if cfg.KnownHosts != "" {
				before, _ = os.ReadFile(cfg.KnownHosts)
			}
			c, err := remote.DialSSH(context.Background(), cfg)
			if err == nil {
				c.Close()
				t.Fatal("DialSSH succeeded, want a host key error")
			}
			var hk *remote.HostKeyError
			if !errors.As(err, &hk) {
				t.Fatalf("DialSSH error = %v (%T), want *HostKeyError", err, err)
			}
			if hk.Changed != tt.wantChanged {
				t.Errorf("Changed = %v, want %v", hk.Changed, tt.wantChanged)
			}
			msg := err.Error()
			i := 0
			if hk.Key.Type() != ssh.KeyAlgoED25519 {
				i = 1
			}
			if !bytes.Equal(hk.Key.Marshal(), sshd.HostKeys[i].Marshal()) {
				t.Fatalf("HostKeyError.Key = %s, not one of the server's keys", ssh.FingerprintSHA256(hk.Key))
			}
			presented := ssh.FingerprintSHA256(sshd.HostKeys[i])
			wantPin := `host_key = "` + sshd.HostKeyLine(i) + `"`
			for _, want := range []string{presented, wantPin} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if tt.wantChanged && !strings.Contains(msg, "CHANGED") {
				t.Errorf("error %q does not say CHANGED", msg)
			}
			if !tt.wantChanged && !strings.Contains(msg, "-accept-new-host-key") {
				t.Errorf("error %q does not mention -accept-new-host-key", msg)
			}
			if cfg.KnownHosts != "" {
				after, _ := os.ReadFile(cfg.KnownHosts)
				if !bytes.Equal(before, after) {
					t.Errorf("known_hosts changed from %q to %q", before, after)
				}
			}
		})
	}

	t.Run("accept new writes known_hosts", func(t *testing.T) {
		home := t.TempDir()
		cfg := base
		cfg.HomeDir = home
		cfg.AcceptNewHostKey = true
		whoami(t, dial(t, cfg))
		kh := filepath.Join(home, ".ssh", "known_hosts")
		b, err := os.ReadFile(kh)
		if err != nil {
			t.Fatalf("known_hosts not written: %v", err)
		}
		if !strings.HasPrefix(string(b), entry+" ") {
			t.Errorf("known_hosts = %q, want a line for %s", b, entry)
		}
		// Without accept-new, the recorded key is now trusted.
		cfg.AcceptNewHostKey = false
		whoami(t, dial(t, cfg))
		b2, _ := os.ReadFile(kh)
		if !bytes.Equal(b, b2) {
			t.Errorf("known_hosts rewritten on a known host: %q -> %q", b, b2)
		}
	})
}

func TestSSHRunAndFiles(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	c := dial(t, remote.SSHConfig{Address: sshd.Addr, Identity: sshd.ClientKeyFile, HostKey: sshd.HostKeyLine(0)})
	testTarget(t, c)
}

func TestLocalTarget(t *testing.T) {
	testTarget(t, remote.Local{})
}

// testTarget checks the Target contract.
func testTarget(t *testing.T, c remote.Target) {
	ctx := context.Background()
	t.Run("run", func(t *testing.T) {
		out, err := c.Run(ctx, "echo hello; echo noise >&2", nil)
		if err != nil || string(out) != "hello\n" {
			t.Fatalf("Run = %q, %v; want hello", out, err)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		out, err := c.Run(ctx, "tr a-z A-Z", strings.NewReader("abc"))
		if err != nil || string(out) != "ABC" {
			t.Fatalf("Run = %q, %v; want ABC", out, err)
		}
	})
	t.Run("exit status and stderr", func(t *testing.T) {
		_, err := c.Run(ctx, "cat >/dev/null; for i in $(seq 1 30); do echo line$i >&2; done; exit 7", strings.NewReader("s3cret-password"))
		var ee *remote.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("Run error = %v, want *ExitError", err)
		}
		if ee.Status != 7 {
			t.Errorf("Status = %d, want 7", ee.Status)
		}
		msg := err.Error()
		if !strings.Contains(msg, "status 7") || !strings.Contains(msg, "line30") || strings.Contains(msg, "line5\n") {
			t.Errorf("error %q: want status 7 and the last stderr lines only", msg)
		}
		if strings.Contains(msg, "s3cret") {
			t.Errorf("error %q contains the standard input", msg)
		}
	})
	t.Run("context cancel", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Run(cctx, "sleep 30", nil)
		if err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("Run(sleep 30) with 300ms timeout = %v after %s", err, time.Since(start))
		}
	})
	dir, err := c.Run(ctx, "mktemp -d", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := strings.TrimSpace(string(dir))
	t.Cleanup(func() { c.Run(context.Background(), "rm -rf "+remote.ShellQuote(d), nil) })
	p := d + "/file.json"
	t.Run("write, replace, read", func(t *testing.T) {
		for _, content := range []string{"first", "second, longer content"} {
			if err := c.WriteFile(ctx, p, strings.NewReader(content), 0o640); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := c.ReadFile(ctx, p)
			if err != nil || string(got) != content {
				t.Fatalf("ReadFile = %q, %v; want %q", got, err, content)
			}
		}
		out, _ := c.Run(ctx, "stat -c %a "+p+"; ls -A "+d, nil)
		if string(out) != "640\nfile.json\n" {
			t.Errorf("mode and directory = %q, want 640 and only file.json (no temp file left)", out)
		}
	})
	t.Run("read missing", func(t *testing.T) {
		_, err := c.ReadFile(ctx, d+"/missing")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ReadFile(missing) = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("atomic replace", func(t *testing.T) {
		old := bytes.Repeat([]byte("a"), 1<<20)
		if err := c.WriteFile(ctx, p, bytes.NewReader(old), 0o600); err != nil {
			t.Fatal(err)
		}
		seen := false
		r := &hookReader{r: bytes.NewReader(bytes.Repeat([]byte("b"), 4<<20)), at: 2 << 20, hook: func() {
			got, err := c.ReadFile(ctx, p)
			if err != nil || !bytes.Equal(got, old) {
				t.Errorf("during the upload ReadFile = %d bytes, %v; want the old content", len(got), err)
			}
			seen = true
		}}
		if err := c.WriteFile(ctx, p, r, 0o600); err != nil {
			t.Fatal(err)
		}
		if !seen {
			t.Fatal("hook not called")
		}
		got, _ := c.ReadFile(ctx, p)
		if len(got) != 4<<20 || got[0] != 'b' {
			t.Errorf("after the upload: %d bytes, want 4 MiB of b", len(got))
		}
	})
	t.Run("failed upload leaves the old file", func(t *testing.T) {
		before, _ := c.ReadFile(ctx, p)
		err := c.WriteFile(ctx, p, io.MultiReader(strings.NewReader("partial"), errReader{}), 0o600)
		if err == nil {
			t.Fatal("WriteFile with a failing reader succeeded")
		}
		after, _ := c.ReadFile(ctx, p)
		if !bytes.Equal(before, after) {
			t.Error("a failed WriteFile changed the file")
		}
		out, _ := c.Run(ctx, "ls -A "+d, nil)
		if string(out) != "file.json\n" {
			t.Errorf("directory = %q, want only file.json", out)
		}
	})
}

type hookReader struct {
	r    io.Reader
	n    int
	at   int
	hook func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.hook != nil && h.n >= h.at {
		h.hook()
		h.hook = nil
	}
	if len(p) > 32<<10 {
		p = p[:32<<10]
	}
	n, err := h.r.Read(p)
	h.n += n
	return n, err
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// TestSSHSudo logs in as an unprivileged user with password-less sudo:
// every command runs as root through "sudo -n" and files are written by a
// root shell, so the Target contract holds unchanged.
func TestSSHSudo(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	user := "mctl-sudo-" + strings.ToLower(rand.Text()[:6])
	ctx := context.Background()
	for _, cmd := range [][]string{
		{"useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", user},
		{"usermod", "-p", "*", user}, // not locked: sshd without PAM refuses locked accounts
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("userdel", user).Run() })
	sudoers := "/etc/sudoers.d/" + user
	if err := os.WriteFile(sudoers, []byte(user+" ALL=(root) NOPASSWD: ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Fatal("sudo not installed (Debian package sudo)")
	}
	c := dial(t, remote.SSHConfig{Address: sshd.Addr, User: user, Identity: sshd.ClientKeyFile, HostKey: sshd.HostKeyLine(0)})
	out, err := c.Run(ctx, `echo "$SUDO_USER"`, nil)
	if err != nil || strings.TrimSpace(string(out)) != user {
		t.Fatalf("SUDO_USER = %q, %v; want %s", out, err, user)
	}
	testTarget(t, c)
}
