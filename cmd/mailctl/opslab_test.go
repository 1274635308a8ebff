package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer that a process writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// labWithQuota writes the example lab's configuration into a new
// directory with free ports (labOnFreePorts) and bob's quota set to quota,
// and returns the directory and the SMTP port.
func labWithQuota(t *testing.T, quota string) (string, int) {
	t.Helper()
	dir := labOnFreePorts(t)
	path := filepath.Join(dir, "mail.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hcl := string(src)
	m := regexp.MustCompile(`smtp\s*=\s*(\d+)`).FindStringSubmatch(hcl)
	if m == nil {
		t.Fatalf("no smtp port in %s:\n%s", path, hcl)
	}
	port, _ := strconv.Atoi(m[1])
	bob := `user "bob@example.test" {`
	hcl = strings.Replace(hcl, bob, bob+"\n  quota = \""+quota+"\"", 1)
	writeFile(t, path, hcl, 0o644)
	return dir, port
}

// TestStatusAndLogsLab runs mailctl status and mailctl logs against a
// local lab: not deployed, running and healthy, a user over 90 % of the
// quota, the log's last lines, -since and -f, then a stopped server.
func TestStatusAndLogsLab(t *testing.T) {
	bin := buildBinary(t)
	dir, smtpPort := labWithQuota(t, "20KiB")
	t.Cleanup(func() { mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve") })

	out, code := mailctl(t, bin, "-chdir", dir, "status")
	if code != 2 || !strings.Contains(out, "server.lab: not deployed") || !strings.Contains(out, "ATTENTION    not deployed") {
		t.Errorf("status before apply = %d, want 2 and not deployed:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "logs"); code != 1 || !strings.Contains(out, "Error: logs of server.lab: open the lab's log:") {
		t.Errorf("logs before apply = %d, want 1 and a one-line error:\n%s", code, out)
	}

	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false"); code != 0 || !strings.Contains(out, "Apply complete!") {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	out, code = mailctl(t, bin, "-chdir", dir, "status")
	for _, want := range []string{"server.lab: running, release ", "  version      mailctl ", "  queue        0 messages",
		"  certificate  mail.example.test", "(self-signed): expires ", "  disk         ", "  user         alice@example.test: 0 messages, 0 B (no quota)",
		"  user         bob@example.test: 0 messages, 0 B (0.0 % of 20.0 KiB)", "  last errors  none", "All servers are running and need no attention."} {
		if !strings.Contains(out, want) {
			t.Errorf("status of the running lab lacks %q", want)
		}
	}
	if code != 0 && !strings.Contains(out, "ATTENTION    disk") { // a full disk on the test machine is a real warning
		t.Errorf("status of the running lab = %d, want 0:\n%s", code, out)
	}

	// Bob gets a message of 19 KiB: over 90 % of his 20 KiB.
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 290)
	swaks := exec.Command("swaks", "--server", "127.0.0.1:"+strconv.Itoa(smtpPort), "--from", "someone@example.net",
		"--to", "bob@example.test", "--header", "Subject: big", "--body", body)
	if b, err := swaks.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, b)
	}
	out, code = mailctl(t, bin, "-chdir", dir, "status", "-json", "-server", "lab")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	if code != 2 || len(rep.Servers) != 1 || !rep.Attention || rep.Errors {
		t.Fatalf("status -json with bob over 90 %% = %d, want 2:\n%s", code, out)
	}
	s := rep.Servers[0]
	if s.State != "running" || s.Disk == nil || s.Disk.TotalBytes == 0 || s.Queue == nil || s.StartedAt == nil {
		t.Errorf("status -json of the lab: %+v", s)
	}
	found := false
	for _, a := range s.Attention {
		found = found || strings.HasPrefix(a, "bob@example.test uses 9")
	}
	if !found {
		t.Errorf("attention %q does not name bob's quota", s.Attention)
	}

	// Logs: the last lines, since a time, and following.
	out, code = mailctl(t, bin, "-chdir", dir, "logs", "-n", "3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "{") {
		t.Errorf("logs -n 3 = %d, want 3 JSON lines:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "logs", "-since", "1h"); code != 0 || !strings.Contains(out, `"msg":"starting mail server"`) {
		t.Errorf("logs -since 1h = %d, want the start of the server:\n%.2000s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "logs", "-since", "2099-01-01"); code != 0 || out != "" {
		t.Errorf("logs -since 2099-01-01 = %d %q, want nothing", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "logs", "-since", "yesterday"); code != 1 || !strings.Contains(out, "Error: -since: \"yesterday\" is neither") {
		t.Errorf("logs -since yesterday = %d, want a one-line error:\n%s", code, out)
	}
	follow := exec.Command(bin, "-chdir", dir, "logs", "-f", "-n", "0")
	var fout lockedBuffer
	follow.Stdout, follow.Stderr = &fout, &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	time.Sleep(500 * time.Millisecond)
	pidb, err := os.ReadFile(filepath.Join(dir, ".mailctl", "mailctl.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil { // the server logs its reload
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(fout.String(), `"msg":"configuration reloaded"`) {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f did not show the reload within 20s:\n%s", fout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	follow.Process.Signal(os.Interrupt)
	waited := make(chan error, 1)
	go func() { waited <- follow.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("logs -f after Ctrl-C: %v, want exit 0:\n%s", err, fout.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("logs -f did not stop within 5s of Ctrl-C")
	}

	// The server stops: known not to run.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(40 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(b, []byte(") Z")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lab server did not stop within 40s of SIGTERM")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, code = mailctl(t, bin, "-chdir", dir, "status")
	if code != 2 || !strings.Contains(out, "server.lab: not running, release ") || !strings.Contains(out, "ATTENTION    not running") {
		t.Errorf("status of a stopped lab = %d, want 2 and not running:\n%s", code, out)
	}
}
