package target

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/remote"
)

// What apply does on a node of a PostgreSQL store before it deploys it
// (plan/apply): the store's URL in a private file, the schema migration
// run by the release about to be deployed, and the DKIM keys of the
// domains it shares with other nodes copied from their first node.

// layout is where the server's files are: the VPS layout, or the lab's.
func (c *Conn) layout() remote.Layout {
	if c.lab != nil {
		return c.lab.Layout()
	}
	return remote.VPS
}

// prepare makes sure the server's user and directories exist, as Deploy
// would, so that files owned by that user can be written before it.
func (c *Conn) prepare(ctx context.Context) error {
	if c.lab != nil {
		l := c.layout()
		for _, d := range []string{l.Base, l.Releases(), l.DataDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("server.%s: create lab directory: %w", c.srv.Name, err)
			}
		}
		return nil
	}
	if _, err := remote.EnsureSystem(ctx, c.t); err != nil {
		return fmt.Errorf("server.%s: %w", c.srv.Name, err)
	}
	return nil
}

// writePrivate writes content to p, mode 0600, owned by the server's
// user, unless it already holds it; it reports whether it wrote.
func (c *Conn) writePrivate(ctx context.Context, p string, content []byte) (bool, error) {
	t := c.Target()
	cur, err := t.ReadFile(ctx, p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("server.%s: read %s: %w", c.srv.Name, p, err)
	}
	if err == nil && bytes.Equal(cur, content) {
		return false, nil
	}
	if c.lab != nil {
		if err := t.WriteFile(ctx, p, bytes.NewReader(content), 0o600); err != nil {
			return false, fmt.Errorf("server.%s: write %s: %w", c.srv.Name, p, err)
		}
		return true, os.Chmod(p, 0o600)
	}
	if err := t.WriteFile(ctx, p, bytes.NewReader(content), 0o600); err != nil {
		return false, fmt.Errorf("server.%s: write %s: %w", c.srv.Name, p, err)
	}
	u := remote.ServiceUser
	if _, err := t.Run(ctx, fmt.Sprintf("chown %s:%s %s && chmod 600 %s", u, u, remote.ShellQuote(p), remote.ShellQuote(p)), nil); err != nil {
		return false, fmt.Errorf("server.%s: set owner of %s: %w", c.srv.Name, p, err)
	}
	return true, nil
}

// StoreURLCurrent reports whether the server's store URL file holds url.
// False when the file is missing.
func (c *Conn) StoreURLCurrent(ctx context.Context, url string) (bool, error) {
	p := desired.StoreURLFile(c.cfg, c.srv)
	cur, err := c.Target().ReadFile(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("server.%s: read %s: %w", c.srv.Name, p, err)
	}
	return strings.TrimSpace(string(cur)) == url, nil
}

// WriteStoreURL writes the PostgreSQL URL of the server's store to the
// file its server.json names (0600, owned by the server's user),
// creating the server's user and directories first when needed. It
// reports whether the file changed.
func (c *Conn) WriteStoreURL(ctx context.Context, url string) (bool, error) {
	if err := c.prepare(ctx); err != nil {
		return false, err
	}
	return c.writePrivate(ctx, desired.StoreURLFile(c.cfg, c.srv), []byte(url+"\n"))
}

// StoreSchema is a store's schema version (`mailctl store version -json`).
type StoreSchema struct {
	Database int `json:"database"`
	Binary   int `json:"binary"`
}

// ReadStoreSchema asks the server's current release for the schema
// version of its store, through the URL file. ok is false when it cannot
// tell (not deployed, a release without the store command, the file not
// written yet): the version is then unknown, which is not an error.
func (c *Conn) ReadStoreSchema(ctx context.Context) (StoreSchema, bool) {
	l := c.layout()
	cmd := strings.Join([]string{remote.ShellQuote(l.Binary()), "store", "version", "-json", "-timeout", "20s",
		"-url-file", remote.ShellQuote(desired.StoreURLFile(c.cfg, c.srv))}, " ")
	out, err := c.Target().Run(ctx, cmd, nil)
	if err != nil {
		c.log.Debug("store schema unknown", "server", c.srv.Name, "err", err)
		return StoreSchema{}, false
	}
	var s StoreSchema
	if err := json.Unmarshal(out, &s); err != nil {
		return StoreSchema{}, false
	}
	return s, true
}

// MigrateStore brings the schema of the server's store to the version of
// binary b, running `mailctl store migrate` of b on the server before b
// is deployed: b is put in place as a release without becoming current
// (Deploy then only switches to it). It returns the command's report
// ("store schema 0 -> 1"); a database newer than b is refused with
// pgstore's one-line error.
func (c *Conn) MigrateStore(ctx context.Context, b Binary) (string, error) {
	if err := c.prepare(ctx); err != nil {
		return "", err
	}
	bin, err := c.stage(ctx, b)
	if err != nil {
		return "", err
	}
	cmd := strings.Join([]string{remote.ShellQuote(bin), "store", "migrate", "-url-file", remote.ShellQuote(desired.StoreURLFile(c.cfg, c.srv))}, " ")
	out, err := c.Target().Run(ctx, cmd, nil)
	if err != nil {
		var xe *remote.ExitError
		if errors.As(err, &xe) && strings.TrimSpace(xe.Stderr) != "" {
			return "", fmt.Errorf("server.%s: %s", c.srv.Name, strings.TrimPrefix(strings.TrimSpace(xe.Stderr), "Error: "))
		}
		return "", fmt.Errorf("server.%s: migrate the store: %w", c.srv.Name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// stage puts binary b on the server as releases/<release>/mailctl without
// making it current, and returns its path. remote's InstallRelease, run
// in a staging layout beside the releases (it verifies the upload's
// checksum), then moves the release into place; a release already there
// is used as it is.
func (c *Conn) stage(ctx context.Context, b Binary) (string, error) {
	name, err := b.Release()
	if err != nil {
		return "", err
	}
	l := c.layout()
	dst := path.Join(l.Releases(), name)
	bin := path.Join(dst, "mailctl")
	t := c.Target()
	if _, err := t.Run(ctx, "test -x "+remote.ShellQuote(bin), nil); err == nil {
		return bin, nil
	}
	f, err := os.Open(b.Path)
	if err != nil {
		return "", fmt.Errorf("open server binary: %w", err)
	}
	defer f.Close()
	staging := remote.Layout{Base: path.Join(l.Base, ".staging")}
	if _, err := staging.InstallRelease(ctx, t, b.Version, f, b.SHA256); err != nil {
		return "", fmt.Errorf("server.%s: stage release %s: %w", c.srv.Name, name, err)
	}
	src := path.Join(staging.Releases(), name)
	if _, err := t.Run(ctx, fmt.Sprintf("mv -T %s %s && rm -rf %s", remote.ShellQuote(src), remote.ShellQuote(dst), remote.ShellQuote(staging.Base)), nil); err != nil {
		return "", fmt.Errorf("server.%s: stage release %s: %w", c.srv.Name, name, err)
	}
	return bin, nil
}

// DKIMFiles returns the DKIM key files of domain on the server (the
// private keys and the rotation history, by file name); empty when it
// has none yet.
func (c *Conn) DKIMFiles(ctx context.Context, domain string) (map[string][]byte, error) {
	dir := path.Join(contract.DKIMKeyDir(c.layout().DataDir), domain)
	t := c.Target()
	out, err := t.Run(ctx, "ls -1 "+remote.ShellQuote(dir)+" 2>/dev/null || true", nil)
	if err != nil {
		return nil, fmt.Errorf("server.%s: list the DKIM keys of %s: %w", c.srv.Name, domain, err)
	}
	files := map[string][]byte{}
	for _, n := range strings.Fields(string(out)) {
		if !strings.HasSuffix(n, ".pem") && n != "rotation.json" {
			continue
		}
		b, err := t.ReadFile(ctx, path.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("server.%s: read the DKIM key %s of %s: %w", c.srv.Name, n, domain, err)
		}
		files[n] = b
	}
	return files, nil
}

// SyncDKIMFiles makes the DKIM key files of domain on the server those of
// files (the first node's): missing and different ones are written (0600,
// owned by the server's user), those files lacks are removed. It reports
// whether anything changed; the server then needs a reload.
func (c *Conn) SyncDKIMFiles(ctx context.Context, domain string, files map[string][]byte) (bool, error) {
	if err := c.prepare(ctx); err != nil {
		return false, err
	}
	have, err := c.DKIMFiles(ctx, domain)
	if err != nil {
		return false, err
	}
	keyDir := contract.DKIMKeyDir(c.layout().DataDir)
	dir := path.Join(keyDir, domain)
	t := c.Target()
	mkdir := fmt.Sprintf("install -d -m 700 %[1]s %[2]s", remote.ShellQuote(keyDir), remote.ShellQuote(dir))
	if c.lab == nil {
		u := remote.ServiceUser
		mkdir = fmt.Sprintf("install -d -m 700 -o %[3]s -g %[3]s %[1]s %[2]s", remote.ShellQuote(keyDir), remote.ShellQuote(dir), u)
	}
	if _, err := t.Run(ctx, mkdir, nil); err != nil {
		return false, fmt.Errorf("server.%s: create the DKIM key directory of %s: %w", c.srv.Name, domain, err)
	}
	changed := false
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if bytes.Equal(have[n], files[n]) {
			continue
		}
		if _, err := c.writePrivate(ctx, path.Join(dir, n), files[n]); err != nil {
			return changed, err
		}
		changed = true
	}
	for n := range have {
		if _, keep := files[n]; keep {
			continue
		}
		if _, err := t.Run(ctx, "rm -f "+remote.ShellQuote(path.Join(dir, n)), nil); err != nil {
			return changed, fmt.Errorf("server.%s: remove the DKIM key %s of %s: %w", c.srv.Name, n, domain, err)
		}
		changed = true
	}
	return changed, nil
}

// Reload makes a running server read its configuration and keys again
// (SIGHUP); a server that does not run is left alone.
func (c *Conn) Reload(ctx context.Context) error {
	if c.lab != nil {
		pid, ok := c.lab.Running()
		if !ok {
			return nil
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("server.%s: reload (pid %d): %w", c.srv.Name, pid, err)
		}
		return nil
	}
	if _, err := c.t.Run(ctx, "if systemctl is-active --quiet mailctl; then systemctl reload mailctl; fi", nil); err != nil {
		return fmt.Errorf("server.%s: reload: %w", c.srv.Name, err)
	}
	return nil
}
