package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
)

// Layout is where a deployment lives on the server.
type Layout struct {
	// Base holds releases/<name>/mailctl and the symlinks current and
	// previous (relative, to releases/<name>).
	Base string
	// ConfigFile is the generated server configuration.
	ConfigFile string
	// DataDir holds the store, queue, keys and certificates.
	DataDir string
	// Unit is the systemd unit file.
	Unit string
}

// VPS is the layout on a server: binaries, configuration, data.
var VPS = Layout{
	Base:       "/opt/mailctl",
	ConfigFile: contract.VPSConfigFile,
	DataDir:    contract.DefaultDataDir,
	Unit:       "/etc/systemd/system/mailctl.service",
}

// ServiceUser is the system user and group the server runs as.
const ServiceUser = "mailctl"

// serviceName is the systemd unit name.
const serviceName = "mailctl"

// KeepReleases is how many releases are kept (the current and previous
// ones are always kept as well).
const KeepReleases = 3

// Releases returns the releases directory.
func (l Layout) Releases() string { return path.Join(l.Base, "releases") }

// Current returns the path of the current symlink.
func (l Layout) Current() string { return path.Join(l.Base, "current") }

// Binary returns the path of the current binary, through the symlink.
func (l Layout) Binary() string { return path.Join(l.Current(), "mailctl") }

// statusCommand is the shell command that prints the status of the
// current release as JSON (contract.StatusArgs).
func (l Layout) statusCommand() string {
	cmd := ShellQuote(l.Binary())
	for _, a := range contract.StatusArgs(l.ConfigFile) {
		cmd += " " + ShellQuote(a)
	}
	return cmd
}

// ErrNotDeployed is returned by Status when mailctl is not installed.
var ErrNotDeployed = errors.New("remote: mailctl is not deployed on this server")

var (
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,100}$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ReleaseName returns the directory name of a release: the version
// followed by the first 12 hex digits of the binary's SHA-256, so that two
// builds of one version never share a directory.
func ReleaseName(version, sha256 string) (string, error) {
	sha256 = strings.ToLower(sha256)
	if !sha256RE.MatchString(sha256) {
		return "", fmt.Errorf("release checksum %q: want 64 hex digits of SHA-256", sha256)
	}
	if !versionRE.MatchString(version) {
		return "", fmt.Errorf("release version %q: want letters, digits, '.', '_', '+', '-'", version)
	}
	prefix := sha256[:12]
	if strings.HasSuffix(version, "-"+prefix) {
		return version, nil
	}
	return version + "-" + prefix, nil
}

// Release is the outcome of InstallRelease.
type Release struct {
	// Name is the release directory name under releases/.
	Name string
	// Previous is the release that was current before, "" if none or if
	// the current release did not change.
	Previous string
	// Uploaded is true when the binary was transferred (it was not
	// already on the server).
	Uploaded bool
	// Changed is true when the current symlink moved.
	Changed bool
}

// InstallRelease installs binary (whose SHA-256 is sha256, in hex) as
// release version on the server and makes it current. See
// Layout.InstallRelease.
func InstallRelease(ctx context.Context, t Target, version string, binary io.Reader, sha256 string) (Release, error) {
	return VPS.InstallRelease(ctx, t, version, binary, sha256)
}

// InstallRelease uploads the binary to a temporary name in the releases
// directory, verifies its checksum on the server (sha256sum), renames it
// to releases/<name>/mailctl, switches the current symlink atomically
// (previous then points to the old current) and removes old releases,
// keeping KeepReleases plus the current and previous ones. The upload is
// skipped when the release is already on the server with that checksum;
// binary is then not read.
func (l Layout) InstallRelease(ctx context.Context, t Target, version string, binary io.Reader, sha256 string) (Release, error) {
	sha256 = strings.ToLower(sha256)
	name, err := ReleaseName(version, sha256)
	if err != nil {
		return Release{}, err
	}
	rel := Release{Name: name}
	dir := path.Join(l.Releases(), name)
	bin := path.Join(dir, "mailctl")
	out, err := t.Run(ctx, fmt.Sprintf(`set -e
mkdir -p %[1]s
if [ -f %[2]s ] && printf '%%s  %%s\n' %[3]s %[2]s | sha256sum -c --status 2>/dev/null; then echo present=1; else echo present=0; fi
echo "current=$(readlink %[4]s 2>/dev/null || true)"`, ShellQuote(l.Releases()), ShellQuote(bin), sha256, ShellQuote(l.Current())), nil)
	if err != nil {
		return rel, fmt.Errorf("inspect releases on server: %w", err)
	}
	kv := parseKV(out)
	current := path.Base(kv["current"])
	if kv["current"] == "" {
		current = ""
	}
	if kv["present"] != "1" {
		if binary == nil {
			return rel, fmt.Errorf("install release %s: not on the server and no binary given", name)
		}
		tmp := path.Join(l.Releases(), ".upload-"+name+"-"+randomSuffix())
		if err := t.WriteFile(ctx, tmp, binary, 0o755); err != nil {
			return rel, fmt.Errorf("upload release %s: %w", name, err)
		}
		out, err := t.Run(ctx, fmt.Sprintf(`tmp=%[1]s
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$sum" != %[2]s ]; then rm -f "$tmp"; echo "checksum mismatch: the uploaded file has SHA-256 $sum, want %[2]s" >&2; exit 65; fi
mkdir -p %[3]s && mv -fT "$tmp" %[4]s && sync %[3]s %[5]s`, ShellQuote(tmp), sha256, ShellQuote(dir), ShellQuote(bin), ShellQuote(l.Releases())), nil)
		if err != nil {
			return rel, fmt.Errorf("verify and install release %s: %w", name, err)
		}
		_ = out
		rel.Uploaded = true
	}
	if current != name {
		if err := l.switchCurrent(ctx, t, name, true); err != nil {
			return rel, err
		}
		rel.Previous = current
		rel.Changed = true
	}
	if err := l.prune(ctx, t); err != nil {
		return rel, err
	}
	return rel, nil
}

// switchCurrent points current at release name (atomically: a new symlink
// renamed over the old one). With rememberPrevious, previous first points
// at the old current.
func (l Layout) switchCurrent(ctx context.Context, t Target, name string, rememberPrevious bool) error {
	prev := ""
	if rememberPrevious {
		prev = fmt.Sprintf(`old=$(readlink %[1]s 2>/dev/null || true)
if [ -n "$old" ] && [ "$old" != %[2]s ]; then ln -sfn "$old" %[3]s.tmp && mv -fT %[3]s.tmp %[3]s; fi
`, ShellQuote(l.Current()), ShellQuote("releases/"+name), ShellQuote(path.Join(l.Base, "previous")))
	}
	_, err := t.Run(ctx, fmt.Sprintf(`set -e
test -x %[1]s
%[2]sln -sfn %[3]s %[4]s.tmp
mv -fT %[4]s.tmp %[4]s
touch %[5]s
sync %[6]s`, ShellQuote(path.Join(l.Releases(), name, "mailctl")), prev, ShellQuote("releases/"+name), ShellQuote(l.Current()), ShellQuote(path.Join(l.Releases(), name)), ShellQuote(l.Base)), nil)
	if err != nil {
		return fmt.Errorf("switch current release to %s: %w", name, err)
	}
	return nil
}

// prune removes releases beyond the KeepReleases newest, never the current
// or previous one.
func (l Layout) prune(ctx context.Context, t Target) error {
	_, err := t.Run(ctx, fmt.Sprintf(`cd %[1]s || exit 0
cur=$(basename "$(readlink ../current 2>/dev/null)" 2>/dev/null)
prev=$(basename "$(readlink ../previous 2>/dev/null)" 2>/dev/null)
n=0
for d in $(ls -1t); do
  [ -d "$d" ] || continue
  n=$((n+1))
  if [ "$n" -le %[2]d ] || [ "$d" = "$cur" ] || [ "$d" = "$prev" ]; then continue; fi
  rm -rf -- "$d"
done
find . -maxdepth 1 -name '.upload-*' -mmin +60 -exec rm -f {} + 2>/dev/null
true`, ShellQuote(l.Releases()), KeepReleases), nil)
	if err != nil {
		return fmt.Errorf("remove old releases: %w", err)
	}
	return nil
}

// rollback points current back at previous (and previous at the failed
// release). It returns the name of the release now current.
func (l Layout) rollback(ctx context.Context, t Target) (string, error) {
	out, err := t.Run(ctx, fmt.Sprintf(`set -e
cd %[1]s
prev=$(readlink previous 2>/dev/null || true)
[ -n "$prev" ] || { echo "no previous release to roll back to" >&2; exit 1; }
cur=$(readlink current)
ln -sfn "$prev" current.tmp && mv -fT current.tmp current
ln -sfn "$cur" previous.tmp && mv -fT previous.tmp previous
sync .
basename "$prev"`, ShellQuote(l.Base)), nil)
	if err != nil {
		return "", fmt.Errorf("roll back to the previous release: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func parseKV(b []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m
}

// EnsureSystem creates the mailctl system user and group (no login shell,
// no home) and the directories: the base (0755 root), the config
// directory (0750 root:mailctl) and the data directory (0700 mailctl).
// It reports whether anything changed.
func EnsureSystem(ctx context.Context, t Target) (bool, error) {
	l := VPS
	out, err := t.Run(ctx, fmt.Sprintf(`set -e
u=%[1]s
if ! getent group "$u" >/dev/null; then groupadd --system "$u"; echo changed; fi
if ! getent passwd "$u" >/dev/null; then
  useradd --system --gid "$u" --home-dir %[2]s --no-create-home --shell /usr/sbin/nologin --comment "mailctl mail server" "$u"
  echo changed
fi
ensure_dir() {
  if [ "$(stat -c '%%a %%U %%G' "$1" 2>/dev/null)" != "$2 $3 $4" ]; then
    install -d -m "$2" -o "$3" -g "$4" "$1"; echo changed
  fi
}
ensure_dir %[3]s 755 root root
ensure_dir %[4]s 755 root root
ensure_dir %[5]s 750 root "$u"
ensure_dir %[2]s 700 "$u" "$u"`, ServiceUser, ShellQuote(l.DataDir), ShellQuote(l.Base), ShellQuote(l.Releases()), ShellQuote(path.Dir(l.ConfigFile))), nil)
	if err != nil {
		return false, fmt.Errorf("create user %s and directories: %w", ServiceUser, err)
	}
	return bytes.Contains(out, []byte("changed")), nil
}

// WriteConfig writes the server configuration to /etc/mailctl/server.json
// (0640 root:mailctl) when its content, mode or owner differ, and reports
// whether it changed anything.
func WriteConfig(ctx context.Context, t Target, config []byte) (bool, error) {
	return writeIfChanged(ctx, t, VPS.ConfigFile, config, 0o640, "root", ServiceUser)
}

// writeIfChanged writes content to p with mode and owner unless the file
// already has them.
func writeIfChanged(ctx context.Context, t Target, p string, content []byte, mode fs.FileMode, owner, group string) (bool, error) {
	cur, err := t.ReadFile(ctx, p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	want := fmt.Sprintf("%o %s %s", mode.Perm(), owner, group)
	if err == nil && bytes.Equal(cur, content) {
		out, err := t.Run(ctx, "stat -c '%a %U %G' "+ShellQuote(p), nil)
		if err != nil {
			return false, fmt.Errorf("stat %s: %w", p, err)
		}
		if strings.TrimSpace(string(out)) == want {
			return false, nil
		}
	}
	if err := writeOwned(ctx, t, p, content, mode, owner, group); err != nil {
		return false, err
	}
	return true, nil
}

// writeOwned replaces p with content, then sets its owner and mode.
func writeOwned(ctx context.Context, t Target, p string, content []byte, mode fs.FileMode, owner, group string) error {
	if err := t.WriteFile(ctx, p, bytes.NewReader(content), mode); err != nil {
		return err
	}
	if _, err := t.Run(ctx, fmt.Sprintf("chown %s:%s %s && chmod %o %s", owner, group, ShellQuote(p), mode.Perm(), ShellQuote(p)), nil); err != nil {
		return fmt.Errorf("set owner of %s: %w", p, err)
	}
	return nil
}

// serverState is what inspect found on the server.
type serverState struct {
	systemOK       bool // user, group and directories as EnsureSystem makes them
	releasePresent bool
	current        string
	configOK       bool // content, mode and owner
	unitOK         bool
	enabled        bool
	active         bool
}

// inspect reads in one round trip everything Deploy compares: under
// emulation each command costs about a second.
func inspect(ctx context.Context, t Target, name string, config, unit []byte) (serverState, error) {
	l := VPS
	bin := path.Join(l.Releases(), name, "mailctl")
	// The release directory name holds the checksum prefix and the
	// binary only appears there once verified (InstallRelease): it is
	// not hashed again here.
	out, err := t.Run(ctx, fmt.Sprintf(`u=%[1]s
sys=1
getent group "$u" >/dev/null && getent passwd "$u" >/dev/null || sys=0
chk() { [ "$(stat -c '%%a %%U %%G' "$1" 2>/dev/null)" = "$2" ] || sys=0; }
chk %[2]s "755 root root"; chk %[3]s "755 root root"; chk %[4]s "750 root $u"; chk %[5]s "700 $u $u"
echo "system=$sys"
[ -x %[6]s ] && echo present=1
echo "current=$(basename "$(readlink %[7]s 2>/dev/null)" 2>/dev/null)"
f() { [ -f "$1" ] && echo "$2=$(sha256sum < "$1" | cut -d' ' -f1) $(stat -c '%%a %%U %%G' "$1")"; }
f %[8]s config; f %[9]s unit
systemctl show -p UnitFileState -p ActiveState %[10]s 2>/dev/null
true`, ServiceUser, ShellQuote(l.Base), ShellQuote(l.Releases()), ShellQuote(path.Dir(l.ConfigFile)), ShellQuote(l.DataDir),
		ShellQuote(bin), ShellQuote(l.Current()), ShellQuote(l.ConfigFile), ShellQuote(l.Unit), serviceName), nil)
	if err != nil {
		return serverState{}, fmt.Errorf("inspect server: %w", err)
	}
	kv := parseKV(out)
	return serverState{
		systemOK:       kv["system"] == "1",
		releasePresent: kv["present"] == "1",
		current:        kv["current"],
		configOK:       kv["config"] == sha256Hex(config)+" 640 root "+ServiceUser,
		unitOK:         kv["unit"] == sha256Hex(unit)+" 644 root root",
		enabled:        kv["UnitFileState"] == "enabled",
		active:         kv["ActiveState"] == "active",
	}, nil
}

// InstallUnit writes the systemd unit when it differs, runs
// "systemctl daemon-reload" only then, and enables the unit. It reports
// whether the unit file changed.
func InstallUnit(ctx context.Context, t Target) (bool, error) {
	changed, err := writeIfChanged(ctx, t, VPS.Unit, []byte(Unit(UnitOptions{})), 0o644, "root", "root")
	if err != nil {
		return false, fmt.Errorf("install unit: %w", err)
	}
	cmd := "systemctl is-enabled --quiet " + serviceName + " || systemctl enable --quiet " + serviceName
	if changed {
		cmd = "systemctl daemon-reload && " + cmd
	}
	if _, err := t.Run(ctx, cmd, nil); err != nil {
		return changed, fmt.Errorf("enable unit: %w", err)
	}
	return changed, nil
}

// Health says how to check that a started server works.
type Health struct {
	// BannerPorts must answer with an SMTP "220" greeting; default 25
	// and 587.
	BannerPorts []int
	// ListenPorts must accept TCP connections (TLS ports, IMAP);
	// default 465 and 993.
	ListenPorts []int
	// Timeout bounds the wait for a healthy server; default 60s.
	Timeout time.Duration
	// Host is the address a lab listens on (its loopback ipv4); default
	// 127.0.0.1. A VPS is probed on 127.0.0.1, where it listens on every
	// address.
	Host string
}

func (h Health) withDefaults() Health {
	if h.BannerPorts == nil {
		h.BannerPorts = []int{25, 587}
	}
	if h.ListenPorts == nil {
		h.ListenPorts = []int{465, 993}
	}
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	if h.Host == "" {
		h.Host = "127.0.0.1"
	}
	return h
}

// DeployOptions describe one deployment.
type DeployOptions struct {
	// Version of the binary (e.g. "0.4.0"); see ReleaseName.
	Version string
	// Binary is the Linux server binary, read only when the release is
	// not already on the server.
	Binary io.Reader
	// SHA256 is the binary's checksum in hex.
	SHA256 string
	// Config is the content of server.json.
	Config []byte
	// Health is the check run after a restart or reload.
	Health Health
	// Restart names the settings the running server cannot reload
	// (listen addresses, limits, ...) that this deployment changes: the
	// service is restarted, not reloaded.
	Restart []string
	// Packages are Debian packages the server needs (rspamd for the
	// spam filter): installed when missing, their services enabled and
	// started, before the server restarts (EnsurePackages).
	Packages []string
	// Logger receives progress; default discards it.
	Logger *slog.Logger
}

// DeployResult says what a deployment did.
type DeployResult struct {
	// Release is the release current after the deployment.
	Release string
	// Actions lists what changed, in order ("create user and
	// directories", "install release X", "write config", "write unit",
	// "restart", "reload"); empty when nothing changed.
	Actions []string
}

// Changed reports whether the deployment changed anything.
func (r DeployResult) Changed() bool { return len(r.Actions) > 0 }

// Deploy makes the server run the given release and configuration under
// systemd, idempotently: it creates the user and directories, installs
// the release, writes the configuration and the unit, then restarts the
// service when the binary or the unit changed, it is not running or
// o.Restart names settings it cannot reload, reloads it (SIGHUP) when only
// the configuration changed, and does
// nothing more when nothing changed. After a restart or reload it checks
// the server's health; when a new release fails, current is rolled back
// to the previous release, the service restarted, and the error carries
// the reason and the last journal lines.
func Deploy(ctx context.Context, t Target, o DeployOptions) (DeployResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res DeployResult
	name, err := ReleaseName(o.Version, o.SHA256)
	if err != nil {
		return res, err
	}
	unit := []byte(Unit(UnitOptions{}))
	st, err := inspect(ctx, t, name, o.Config, unit)
	if err != nil {
		return res, err
	}
	if !st.systemOK {
		if _, err := EnsureSystem(ctx, t); err != nil {
			return res, err
		}
		res.Actions = append(res.Actions, "create user and directories")
	}
	installed, err := EnsurePackages(ctx, t, o.Packages)
	if err != nil {
		return res, err
	}
	if len(installed) > 0 {
		res.Actions = append(res.Actions, "install packages "+strings.Join(installed, " "))
		log.Info("packages installed", "packages", installed)
	}
	rel := Release{Name: name}
	if !st.releasePresent || st.current != name {
		rel, err = InstallRelease(ctx, t, o.Version, o.Binary, o.SHA256)
		if err != nil {
			return res, err
		}
	}
	res.Release = rel.Name
	if rel.Changed {
		res.Actions = append(res.Actions, "install release "+rel.Name)
		log.Info("release installed", "release", rel.Name, "uploaded", rel.Uploaded)
	}
	cfgChanged := !st.configOK
	if cfgChanged {
		if err := writeOwned(ctx, t, VPS.ConfigFile, o.Config, 0o640, "root", ServiceUser); err != nil {
			return res, err
		}
		res.Actions = append(res.Actions, "write config")
	}
	unitChanged := !st.unitOK
	if unitChanged {
		if err := writeOwned(ctx, t, VPS.Unit, unit, 0o644, "root", "root"); err != nil {
			return res, err
		}
		res.Actions = append(res.Actions, "write unit")
	}
	if unitChanged || !st.enabled {
		cmd := "systemctl enable --quiet " + serviceName
		if unitChanged {
			cmd = "systemctl daemon-reload && " + cmd
		}
		if _, err := t.Run(ctx, cmd, nil); err != nil {
			return res, fmt.Errorf("enable unit: %w", err)
		}
		if !st.enabled && !unitChanged {
			res.Actions = append(res.Actions, "enable unit")
		}
	}
	active := st.active
	switch {
	case rel.Changed || unitChanged || !active || len(o.Restart) > 0:
		log.Info("restart service", "host_release", rel.Name, "settings", o.Restart)
		if _, err := t.Run(ctx, restartCmd, nil); err != nil {
			return res, failDeploy(ctx, t, log, o.Health, rel, fmt.Errorf("systemctl restart: %w", err))
		}
		res.Actions = append(res.Actions, "restart")
	case cfgChanged:
		log.Info("reload service")
		if _, err := t.Run(ctx, "systemctl reload "+serviceName, nil); err != nil {
			return res, fmt.Errorf("systemctl reload: %w", err)
		}
		res.Actions = append(res.Actions, "reload")
	default:
		return res, nil
	}
	if err := checkHealth(ctx, t, o.Health); err != nil {
		if res.Actions[len(res.Actions)-1] == "reload" {
			return res, fmt.Errorf("health check after reload: %w%s", err, journal(ctx, t))
		}
		return res, failDeploy(ctx, t, log, o.Health, rel, err)
	}
	return res, nil
}

// restartCmd restarts the service with a fresh restart counter (NRestarts),
// which the health check reads to detect a crash loop.
// "restart" keeps the counter, and reset-failed on a crash-looping unit
// races with its next automatic restart: stop, reset, start.
const restartCmd = "systemctl stop " + serviceName + " && { systemctl reset-failed " + serviceName + " 2>/dev/null; systemctl start " + serviceName + "; }"

// failDeploy rolls back after a failed restart when a new release was
// installed, and returns the error to report.
func failDeploy(ctx context.Context, t Target, log *slog.Logger, h Health, rel Release, cause error) error {
	j := journal(ctx, t)
	if !rel.Changed {
		return fmt.Errorf("deploy %s: %w%s", rel.Name, cause, j)
	}
	if rel.Previous == "" {
		return fmt.Errorf("deploy %s: %w (no previous release to roll back to)%s", rel.Name, cause, j)
	}
	log.Warn("health check failed, rolling back", "release", rel.Name, "previous", rel.Previous, "err", cause)
	back, err := VPS.rollback(ctx, t)
	if err != nil {
		return fmt.Errorf("deploy %s: %w; %v%s", rel.Name, cause, err, j)
	}
	if _, err := t.Run(ctx, restartCmd, nil); err != nil {
		return fmt.Errorf("deploy %s: %w; rolled back to %s but its restart failed: %v%s", rel.Name, cause, back, err, j)
	}
	if err := checkHealth(ctx, t, h); err != nil {
		return fmt.Errorf("deploy %s: %w; rolled back to %s, which is not healthy either: %v%s", rel.Name, cause, back, err, j)
	}
	return fmt.Errorf("deploy %s: %w; rolled back to release %s, which is running%s", rel.Name, cause, back, j)
}

// journal returns the last lines of the service's journal, prefixed for
// appending to an error.
func journal(ctx context.Context, t Target) string {
	out, err := t.Run(ctx, "journalctl -u "+serviceName+" -n 20 --no-pager -o short-iso", nil)
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return ""
	}
	return "\nlast lines of journalctl -u " + serviceName + ":\n" + strings.TrimRight(string(out), "\n")
}

// healthScript polls until the unit is active, every banner port answers
// "220" and every listen port accepts a connection, or the deadline. It
// uses bash's /dev/tcp: a minimal Debian has no nc or python.
const healthScript = `unit=$1; timeout=$2; banner=$3; listen=$4
end=$(( $(date +%s) + timeout ))
while :; do
  why=""
  st=$(systemctl is-active "$unit" 2>/dev/null)
  restarts=$(systemctl show -p NRestarts --value "$unit" 2>/dev/null)
  if [ "${restarts:-0}" -gt 0 ]; then why="unit $unit restarted $restarts times (it keeps exiting)"
  elif [ "$st" != active ]; then why="unit $unit is $st"
  else
    for p in $banner; do
      line=$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$p"' && IFS= read -r -t 4 l <&3 && printf "%s" "$l"' 2>/dev/null | tr -d '\r')
      case "$line" in 220*) ;; *) why="port $p: no SMTP greeting (${line:-no answer})"; break;; esac
    done
    if [ -z "$why" ]; then
      for p in $listen; do
        timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$p" 2>/dev/null || { why="port $p: connection refused"; break; }
      done
    fi
  fi
  [ -z "$why" ] && exit 0
  case "$st" in failed|inactive) break;; esac
  [ "${restarts:-0}" -gt 0 ] && break
  [ "$(date +%s)" -ge "$end" ] && break
  sleep 1
done
echo "$why" >&2
exit 1`

// checkHealth runs the health check on the server itself.
func checkHealth(ctx context.Context, t Target, h Health) error {
	h = h.withDefaults()
	secs := int(h.Timeout / time.Second)
	if secs < 1 {
		secs = 1
	}
	cctx, cancel := context.WithTimeout(ctx, h.Timeout+30*time.Second)
	defer cancel()
	cmd := "bash -c " + ShellQuote(healthScript) + " health " + serviceName + " " + strconv.Itoa(secs) + " " +
		ShellQuote(joinInts(h.BannerPorts)) + " " + ShellQuote(joinInts(h.ListenPorts))
	_, err := t.Run(cctx, cmd, nil)
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) && ee.Status == 1 && ee.Stderr != "" {
			return fmt.Errorf("health check failed: %s", ee.Stderr)
		}
		return fmt.Errorf("health check: %w", err)
	}
	return nil
}

// CheckHealth checks a running server: unit active, SMTP greetings and
// listening ports, polling up to h.Timeout.
func CheckHealth(ctx context.Context, t Target, h Health) error { return checkHealth(ctx, t, h) }

func joinInts(p []int) string {
	s := make([]string, len(p))
	for i, v := range p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, " ")
}

// Status runs "mailctl serve status -json" of the current release on the
// server and returns its JSON. It returns ErrNotDeployed when the binary
// or the unit is absent.
func Status(ctx context.Context, t Target) ([]byte, error) {
	l := VPS
	out, err := t.Run(ctx, fmt.Sprintf(`test -x %[1]s && test -f %[2]s || exit 69
exec %[3]s`, ShellQuote(l.Binary()), ShellQuote(l.Unit), l.statusCommand()), nil)
	if st, ok := ExitStatus(err); ok && st == 69 {
		return nil, ErrNotDeployed
	}
	if err != nil {
		return nil, fmt.Errorf("read server status: %w", err)
	}
	return out, nil
}

// Destroy stops and disables the service and removes the unit, the
// releases and the configuration. The data directory, user and group are
// kept unless purgeData. It reports whether anything was removed.
func Destroy(ctx context.Context, t Target, purgeData bool) (bool, error) {
	l := VPS
	purge := ""
	if purgeData {
		purge = fmt.Sprintf(`if [ -e %[1]s ]; then rm -rf %[1]s; echo changed; fi
if getent passwd %[2]s >/dev/null; then userdel %[2]s; echo changed; fi
if getent group %[2]s >/dev/null; then groupdel %[2]s; echo changed; fi
`, ShellQuote(l.DataDir), ServiceUser)
	}
	out, err := t.Run(ctx, fmt.Sprintf(`set -e
if [ -f %[1]s ]; then
  systemctl disable --now --quiet %[2]s 2>/dev/null || systemctl stop %[2]s 2>/dev/null || true
  rm -f %[1]s
  systemctl daemon-reload
  systemctl reset-failed %[2]s 2>/dev/null || true
  echo changed
fi
if [ -e %[3]s ]; then rm -rf %[3]s; echo changed; fi
if [ -e %[4]s ]; then rm -rf %[4]s; echo changed; fi
%[5]s`, ShellQuote(l.Unit), serviceName, ShellQuote(l.Base), ShellQuote(path.Dir(l.ConfigFile)), purge), nil)
	if err != nil {
		return false, fmt.Errorf("remove mailctl from server: %w", err)
	}
	return bytes.Contains(out, []byte("changed")), nil
}
