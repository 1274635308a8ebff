// Package spamtest runs Debian's rspamd for tests: one instance in a
// temporary directory, its normal worker and controller on free loopback
// ports, Bayes on sqlite3 (no redis), no DNS (a dead name server).
//
// Its configuration makes verdicts deterministic: a message whose Subject
// holds SpamSubject scores 20 (the "add header" action is at 10, reject at
// 50), GTUBE is rejected as always, and ordinary mail scores below 10.
package spamtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// SpamSubject in a Subject gives a message the "add header" action.
const SpamSubject = "MAILCTL-SPAM-TEST"

// GTUBE is the Generic Test for Unsolicited Bulk Email.
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// Rspamd is a running rspamd.
type Rspamd struct {
	// URL of the normal worker, ControllerURL of the controller.
	URL, ControllerURL string
	Dir                string
	cmd                *exec.Cmd
	done               chan struct{}
}

const config = `.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
    dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }
worker "normal" {
    bind_socket = "%[1]s";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}
worker "controller" {
    bind_socket = "%[2]s";
    .include "$CONFDIR/worker-controller.inc"
    count = 1;
}
`

// bayes keeps the learn cache (which refuses a text learned before) in
// the instance's directory too: by default it is in /var/lib/rspamd,
// shared by every run.
const bayes = `backend = "sqlite3";
cache { type = "sqlite3"; path = "$DBDIR/learn_cache.sqlite"; }
statfile { symbol = "BAYES_HAM"; spam = false; path = "$DBDIR/bayes.ham.sqlite"; }
statfile { symbol = "BAYES_SPAM"; spam = true; path = "$DBDIR/bayes.spam.sqlite"; }
`

const actions = `reject = 50;
add_header = 10;
greylist = null;
`

const multimap = `MAILCTL_TEST_SPAM {
  type = "header";
  header = "Subject";
  regexp = true;
  map = "%s";
  score = 20.0;
  description = "mailctl test spam subject";
}
`

// Start runs rspamd and waits until both workers answer (rspamd compiles
// its expressions at start: 10 to 60 seconds on a busy machine; the
// compiled ones are cached in the user's cache directory).
func Start(ctx context.Context, dir string) (*Rspamd, error) {
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		return nil, fmt.Errorf("rspamd is required (apt-get install rspamd): %w", err)
	}
	normal, err := freeAddr()
	if err != nil {
		return nil, err
	}
	controller, err := freeAddr()
	if err != nil {
		return nil, err
	}
	hsCache := filepath.Join(dir, "hs")
	if c, err := os.UserCacheDir(); err == nil {
		hsCache = filepath.Join(c, "mailctl-test", "rspamd-hs")
	}
	for _, d := range []string{"local.d", "override.d", "db", "run", "log", hsCache} {
		p := d
		if !filepath.IsAbs(d) {
			p = filepath.Join(dir, d)
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"rspamd.conf":                   fmt.Sprintf(config, normal, controller),
		"local.d/classifier-bayes.conf": bayes,
		"local.d/actions.conf":          actions,
		"override.d/options.inc":        fmt.Sprintf("hs_cache_dir = %q;\n", hsCache),
		"local.d/multimap.conf":         fmt.Sprintf(multimap, filepath.Join(dir, "spam-subjects.map")),
		"spam-subjects.map":             "/" + SpamSubject + "/\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	args := []string{"-f", "-i", "-c", filepath.Join(dir, "rspamd.conf"),
		"--var", "LOCAL_CONFDIR=" + dir, "--var", "DBDIR=" + filepath.Join(dir, "db"),
		"--var", "RUNDIR=" + filepath.Join(dir, "run"), "--var", "LOGDIR=" + filepath.Join(dir, "log")}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root", "-g", "root")
	}
	cmd := exec.Command(bin, args...)
	out, err := os.Create(filepath.Join(dir, "log", "stdout"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start rspamd: %w", err)
	}
	r := &Rspamd{URL: "http://" + normal, ControllerURL: "http://" + controller, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(r.done) }()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		if ping(ctx, r.URL) && ping(ctx, r.ControllerURL) {
			return r, nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("rspamd exited at start: %s", r.Log())
		case <-ctx.Done():
			r.Stop()
			return nil, fmt.Errorf("rspamd did not start: %w: %s", ctx.Err(), r.Log())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, base string) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ping", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && strings.Contains(string(b), "pong")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Log is the end of rspamd's log, for failure messages.
func (r *Rspamd) Log() string {
	var b strings.Builder
	for _, f := range []string{"stdout", "rspamd.log"} {
		data, _ := os.ReadFile(filepath.Join(r.Dir, "log", f))
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		b.Write(data)
	}
	return b.String()
}

// Stop ends rspamd and its workers.
func (r *Rspamd) Stop() {
	if r.cmd.Process == nil {
		return
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
}

// Learned returns the revisions of the BAYES_SPAM and BAYES_HAM statfiles
// as the controller's /stat reports them: how many messages each class
// learned.
func (r *Rspamd) Learned(ctx context.Context) (spam, ham int, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.ControllerURL+"/stat", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Statfiles []struct {
			Symbol   string `json:"symbol"`
			Revision int    `json:"revision"`
		} `json:"statfiles"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, 0, fmt.Errorf("rspamd /stat: %w", err)
	}
	for _, s := range st.Statfiles {
		switch s.Symbol {
		case "BAYES_SPAM":
			spam = s.Revision
		case "BAYES_HAM":
			ham = s.Revision
		}
	}
	return spam, ham, nil
}
