package remote

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a server host key that could not be verified: unknown
// (not in known_hosts) or changed (differs from the pinned key or from
// known_hosts).
type HostKeyError struct {
	// Address is host:port as dialled.
	Address string
	// Key is the key the server presented.
	Key ssh.PublicKey
	// Changed is true when the key differs from a known or pinned one,
	// false when the host is unknown.
	Changed bool
	// Source is where the expected key came from: "host_key" or a
	// known_hosts file.
	Source string
}

// Fingerprint returns the key's SHA256 fingerprint as OpenSSH prints it.
func (e *HostKeyError) Fingerprint() string { return ssh.FingerprintSHA256(e.Key) }

// Pin returns the host_key setting that pins the presented key.
func (e *HostKeyError) Pin() string {
	return fmt.Sprintf("host_key = %q", string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(e.Key))))
}

func (e *HostKeyError) Error() string {
	fp := e.Key.Type() + " " + e.Fingerprint()
	if e.Changed {
		return fmt.Sprintf("ssh: host key of %s has CHANGED: it is now %s, which does not match %s; "+
			"someone may be intercepting the connection. If the server was really reinstalled, "+
			"check this fingerprint on its console (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub) and pin the new key in the ssh block: %s",
			e.Address, fp, e.Source, keyFileType(e.Key), e.Pin())
	}
	return fmt.Sprintf("ssh: host key of %s is unknown (%s has no key for it): the server presented %s. "+
		"Check this fingerprint on the server's console (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), then pin it in the ssh block: %s "+
		"(or run again with -accept-new-host-key to add it to %s)",
		e.Address, e.Source, fp, keyFileType(e.Key), e.Pin(), e.Source)
}

func keyFileType(k ssh.PublicKey) string {
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return "ed25519"
	case ssh.KeyAlgoRSA:
		return "rsa"
	default:
		return "ecdsa"
	}
}

// IsHostKeyError reports whether err is a host key verification failure.
func IsHostKeyError(err error) bool {
	var e *HostKeyError
	return errors.As(err, &e)
}

// hostKeyChecker verifies the server's key during one handshake and keeps
// the verification error, which x/crypto would otherwise flatten.
type hostKeyChecker struct {
	callback   ssh.HostKeyCallback
	algorithms []string
	err        error
}

var knownHostsMu sync.Mutex

func newHostKeyChecker(cfg SSHConfig, addr, home string) (*hostKeyChecker, error) {
	hk := &hostKeyChecker{}
	if cfg.HostKey != "" {
		pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cfg.HostKey))
		if err != nil {
			return nil, fmt.Errorf("ssh: host_key %q: %w", shorten(cfg.HostKey, 40), err)
		}
		hk.algorithms = algorithmsFor(pinned.Type())
		hk.callback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if bytes.Equal(key.Marshal(), pinned.Marshal()) {
				return nil
			}
			hk.err = &HostKeyError{Address: addr, Key: key, Changed: true, Source: "the pinned host_key (" + pinned.Type() + " " + ssh.FingerprintSHA256(pinned) + ")"}
			return hk.err
		}
		return hk, nil
	}
	file := cfg.KnownHosts
	if file == "" {
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	file = expandHome(file, home)
	var db *knownhosts.HostKeyDB
	if _, err := os.Stat(file); err == nil {
		db, err = knownhosts.NewDB(file)
		if err != nil {
			return nil, fmt.Errorf("ssh: read known_hosts %q: %w", file, err)
		}
		// Offer only the algorithms of the keys known for the host, so
		// that x/crypto does not negotiate another key type and report
		// a false mismatch (golang/go#49631).
		hk.algorithms = db.HostKeyAlgorithms(addr)
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("ssh: known_hosts %q: %w", file, err)
	}
	hk.callback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		var err error
		if db == nil {
			err = &xknownhosts.KeyError{}
		} else {
			err = db.HostKeyCallback()(hostname, remote, key)
		}
		if err == nil {
			return nil
		}
		switch {
		case knownhosts.IsHostKeyChanged(err):
			hk.err = &HostKeyError{Address: addr, Key: key, Changed: true, Source: "known_hosts " + file}
		case knownhosts.IsHostUnknown(err):
			if cfg.AcceptNewHostKey {
				if werr := appendKnownHost(file, addr, key); werr != nil {
					hk.err = werr
					return werr
				}
				return nil
			}
			hk.err = &HostKeyError{Address: addr, Key: key, Source: "known_hosts " + file}
		default:
			hk.err = fmt.Errorf("ssh: check host key of %s in %q: %w", addr, file, err)
		}
		return hk.err
	}
	return hk, nil
}

// algorithmsFor lists the host key algorithms that verify a key type.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

func appendKnownHost(file, addr string, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("ssh: add host key to %q: %w", file, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("ssh: add host key to %q: %w", file, err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("ssh: add host key to %q: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ssh: add host key to %q: %w", file, err)
	}
	return f.Close()
}
