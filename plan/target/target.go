// Package target connects mailctl to the servers of a configuration: over
// SSH for a VPS, or on this machine for the local lab. It reads back what a
// server runs (release, configuration digest, users, DKIM public keys) and
// deploys the server step of a plan through package remote.
package target

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/remote"
	serverconfig "github.com/mailctl/mailctl/server/config"
)

// Options tune how servers are reached.
type Options struct {
	// AcceptNewHostKey trusts and records the key of a host seen for the
	// first time (never a changed key).
	AcceptNewHostKey bool
	// Passphrase asks for the passphrase of an encrypted key file.
	Passphrase func(keyFile string) ([]byte, error)
	Logger     *slog.Logger
}

// Conn is a connection to one server.
type Conn struct {
	cfg *config.Config
	srv *config.Server
	t   remote.Target // nil for a lab
	lab *remote.Lab
	log *slog.Logger
}

// Open connects to server s.
func Open(ctx context.Context, cfg *config.Config, s *config.Server, opts Options) (*Conn, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{cfg: cfg, srv: s, log: log}
	if s.Local != nil {
		c.lab = &remote.Lab{Dir: desired.LocalDir(cfg, s)}
		return c, nil
	}
	t, err := remote.DialSSH(ctx, remote.SSHConfig{
		Address: s.SSH.Address, User: s.SSH.User, HostKey: s.SSH.HostKey, KnownHosts: s.SSH.KnownHosts,
		AcceptNewHostKey: opts.AcceptNewHostKey, Identity: s.SSH.Identity, Passphrase: opts.Passphrase, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to server.%s (%s): %w", s.Name, s.SSH.Address, err)
	}
	c.t = t
	return c, nil
}

// Close closes the connection.
func (c *Conn) Close() error {
	if c.t != nil {
		return c.t.Close()
	}
	return nil
}

// Name is the server's name.
func (c *Conn) Name() string { return c.srv.Name }

// Target is where commands run on the server: the SSH connection, or this
// machine for a lab.
func (c *Conn) Target() remote.Target {
	if c.t == nil {
		return remote.Local{}
	}
	return c.t
}

// SelfSignedCert returns the PEM certificate the server generated for
// itself (tls { self_signed = true }), or nil when it has none yet.
func (c *Conn) SelfSignedCert(ctx context.Context) ([]byte, error) {
	var b []byte
	var err error
	if c.lab != nil {
		b, err = os.ReadFile(contract.SelfSignedCert(desired.LabDataDir(c.cfg, c.srv)))
	} else {
		b, err = c.t.ReadFile(ctx, contract.SelfSignedCert(remote.VPS.DataDir))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the self-signed certificate of server.%s: %w", c.srv.Name, err)
	}
	return b, nil
}

// State reads what the server runs. It returns nil (and no error) for a
// server mailctl has not deployed.
func (c *Conn) State(ctx context.Context) (*plan.ServerState, []desired.DKIMKey, error) {
	var raw []byte
	var err error
	var release string
	if c.lab != nil {
		raw, err = c.lab.Status(ctx)
		if link, lerr := os.Readlink(c.lab.Layout().Current()); lerr == nil {
			release = path.Base(link)
		}
	} else {
		raw, err = remote.Status(ctx, c.t)
		if out, lerr := c.t.Run(ctx, "readlink "+remote.ShellQuote(remote.VPS.Current()), nil); lerr == nil {
			release = path.Base(strings.TrimSpace(string(out)))
		}
	}
	if errors.Is(err, remote.ErrNotDeployed) {
		return nil, nil, nil
	}
	st := &plan.ServerState{Release: release}
	if err != nil {
		// Installed but not answering: a crashed or stopped service.
		c.log.Debug("server status unavailable", "server", c.srv.Name, "err", err)
		return st, nil, nil
	}
	var s contract.Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, nil, fmt.Errorf("read status of server.%s: %w", c.srv.Name, err)
	}
	st.Running = true
	st.ConfigDigest = s.ConfigDigest
	st.RestartDigests = s.RestartDigests
	for _, u := range s.Users {
		st.Users = append(st.Users, u.Address)
		if u.Password != "" {
			if st.Credentials == nil {
				st.Credentials = map[string]plan.UserCredentials{}
			}
			st.Credentials[u.Address] = plan.UserCredentials{Password: u.Password, AppPasswords: u.AppPasswords}
		}
		if u.SieveDigest != "" {
			if st.Sieve == nil {
				st.Sieve = map[string]string{}
			}
			st.Sieve[u.Address] = u.SieveDigest
		}
	}
	slices.Sort(st.Users)
	var keys []desired.DKIMKey
	for _, k := range s.DKIM {
		keys = append(keys, desired.DKIMKey{Domain: k.Domain, Selector: k.Selector, Record: k.Record, State: k.State, Created: k.Created, Retired: k.Retired, Server: c.srv.Name})
	}
	return st, keys, nil
}

// DKIM runs a DKIM rotation step on the server ("mailctl serve dkim
// ACTION DOMAIN SELECTOR" of its current release): rotate, activate or
// remove (see server/dkim).
func (c *Conn) DKIM(ctx context.Context, action, domain, selector string) error {
	var bin, conf string
	if c.lab != nil {
		l := c.lab.Layout()
		bin, conf = l.Binary(), l.ConfigFile
	} else {
		bin, conf = remote.VPS.Binary(), remote.VPS.ConfigFile
	}
	cmd := strings.Join([]string{remote.ShellQuote(bin), "serve", "dkim", remote.ShellQuote(action), remote.ShellQuote(domain), remote.ShellQuote(selector), "-config", remote.ShellQuote(conf)}, " ")
	if _, err := c.Target().Run(ctx, cmd, nil); err != nil {
		var xe *remote.ExitError
		if errors.As(err, &xe) && strings.TrimSpace(xe.Stderr) != "" {
			// The server's own one-line error says it best.
			msg := strings.TrimPrefix(strings.TrimSpace(xe.Stderr), "Error: ")
			return fmt.Errorf("server.%s: %s", c.srv.Name, strings.ReplaceAll(msg, "\nError: ", "; "))
		}
		return fmt.Errorf("dkim %s of %s on server.%s: %w", action, domain, c.srv.Name, err)
	}
	return nil
}

// Binary is the executable deployed as the server.
type Binary struct {
	Version string
	Path    string
	SHA256  string
}

// LoadBinary hashes the executable at p.
func LoadBinary(version, p string) (Binary, error) {
	f, err := os.Open(p)
	if err != nil {
		return Binary{}, fmt.Errorf("open server binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Binary{}, fmt.Errorf("hash server binary %s: %w", p, err)
	}
	return Binary{Version: version, Path: p, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Release is the release id the binary installs as.
func (b Binary) Release() (string, error) { return remote.ReleaseName(b.Version, b.SHA256) }

// Desired is the state server s should have with binary b.
func Desired(cfg *config.Config, s *config.Server, b Binary) (plan.ServerState, []byte, error) {
	sc := desired.ServerConfig(cfg, s)
	js, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return plan.ServerState{}, nil, fmt.Errorf("encode server configuration: %w", err)
	}
	rel, err := b.Release()
	if err != nil {
		return plan.ServerState{}, nil, err
	}
	st := plan.ServerState{Release: rel, ConfigDigest: sc.Digest(), Running: true, RestartDigests: sc.RestartDigests()}
	st.Credentials = map[string]plan.UserCredentials{}
	for _, u := range sc.Users {
		st.Users = append(st.Users, u.Address)
		var c plan.UserCredentials
		c.Password, c.AppPasswords = u.Credentials()
		st.Credentials[u.Address] = c
		if d := serverconfig.SieveDigest(u.Sieve); d != "" {
			if st.Sieve == nil {
				st.Sieve = map[string]string{}
			}
			st.Sieve[u.Address] = d
		}
	}
	slices.Sort(st.Users)
	return st, append(js, '\n'), nil
}

// Deploy installs binary b and the configuration on the server, starts or
// reloads it as needed and checks its health (rolling back a failing
// release). restart names the settings the running server cannot reload
// that the configuration changes (plan.ServerState.RestartSettings): the
// server is then restarted.
func (c *Conn) Deploy(ctx context.Context, b Binary, configJSON []byte, restart []string) (remote.DeployResult, error) {
	f, err := os.Open(b.Path)
	if err != nil {
		return remote.DeployResult{}, fmt.Errorf("open server binary: %w", err)
	}
	defer f.Close()
	p := c.srv.Ports
	health := remote.Health{}
	for _, port := range []int{p.SMTP, p.Submission} {
		if port != 0 {
			health.BannerPorts = append(health.BannerPorts, port)
		}
	}
	for _, port := range []int{p.Submissions, p.IMAPS, p.IMAP} {
		if port != 0 {
			health.ListenPorts = append(health.ListenPorts, port)
		}
	}
	opts := remote.DeployOptions{Version: b.Version, Binary: f, SHA256: b.SHA256, Config: configJSON, Health: health, Logger: c.log, Restart: restart,
		Packages: desired.Packages(c.srv)}
	if c.lab != nil {
		opts.Health.Host = desired.LabListenHost(c.srv)
		return c.lab.Deploy(ctx, opts)
	}
	return remote.Deploy(ctx, c.t, opts)
}

// Destroy stops the server and removes what mailctl installed; the mail
// data is kept unless purge.
func (c *Conn) Destroy(ctx context.Context, purge bool) (bool, error) {
	if c.lab != nil {
		changed, err := c.lab.Destroy(ctx, purge)
		if err == nil && c.srv.Store != nil {
			// The store's URL holds a password: it goes with the
			// configuration (a VPS's goes with /etc/mailctl).
			if rerr := os.Remove(desired.StoreURLFile(c.cfg, c.srv)); rerr == nil {
				changed = true
			} else if !errors.Is(rerr, fs.ErrNotExist) {
				err = fmt.Errorf("server.%s: remove the store's URL file: %w", c.srv.Name, rerr)
			}
		}
		return changed, err
	}
	return remote.Destroy(ctx, c.t, purge)
}
