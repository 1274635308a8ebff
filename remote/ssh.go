package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// SSHConfig says how to reach and authenticate to a server over SSH.
type SSHConfig struct {
	// Address is host:port. A missing port means 22.
	Address string
	// User is the login name; default "root". Any other user runs every
	// command through "sudo -n" (it needs password-less sudo) and writes
	// files through a root shell rather than SFTP.
	User string

	// HostKey pins the server's host key, in authorized_keys format
	// ("ssh-ed25519 AAAA..."). When set, known_hosts is not used.
	HostKey string
	// KnownHosts is the known_hosts file used when HostKey is empty;
	// default ~/.ssh/known_hosts.
	KnownHosts string
	// AcceptNewHostKey appends the key of a host that is not yet in
	// KnownHosts to that file (trust on first use, the CLI's
	// -accept-new-host-key). A key that differs from a known one is
	// always refused.
	AcceptNewHostKey bool

	// Identity is a private key file. When empty, the keys of the
	// ssh-agent (SSH_AUTH_SOCK) are used, then ~/.ssh/id_ed25519,
	// id_ecdsa and id_rsa.
	Identity string
	// Passphrase is asked for the passphrase of an encrypted key file.
	// When nil, encrypted default keys are skipped and an encrypted
	// Identity is an error.
	Passphrase func(keyFile string) ([]byte, error)
	// AgentSocket is the ssh-agent socket; default $SSH_AUTH_SOCK.
	AgentSocket string
	// HomeDir is where ~ points; default the user's home directory.
	HomeDir string

	// Timeout bounds the TCP connect and the SSH handshake; default 30s.
	Timeout time.Duration
	// Logger receives debug messages; default discards them.
	Logger *slog.Logger
}

// Ciphers preferred by mailctl: AES-GCM first, as it is the fastest both
// with AES-NI and under emulation (QEMU TCG), then the OpenSSH defaults.
var preferredCiphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

// SSH is a Target reached over one SSH connection, reused for every
// command and file transfer (a new connection costs seconds on a slow
// server). It is safe for concurrent use, up to the server's MaxSessions
// (10 by default in OpenSSH) commands at a time.
type SSH struct {
	client *ssh.Client
	user   string
	addr   string
	log    *slog.Logger

	mu   sync.Mutex
	sftp *sftp.Client

	done      chan struct{}
	closeOnce sync.Once
}

// keepaliveInterval is how often an idle connection is probed, so that
// NAT or firewall state survives a long apply (DNS propagation waits).
const keepaliveInterval = 30 * time.Second

var _ Target = (*SSH)(nil)

// DialSSH connects to the server, verifies its host key and
// authenticates.
func DialSSH(ctx context.Context, cfg SSHConfig) (*SSH, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	user := cfg.User
	if user == "" {
		user = "root"
	}
	addr := cfg.Address
	if addr == "" {
		return nil, errors.New("ssh: no address")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "22")
	}
	home := cfg.HomeDir
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}

	hk, err := newHostKeyChecker(cfg, addr, home)
	if err != nil {
		return nil, err
	}
	auth, closeAgent, err := authMethods(cfg, home, log)
	if err != nil {
		return nil, err
	}
	defer closeAgent()

	conf := &ssh.ClientConfig{
		User:              user,
		Auth:              auth,
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algorithms,
		Timeout:           timeout,
	}
	conf.Ciphers = preferredCiphers

	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh: connect to %s: %w", addr, err)
	}
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, conf)
	stopped := stop()
	if err != nil {
		conn.Close()
		if hk.err != nil {
			return nil, hk.err
		}
		if !stopped && ctx.Err() == nil {
			return nil, fmt.Errorf("ssh: handshake with %s: timed out after %s", addr, timeout)
		}
		if !stopped {
			return nil, fmt.Errorf("ssh: handshake with %s: %w", addr, ctx.Err())
		}
		if strings.Contains(err.Error(), "no common algorithm for host key") && cfg.HostKey != "" {
			return nil, fmt.Errorf("ssh: %s has no host key of the pinned type (host_key %q): %w", addr, shorten(cfg.HostKey, 40), err)
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("ssh: log in to %s as %q: no key was accepted (tried %s): %w", addr, user, authDescription(cfg), err)
		}
		return nil, fmt.Errorf("ssh: handshake with %s: %w", addr, err)
	}
	log.Debug("ssh connected", "host", addr, "user", user)
	s := &SSH{client: ssh.NewClient(c, chans, reqs), user: user, addr: addr, log: log, done: make(chan struct{})}
	go s.keepalive()
	return s, nil
}

func authDescription(cfg SSHConfig) string {
	if cfg.Identity != "" {
		return cfg.Identity
	}
	return "ssh-agent and ~/.ssh/id_ed25519, id_ecdsa, id_rsa"
}

// authMethods returns the public key methods: the Identity file alone when
// given, else the agent's keys and the default key files.
func authMethods(cfg SSHConfig, home string, log *slog.Logger) ([]ssh.AuthMethod, func(), error) {
	noop := func() {}
	if cfg.Identity != "" {
		s, err := loadKey(expandHome(cfg.Identity, home), cfg.Passphrase)
		if err != nil {
			return nil, noop, err
		}
		return []ssh.AuthMethod{ssh.PublicKeys(s)}, noop, nil
	}
	var signers []ssh.Signer
	closer := noop
	sock := cfg.AgentSocket
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			log.Debug("ssh-agent unreachable", "socket", sock, "err", err)
		} else {
			closer = func() { conn.Close() }
			ss, err := agent.NewClient(conn).Signers()
			if err != nil {
				log.Debug("ssh-agent keys", "err", err)
			}
			signers = append(signers, ss...)
		}
	}
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		p := filepath.Join(home, ".ssh", name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		pass := cfg.Passphrase
		s, err := loadKey(p, pass)
		if err != nil {
			log.Debug("skip ssh key", "file", p, "err", err)
			continue
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		closer()
		return nil, noop, fmt.Errorf("ssh: no key to log in with: ssh-agent has none (SSH_AUTH_SOCK) and there is no ~/.ssh/id_ed25519, id_ecdsa or id_rsa; set identity in the ssh block")
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closer, nil
}

// loadKey reads a private key file, asking for its passphrase when it is
// encrypted.
func loadKey(file string, passphrase func(string) ([]byte, error)) (ssh.Signer, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ssh: read key %q: %w", file, err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == nil {
			return nil, fmt.Errorf("ssh: key %q is encrypted and no passphrase can be asked", file)
		}
		pass, perr := passphrase(file)
		if perr != nil {
			return nil, fmt.Errorf("ssh: passphrase for %q: %w", file, perr)
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		clear(pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("ssh: key %q: wrong passphrase", file)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ssh: parse key %q: %w", file, err)
	}
	return s, nil
}

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

// wrap turns cmd into the command line run on the server: with sh
// whatever the login shell is, through sudo for a user other than root.
func (s *SSH) wrap(cmd string) string {
	if s.user == "root" {
		return "exec /bin/sh -c " + ShellQuote(cmd)
	}
	return "exec sudo -n -- /bin/sh -c " + ShellQuote(cmd)
}

// Run implements Target.
func (s *SSH) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sess, err := s.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("ssh %s: open session: %w", s.addr, err)
	}
	defer sess.Close()
	var stdout bytes.Buffer
	stderr := &limitedBuffer{max: 16 << 10}
	sess.Stdout = &stdout
	sess.Stderr = stderr
	if stdin != nil {
		sess.Stdin = stdin
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(s.wrap(cmd)) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Best effort: OpenSSH delivers the signal to the command, but
		// closes the channel only once the command's output is drained,
		// so do not wait for it.
		sess.Signal(ssh.SIGKILL)
		sess.Close()
		return nil, fmt.Errorf("ssh %s: run %q: %w", s.addr, shorten(cmd, 200), ctx.Err())
	}
	if err != nil {
		var ee *ssh.ExitError
		var missing *ssh.ExitMissingError
		switch {
		case errors.As(err, &ee):
			xe := &ExitError{Cmd: cmd, Status: ee.ExitStatus(), Stderr: tail(stderr.buf, stderrTailLines)}
			if ee.Signal() != "" {
				xe.Status, xe.Signal = -1, ee.Signal()
			}
			return stdout.Bytes(), xe
		case errors.As(err, &missing):
			return stdout.Bytes(), &ExitError{Cmd: cmd, Status: -1, Stderr: tail(stderr.buf, stderrTailLines)}
		}
		return stdout.Bytes(), fmt.Errorf("ssh %s: run %q: %w", s.addr, shorten(cmd, 200), err)
	}
	return stdout.Bytes(), nil
}

func (s *SSH) sftpClient() (*sftp.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sftp != nil {
		return s.sftp, nil
	}
	c, err := sftp.NewClient(s.client, sftp.UseConcurrentWrites(true), sftp.UseFstat(true))
	if err != nil {
		return nil, fmt.Errorf("ssh %s: start sftp: %w", s.addr, err)
	}
	s.sftp = c
	return c, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// WriteFile implements Target. As root it uploads over SFTP to a temporary
// name, fsyncs (fsync@openssh.com) and renames with posix-rename; as
// another user it streams the content to a root shell that does the same.
func (s *SSH) WriteFile(ctx context.Context, p string, r io.Reader, mode os.FileMode) error {
	if s.user != "root" {
		return s.writeFileSudo(ctx, p, r, mode)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := s.sftpClient()
	if err != nil {
		return err
	}
	tmp := path.Join(path.Dir(p), "."+path.Base(p)+".tmp-"+randomSuffix())
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("ssh %s: create %q: %w", s.addr, tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			c.Remove(tmp)
		}
	}()
	// Restrict the mode before any byte is written.
	if err := f.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("ssh %s: chmod %q: %w", s.addr, tmp, err)
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	_, err = f.ReadFrom(r)
	if !stop() {
		return fmt.Errorf("ssh %s: write %q: %w", s.addr, p, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("ssh %s: write %q: %w", s.addr, tmp, err)
	}
	if err := f.Sync(); err != nil && !isUnsupported(err) {
		return fmt.Errorf("ssh %s: fsync %q: %w", s.addr, tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ssh %s: close %q: %w", s.addr, tmp, err)
	}
	if err := c.PosixRename(tmp, p); err != nil {
		return fmt.Errorf("ssh %s: rename %q to %q: %w", s.addr, tmp, p, err)
	}
	ok = true
	return nil
}

func isUnsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}

// writeFileSudo writes through a root shell in two steps, because the SSH
// session closes the command's standard input (EOF) even when reading r
// fails: first the content into a new temporary file, then, only when
// that succeeded, sync and rename.
func (s *SSH) writeFileSudo(ctx context.Context, p string, r io.Reader, mode os.FileMode) error {
	tmp := ShellQuote(path.Join(path.Dir(p), "."+path.Base(p)+".tmp-"+randomSuffix()))
	if _, err := s.Run(ctx, "set -C; umask 077; cat > "+tmp, r); err != nil {
		s.Run(context.WithoutCancel(ctx), "rm -f "+tmp, nil)
		return fmt.Errorf("write %q: %w", p, err)
	}
	if _, err := s.Run(ctx, fmt.Sprintf("chmod %04o %s && sync %s && mv -fT %s %s || { rm -f %s; exit 1; }", mode.Perm(), tmp, tmp, tmp, ShellQuote(p), tmp), nil); err != nil {
		return fmt.Errorf("write %q: %w", p, err)
	}
	return nil
}

// ReadFile implements Target.
func (s *SSH) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.user != "root" {
		out, err := s.Run(ctx, "test -e "+ShellQuote(p)+" || exit 66; cat "+ShellQuote(p), nil)
		if st, ok := ExitStatus(err); ok && st == 66 {
			return nil, fmt.Errorf("ssh %s: read %q: %w", s.addr, p, fs.ErrNotExist)
		}
		return out, err
	}
	c, err := s.sftpClient()
	if err != nil {
		return nil, err
	}
	f, err := c.Open(p)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: read %q: %w", s.addr, p, err)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: read %q: %w", s.addr, p, err)
	}
	return b, nil
}

func (s *SSH) keepalive() {
	t := time.NewTicker(keepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if _, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				s.log.Debug("ssh keepalive failed", "host", s.addr, "err", err)
				return
			}
		}
	}
}

// Close implements Target.
func (s *SSH) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	if s.sftp != nil {
		s.sftp.Close()
		s.sftp = nil
	}
	s.mu.Unlock()
	return s.client.Close()
}
