package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailctl/mailctl/contract"
)

// Lab runs mailctl on this machine without systemd or root, for the local
// lab. It keeps the VPS layout under Dir
// (releases/<name>/mailctl, current, previous, server.json, data/) and
// supervises the server as a detached process: a new session (setsid),
// standard output and error appended to mailctl.log, its pid in
// mailctl.pid, and in running.json the release and configuration it was
// started with. The release installation uses the GNU tools of a Linux
// system (sha256sum, mv -T, stat -c).
type Lab struct {
	// Dir is the lab state directory, e.g. examples/local/.mailctl.
	Dir string
}

// LabHealth is the health check on the lab ports (examples/local).
var LabHealth = Health{BannerPorts: []int{2525, 2587}, ListenPorts: []int{2465, 2143, 2993}, Timeout: 30 * time.Second}

func (lab Lab) dir() string {
	d, err := filepath.Abs(lab.Dir)
	if err != nil {
		return lab.Dir
	}
	return d
}

// Layout returns the lab's release and configuration layout.
func (lab Lab) Layout() Layout {
	d := lab.dir()
	return Layout{
		Base:       d,
		ConfigFile: contract.LabConfigFile(d),
		DataDir:    contract.LabDataDir(d),
	}
}

// PIDFile, LogFile and stateFile are the supervisor's files.
func (lab Lab) PIDFile() string   { return filepath.Join(lab.dir(), "mailctl.pid") }
func (lab Lab) LogFile() string   { return filepath.Join(lab.dir(), "mailctl.log") }
func (lab Lab) stateFile() string { return filepath.Join(lab.dir(), "running.json") }

// labState is what the running server was started with.
type labState struct {
	PID     int    `json:"pid"`
	Release string `json:"release"`
	Config  string `json:"config_sha256"`
}

// Deploy installs the release and configuration under Dir and makes sure
// the server runs them: it starts the server when it is not running,
// restarts it when the release changed or o.Restart names settings it
// cannot reload, sends SIGHUP when only the configuration changed and does
// nothing otherwise. After a start or reload it checks o.Health (LabHealth when o.Health is zero); when a new
// release fails, it rolls back to the previous one and returns the reason
// with the last lines of the log.
func (lab Lab) Deploy(ctx context.Context, o DeployOptions) (DeployResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Health.BannerPorts == nil && o.Health.ListenPorts == nil && o.Health.Timeout == 0 {
		o.Health = LabHealth
	}
	var res DeployResult
	l := lab.Layout()
	for _, d := range []string{l.Base, l.Releases(), l.DataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return res, fmt.Errorf("create lab directory: %w", err)
		}
	}
	t := Local{}
	rel, err := l.InstallRelease(ctx, t, o.Version, o.Binary, o.SHA256)
	if err != nil {
		return res, err
	}
	res.Release = rel.Name
	if rel.Changed {
		res.Actions = append(res.Actions, "install release "+rel.Name)
	}
	cur, err := os.ReadFile(l.ConfigFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("read lab config: %w", err)
	}
	if err != nil || !bytes.Equal(cur, o.Config) {
		if err := t.WriteFile(ctx, l.ConfigFile, bytes.NewReader(o.Config), 0o600); err != nil {
			return res, err
		}
		res.Actions = append(res.Actions, "write config")
	}
	digest := sha256Hex(o.Config)

	st, alive := lab.running()
	switch {
	case !alive || st.Release != rel.Name || len(o.Restart) > 0:
		action := "start"
		if alive {
			action = "restart"
			if err := lab.Stop(ctx); err != nil {
				return res, err
			}
		}
		log.Info("lab server "+action, "release", rel.Name)
		if err := lab.start(rel.Name, digest); err != nil {
			return res, err
		}
		res.Actions = append(res.Actions, action)
		if err := lab.health(ctx, o.Health); err != nil {
			return res, lab.fail(ctx, log, o.Health, rel, digest, err)
		}
	case st.Config != digest:
		log.Info("lab server reload", "pid", st.PID)
		if err := syscall.Kill(st.PID, syscall.SIGHUP); err != nil {
			return res, fmt.Errorf("reload lab server (pid %d): %w", st.PID, err)
		}
		st.Config = digest
		if err := lab.writeState(st); err != nil {
			return res, err
		}
		res.Actions = append(res.Actions, "reload")
		if err := lab.health(ctx, o.Health); err != nil {
			return res, fmt.Errorf("health check after reload: %w%s", err, lab.logTail())
		}
	}
	return res, nil
}

func (lab Lab) fail(ctx context.Context, log *slog.Logger, h Health, rel Release, digest string, cause error) error {
	j := lab.logTail()
	lab.Stop(ctx)
	if !rel.Changed {
		return fmt.Errorf("deploy %s: %w%s", rel.Name, cause, j)
	}
	if rel.Previous == "" {
		return fmt.Errorf("deploy %s: %w (no previous release to roll back to)%s", rel.Name, cause, j)
	}
	log.Warn("lab health check failed, rolling back", "release", rel.Name, "previous", rel.Previous, "err", cause)
	back, err := lab.Layout().rollback(ctx, Local{})
	if err != nil {
		return fmt.Errorf("deploy %s: %w; %v%s", rel.Name, cause, err, j)
	}
	if err := lab.start(back, digest); err != nil {
		return fmt.Errorf("deploy %s: %w; rolled back to %s but it did not start: %v%s", rel.Name, cause, back, err, j)
	}
	if err := lab.health(ctx, h); err != nil {
		return fmt.Errorf("deploy %s: %w; rolled back to %s, which is not healthy either: %v%s", rel.Name, cause, back, err, j)
	}
	return fmt.Errorf("deploy %s: %w; rolled back to release %s, which is running%s", rel.Name, cause, back, j)
}

// start launches the current release detached from this process.
func (lab Lab) start(release, digest string) error {
	l := lab.Layout()
	logf, err := os.OpenFile(lab.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open lab log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(l.Binary(), "serve", "-config", l.ConfigFile)
	cmd.Dir = l.DataDir // as WorkingDirectory= in the unit
	cmd.Env = labEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start lab server: %w", err)
	}
	pid := cmd.Process.Pid
	// Reap the child if it exits while this process still runs, so
	// that a dead server is not mistaken for a live zombie.
	go cmd.Wait()
	if err := (Local{}).WriteFile(context.Background(), lab.PIDFile(), strings.NewReader(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		return err
	}
	return lab.writeState(labState{PID: pid, Release: release, Config: digest})
}

// labEnvKeep lists the environment variables the lab server inherits from
// the process that starts it (apply, with provider tokens and whatever
// else its user exported): only what a process needs to run, as systemd
// gives the unit on a VPS.
var labEnvKeep = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true,
	"LANG": true, "LC_ALL": true, "TZ": true,
	"GOMAXPROCS": true, "GOMEMLIMIT": true, "GOGC": true, "GODEBUG": true, "GOTRACEBACK": true,
}

// labEnv returns the part of env (KEY=value entries) the lab server gets.
func labEnv(env []string) []string {
	out := []string{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if labEnvKeep[k] {
			out = append(out, kv)
		}
	}
	return out
}

func (lab Lab) writeState(st labState) error {
	b, _ := json.Marshal(st)
	return Local{}.WriteFile(context.Background(), lab.stateFile(), bytes.NewReader(append(b, '\n')), 0o600)
}

// running returns the recorded state and whether its process is alive and
// really the lab server (not a recycled pid).
func (lab Lab) running() (labState, bool) {
	var st labState
	b, err := os.ReadFile(lab.stateFile())
	if err != nil || json.Unmarshal(b, &st) != nil || st.PID <= 0 {
		if p, ok := lab.pidFromFile(); ok {
			st.PID = p
		} else {
			return st, false
		}
	}
	return st, lab.alive(st.PID)
}

func (lab Lab) pidFromFile() (int, bool) {
	b, err := os.ReadFile(lab.PIDFile())
	if err != nil {
		return 0, false
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return p, err == nil && p > 0
}

// procLive reports whether pid runs and is not a zombie.
func procLive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) // no /proc: trust kill(0)
	}
	i := bytes.LastIndexByte(stat, ')')
	return !(i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X'))
}

// alive reports whether pid is a running (not zombie) lab server.
func (lab Lab) alive(pid int) bool {
	if !procLive(pid) {
		return false
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
		return true // no /proc: trust kill(0)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(lab.Layout().ConfigFile))
}

// otherServers returns the pids, other than except, of running processes
// that are "mailctl serve" (any name) of this lab: their -config argument,
// relative to their working directory, is the lab's configuration file.
// "serve status" runs are not servers. Without /proc it finds nothing.
func (lab Lab) otherServers(except int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	cfg := lab.Layout().ConfigFile
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == except || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("serve")) {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if serveConfig(args, func() string {
			cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
			return cwd
		}) == cfg && procLive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// serveConfig returns the absolute -config path of a "serve" command line
// (not "serve status"), or "".
func serveConfig(args []string, cwd func() string) string {
	i := 0
	for i < len(args) && args[i] != "serve" {
		i++
	}
	if i == len(args) || i+1 < len(args) && args[i+1] == "status" {
		return ""
	}
	for j := i + 1; j < len(args); j++ {
		a := args[j]
		var v string
		switch {
		case a == "-config" || a == "--config":
			if j+1 < len(args) {
				v = args[j+1]
			}
		case strings.HasPrefix(a, "-config="), strings.HasPrefix(a, "--config="):
			_, v, _ = strings.Cut(a, "=")
		default:
			continue
		}
		if v != "" && !filepath.IsAbs(v) {
			v = filepath.Join(cwd(), v)
		}
		return filepath.Clean(v)
	}
	return ""
}

// Running returns the pid of the lab server and whether it runs.
func (lab Lab) Running() (int, bool) {
	st, ok := lab.running()
	return st.PID, ok
}

// Stop stops the lab server: SIGTERM to its process group, SIGKILL after
// 10 seconds. Stopping a server that does not run is not an error.
func (lab Lab) Stop(ctx context.Context) error {
	st, alive := lab.running()
	if alive {
		syscall.Kill(-st.PID, syscall.SIGTERM)
		syscall.Kill(st.PID, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for lab.alive(st.PID) {
			if time.Now().After(deadline) {
				syscall.Kill(-st.PID, syscall.SIGKILL)
				syscall.Kill(st.PID, syscall.SIGKILL)
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("stop lab server (pid %d): %w", st.PID, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		for i := 0; i < 100 && lab.alive(st.PID); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, f := range []string{lab.PIDFile(), lab.stateFile()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stop lab server: %w", err)
		}
	}
	return nil
}

// Status runs "mailctl serve status -json" of the current lab release. It
// returns ErrNotDeployed when no release is installed.
func (lab Lab) Status(ctx context.Context) ([]byte, error) {
	l := lab.Layout()
	if _, err := os.Stat(l.Binary()); err != nil {
		return nil, ErrNotDeployed
	}
	out, err := Local{}.Run(ctx, l.statusCommand(), nil)
	if err != nil {
		return nil, fmt.Errorf("read lab server status: %w", err)
	}
	return out, nil
}

// Destroy stops the lab server and removes its releases, configuration,
// pid, state and log files; the data directory too when purgeData.
//
// A pid file is not trusted alone: a server of this lab that runs under
// another pid (started by hand, or the pid file is stale) is found in
// /proc, and then nothing is stopped or removed and the error says which
// process it is.
func (lab Lab) Destroy(ctx context.Context, purgeData bool) (bool, error) {
	st, alive := lab.running()
	recorded := 0
	if alive {
		recorded = st.PID
	}
	if others := lab.otherServers(recorded); len(others) > 0 {
		return false, fmt.Errorf("destroy lab: a server of this lab runs as pid %d, not the one recorded in %s (%d); stop it first (kill %d); nothing was removed", others[0], lab.PIDFile(), st.PID, others[0])
	}
	if err := lab.Stop(ctx); err != nil {
		return false, err
	}
	changed := alive
	l := lab.Layout()
	paths := []string{l.Releases(), l.Current(), filepath.Join(l.Base, "previous"), l.ConfigFile, lab.LogFile()}
	if purgeData {
		paths = append(paths, l.DataDir)
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return changed, fmt.Errorf("remove %s: %w", p, err)
		}
		changed = true
	}
	if purgeData {
		os.Remove(l.Base) // only when empty
	}
	return changed, nil
}

// health polls the lab ports until they answer, the server exits or
// h.Timeout passes.
func (lab Lab) health(ctx context.Context, h Health) error {
	h = h.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	for {
		why := ""
		if pid, ok := lab.Running(); !ok {
			return fmt.Errorf("health check failed: the server (pid %d) exited", pid)
		}
		why = probePorts(ctx, h.Host, h)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health check failed: %s", why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probePorts returns "" when every banner port greets with 220 and every
// listen port accepts a connection, else the first problem.
func probePorts(ctx context.Context, host string, h Health) string {
	d := net.Dialer{Timeout: 2 * time.Second}
	for _, p := range h.BannerPorts {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return fmt.Sprintf("port %d: %v", p, err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, "220") {
			if err != nil {
				return fmt.Sprintf("port %d: no SMTP greeting: %v", p, err)
			}
			return fmt.Sprintf("port %d: no SMTP greeting (%q)", p, shorten(strings.TrimSpace(line), 80))
		}
	}
	for _, p := range h.ListenPorts {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return fmt.Sprintf("port %d: %v", p, err)
		}
		c.Close()
	}
	return ""
}

func (lab Lab) logTail() string {
	b, err := os.ReadFile(lab.LogFile())
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	return "\nlast lines of " + lab.LogFile() + ":\n" + tail(b, 20)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
