package preflight

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/remote"
)

// connect opens the server's target and returns it with the ssh check's
// result; the target is nil when the server cannot be used.
func connect(ctx context.Context, s *config.Server, o Options) (remote.Target, verify.Result) {
	res := verify.Result{Check: CheckSSH, Target: s.Hostname}
	if s.Local != nil {
		res.Status = verify.Skip
		res.Detail = "local target: the checks run on this machine"
		return remote.Local{}, res
	}
	if s.SSH == nil || s.SSH.Address == "" {
		res.Status = verify.Fail
		res.Detail = "no SSH address"
		res.Fix = fmt.Sprintf("set ipv4 or ssh { address = \"HOST:22\" } in server %q", s.Name)
		return nil, res
	}
	home := o.HomeDir
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	known := ""
	if s.SSH.HostKey == "" {
		known = expandHome(s.SSH.KnownHosts, home)
		if known == "" {
			known = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	sizeBefore := fileSize(known)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t, err := remote.DialSSH(ctx, remote.SSHConfig{
		Address: s.SSH.Address, User: s.SSH.User, HostKey: s.SSH.HostKey, KnownHosts: known,
		AcceptNewHostKey: o.AcceptNewHostKey, Identity: s.SSH.Identity, Passphrase: o.Passphrase,
		HomeDir: home, Timeout: o.Timeout, Logger: o.Logger,
	})
	if err != nil {
		res.Status = verify.Fail
		res.Detail, res.Fix = sshFailure(s, err)
		return nil, res
	}
	user := s.SSH.User
	if user == "" {
		user = "root"
	}
	// Everything runs as root: as root, or through sudo -n for another
	// user, which needs password-less sudo.
	out, err := t.Run(ctx, "id -u", nil)
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Close()
		res.Status = verify.Fail
		if user != "root" {
			res.Detail = fmt.Sprintf("logged in to %s as %s, but commands cannot run as root through sudo -n: %v", s.SSH.Address, user, err)
			res.Fix = fmt.Sprintf("allow password-less sudo on the server (echo '%s ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/mailctl), or log in as root", user)
		} else {
			res.Detail = fmt.Sprintf("logged in to %s as root, but a command failed: %v (id -u printed %q)", s.SSH.Address, err, strings.TrimSpace(string(out)))
			res.Fix = "check that the account's shell works (/bin/sh), then run mailctl preflight again"
		}
		return nil, res
	}
	res.Status = verify.Pass
	how := "as root"
	if user != "root" {
		how = "as " + user + " with password-less sudo"
	}
	var key string
	switch {
	case s.SSH.HostKey != "":
		key = "host key pinned"
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.SSH.HostKey)); err == nil {
			key += " (" + k.Type() + " " + ssh.FingerprintSHA256(k) + ")"
		}
	case o.AcceptNewHostKey && fileSize(known) != sizeBefore:
		key = "host key seen for the first time, recorded in " + known
	default:
		key = "host key matches " + known
	}
	res.Detail = fmt.Sprintf("logged in to %s %s; %s", s.SSH.Address, how, key)
	return t, res
}

// sshFailure explains a failed SSH connection with one fix.
func sshFailure(s *config.Server, err error) (detail, fix string) {
	var hk *remote.HostKeyError
	if errors.As(err, &hk) {
		fp := hk.Key.Type() + " " + hk.Fingerprint()
		console := "ssh-keygen -lf /etc/ssh/ssh_host_" + keyFileType(hk.Key) + "_key.pub"
		if hk.Changed {
			return fmt.Sprintf("host key of %s has CHANGED: the server presents %s, which does not match %s (someone may be intercepting the connection)", hk.Address, fp, hk.Source),
				fmt.Sprintf("only if the server was reinstalled: compare with %s on its console, then pin the new key in the ssh block of server %q: %s", console, s.Name, hk.Pin())
		}
		return fmt.Sprintf("host key of %s is unknown (%s has no key for it): the server presents %s", hk.Address, hk.Source, fp),
			fmt.Sprintf("compare with %s on the server's console, then pin it in the ssh block of server %q: %s (or run again with -accept-new-host-key)", console, s.Name, hk.Pin())
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no key was accepted") || strings.Contains(msg, "no key to log in"):
		return msg, "add your public key to ~/.ssh/authorized_keys of the login user on the server (most providers ask for it when the VPS is ordered), or set identity in the ssh block"
	case strings.Contains(msg, "connect to"):
		return msg, fmt.Sprintf("check the ssh address %s, that the server runs and that its firewall lets SSH in", s.SSH.Address)
	case strings.Contains(msg, "timed out"):
		return msg, "check that the address is the server's and that no firewall drops SSH, then run mailctl preflight again"
	}
	return msg, "check the ssh block of server " + s.Name + ", then run mailctl preflight again"
}

func keyFileType(k ssh.PublicKey) string {
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return "ed25519"
	case ssh.KeyAlgoRSA:
		return "rsa"
	}
	return "ecdsa"
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

// fileSize is the size of file, -1 when it cannot be read.
func fileSize(file string) int64 {
	if file == "" {
		return -1
	}
	fi, err := os.Stat(file)
	if err != nil {
		return -1
	}
	return fi.Size()
}
