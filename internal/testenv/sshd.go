package testenv

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is a running OpenSSH server (Debian openssh-server) on a loopback
// port, with its own host keys, accepting root logins by public key only
// and serving SFTP.
type SSHD struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// HostKeys are the server's public host keys: ed25519 first, then
	// ecdsa-sha2-nistp256.
	HostKeys []ssh.PublicKey
	// ClientKeyFile is an unencrypted OpenSSH private key file
	// (ed25519) that may log in as root; ClientSigner is the same key.
	ClientKeyFile string
	ClientSigner  ssh.Signer
	// Dir holds the configuration, keys and authorized_keys.
	Dir string
	// Log collects sshd's standard error (-e).
	Log *syncBuffer
}

// StartSSHD starts /usr/sbin/sshd -D -e on a free 127.0.0.1 port and waits
// until it greets. It needs root (to log in as root, as a VPS does) and
// /run/sshd, which it creates. It stops the server when the test ends. A
// missing sshd fails the test: the CI installs openssh-server.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("sshd not found (install the Debian package openssh-server): %v", err)
	}
	sftpServer := "/usr/lib/openssh/sftp-server"
	if _, err := os.Stat(sftpServer); err != nil {
		t.Fatalf("sftp-server not found (install the Debian package openssh-sftp-server): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("StartSSHD needs root: the deploy procedures log in as root, as on a VPS")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	// World-traversable, so that sshd can read authorized_keys as a
	// non-root user; private keys stay 0600.
	dir, err := os.MkdirTemp("", "sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &SSHD{Dir: dir, Log: &syncBuffer{}}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{"ssh_host_ed25519_key": edPriv, "ssh_host_ecdsa_key": ecPriv} {
		if err := WritePrivateKey(filepath.Join(s.Dir, name), key, ""); err != nil {
			t.Fatal(err)
		}
	}
	edPub, _ := ssh.NewPublicKey(edPriv.Public())
	ecPub, _ := ssh.NewPublicKey(ecPriv.Public())
	s.HostKeys = []ssh.PublicKey{edPub, ecPub}

	_, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	s.ClientKeyFile = filepath.Join(s.Dir, "client_ed25519")
	if err := WritePrivateKey(s.ClientKeyFile, clientPriv, ""); err != nil {
		t.Fatal(err)
	}
	s.ClientSigner, _ = ssh.NewSignerFromKey(clientPriv)
	s.Authorize(t, s.ClientSigner.PublicKey())

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freeTCPPort()
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		conf := strings.Join([]string{
			fmt.Sprintf("Port %d", port),
			"ListenAddress 127.0.0.1",
			"HostKey " + filepath.Join(s.Dir, "ssh_host_ed25519_key"),
			"HostKey " + filepath.Join(s.Dir, "ssh_host_ecdsa_key"),
			"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
			"AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys"),
			"StrictModes no",
			"PermitRootLogin prohibit-password",
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UsePAM no",
			"PrintMotd no",
			"Subsystem sftp " + sftpServer,
			"LogLevel ERROR",
		}, "\n") + "\n"
		cfg := filepath.Join(s.Dir, "sshd_config")
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(t, bin, cfg); lastErr == nil {
			return s
		}
	}
	t.Fatalf("start sshd: %v\n%s", lastErr, s.Log.String())
	return nil
}

func (s *SSHD) start(t testing.TB, bin, cfg string) error {
	cmd := exec.Command(bin, "-D", "-e", "-f", cfg)
	cmd.Stdout, cmd.Stderr = s.Log, s.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		// sshd's session children are in its process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				t.Cleanup(stop)
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return fmt.Errorf("sshd did not answer on %s within 10s", s.Addr)
}

// Authorize lets key log in as root (sshd reads authorized_keys at each
// login).
func (s *SSHD) Authorize(t testing.TB, key ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(s.Dir, "authorized_keys"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(key)); err != nil {
		t.Fatal(err)
	}
}

// HostKeyLine returns host key i in authorized_keys format, as pinned in
// a config's host_key.
func (s *SSHD) HostKeyLine(i int) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKeys[i])))
}

// WritePrivateKey writes key (an ed25519.PrivateKey, *ecdsa.PrivateKey or
// *rsa.PrivateKey) in OpenSSH format, encrypted when passphrase is not
// empty, with mode 0600.
func WritePrivateKey(path string, key any, passphrase string) error {
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(key, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(key, "", []byte(passphrase))
	}
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// freeTCPPort returns a free TCP port on 127.0.0.1.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
