package remote_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/remote"
)

// syncWriter is a bytes.Buffer safe for a writer and a reader.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestObserveOverSSH reads a deployment through real sshd: not deployed,
// running (the fake server answers its status) and a release whose status
// fails while systemd cannot tell whether it runs: unknown, not "not
// running".
func TestObserveOverSSH(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	c := dial(t, remote.SSHConfig{Address: sshd.Addr, Identity: sshd.ClientKeyFile, HostKey: sshd.HostKeyLine(0)})
	ctx := context.Background()
	base := t.TempDir()
	l := remote.Layout{Base: filepath.Join(base, "opt"), ConfigFile: filepath.Join(base, "server.json"), Unit: filepath.Join(base, "mailctl.service")}

	o, err := l.Observe(ctx, c)
	if err != nil || o.State != remote.StateNotDeployed {
		t.Fatalf("Observe of an empty layout = %+v, %v; want not deployed", o, err)
	}

	ok := fakeServer(t, "7", "ok")
	rel, err := l.InstallRelease(ctx, c, "1.2.0", bytes.NewReader(ok), sum(ok))
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{l.Unit: "[Unit]\n", l.ConfigFile: `{"banner_ports":[]}`} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o, err = l.Observe(ctx, c)
	if err != nil || o.State != remote.StateRunning || o.Release != rel.Name {
		t.Fatalf("Observe = %+v, %v; want running release %s", o, err, rel.Name)
	}
	var st struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(o.Status, &st); err != nil || st.Version != "7" {
		t.Errorf("status %q: version %q, %v; want the fake server's 7", o.Status, st.Version, err)
	}

	broken := fakeServer(t, "8", "broken")
	if _, err := l.InstallRelease(ctx, c, "1.3.0", bytes.NewReader(broken), sum(broken)); err != nil {
		t.Fatal(err)
	}
	o, err = l.Observe(ctx, c)
	if err != nil || o.State != remote.StateUnknown || o.Err == nil || !strings.Contains(o.Err.Error(), "status 3") {
		t.Errorf("Observe of a release whose status fails, unit state %q = %+v, %v; want unknown with the exit status", o.Unit, o, err)
	}

	// A connection that is gone is an error, not a state.
	c.Close()
	if o, err := l.Observe(ctx, c); err == nil {
		t.Errorf("Observe over a closed connection = %+v, want an error", o)
	}
}

// TestStreamFollowOverSSH: a streamed command's output arrives as it is
// written, and cancelling ends both Stream and the command on the server.
func TestStreamFollowOverSSH(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	c := dial(t, remote.SSHConfig{Address: sshd.Addr, Identity: sshd.ClientKeyFile, HostKey: sshd.HostKeyLine(0)})
	testStreamFollow(t, c, c)
}

func TestStreamFollowLocal(t *testing.T) {
	testStreamFollow(t, remote.Local{}, remote.Local{})
}

func testStreamFollow(t *testing.T, s remote.Streamer, r remote.Target) {
	marker := fmt.Sprintf("stream-test-%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncWriter
	done := make(chan error, 1)
	go func() {
		done <- s.Stream(ctx, "sh -c 'i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done' "+marker, &out)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "tick 3\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no streamed output within 20s: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Stream after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stream did not return within 10s of the cancel")
	}
	// The command does not outlive the stream.
	deadline = time.Now().Add(10 * time.Second)
	for {
		b, _ := r.Run(context.Background(), "ps -eo args | grep -c '[s]tream-test' || true", nil)
		n := strings.TrimSpace(string(b))
		if n == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s processes still run on the target 10s after the cancel", n)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A command that fails is an *ExitError with its standard error.
	err := s.Stream(context.Background(), "sh -c 'echo out; echo why >&2; exit 4'", &out)
	var ee *remote.ExitError
	if !errors.As(err, &ee) || ee.Status != 4 || ee.Stderr != "why" {
		t.Errorf("Stream of a failing command = %v, want exit status 4 with stderr why", err)
	}
}

func TestJournalCommand(t *testing.T) {
	since := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		o    remote.LogOptions
		want string
	}{
		{remote.LogOptions{Lines: 100}, "journalctl -u mailctl --no-pager -o short-iso -n 100"},
		{remote.LogOptions{Since: since, Follow: true}, "journalctl -u mailctl --no-pager -o short-iso --since @1796623200 -f"},
	} {
		if got := remote.JournalCommand(tc.o); got != tc.want {
			t.Errorf("JournalCommand(%+v) = %q, want %q", tc.o, got, tc.want)
		}
	}
}

func logLine(at time.Time, msg string) string {
	return fmt.Sprintf(`{"time":%q,"level":"INFO","msg":%q}`+"\n", at.Format(time.RFC3339Nano), msg)
}

// TestLabLogs reads a lab's log file: -since, -n, and -f through appends,
// a partial line, truncation and a replaced file.
func TestLabLogs(t *testing.T) {
	lab := remote.Lab{Dir: t.TempDir()}
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	var content strings.Builder
	for i := 0; i < 10; i++ {
		content.WriteString(logLine(t0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("line %d", i)))
		if i == 6 {
			content.WriteString("goroutine 1 [running]:\n") // a trace: belongs to line 6
		}
	}
	if err := os.WriteFile(lab.LogFile(), []byte(content.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(o remote.LogOptions) string {
		t.Helper()
		var b bytes.Buffer
		if err := lab.Logs(context.Background(), o, &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	msgs := func(s string) string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			if i := strings.Index(l, `"msg":"`); i >= 0 {
				l = strings.TrimSuffix(l[i+7:], `"}`)
			}
			out = append(out, l)
		}
		return strings.Join(out, ",")
	}
	if got := msgs(read(remote.LogOptions{Lines: 3})); got != "line 7,line 8,line 9" {
		t.Errorf("last 3 lines = %s", got)
	}
	if got := msgs(read(remote.LogOptions{Since: t0.Add(6 * time.Minute), Lines: 0})); got != "line 6,goroutine 1 [running]:,line 7,line 8,line 9" {
		t.Errorf("since 06:06 = %s", got)
	}
	if got := msgs(read(remote.LogOptions{Since: t0.Add(8 * time.Minute), Lines: 1})); got != "line 9" {
		t.Errorf("since 06:08, last line = %s", got)
	}
	if got := read(remote.LogOptions{Since: t0.Add(time.Hour)}); got != "" {
		t.Errorf("since 07:00 = %q, want nothing", got)
	}

	// Follow.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncWriter
	done := make(chan error, 1)
	go func() {
		done <- lab.Logs(ctx, remote.LogOptions{Lines: 1, Follow: true, Poll: 20 * time.Millisecond}, &out)
	}()
	waitOut := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for msgs(out.String()) != want {
			if time.Now().After(deadline) {
				t.Fatalf("followed output %q, want %q", msgs(out.String()), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOut("line 9")
	appendLog := func(s string) {
		f, err := os.OpenFile(lab.LogFile(), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	line10 := logLine(t0.Add(10*time.Minute), "line 10")
	appendLog(line10[:20]) // half a line: not printed yet
	time.Sleep(100 * time.Millisecond)
	waitOut("line 9")
	appendLog(line10[20:])
	waitOut("line 9,line 10")
	// Truncated (logrotate copytruncate): read from the start again.
	if err := os.WriteFile(lab.LogFile(), []byte(logLine(t0.Add(11*time.Minute), "line 11")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitOut("line 9,line 10,line 11")
	// Replaced by a new file (a new lab).
	tmp := lab.LogFile() + ".new"
	if err := os.WriteFile(tmp, []byte(logLine(t0.Add(12*time.Minute), "line 12 in a new file")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, lab.LogFile()); err != nil {
		t.Fatal(err)
	}
	waitOut("line 9,line 10,line 11,line 12 in a new file")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not return within 5s of the cancel")
	}

	// No log file: a clear error.
	empty := remote.Lab{Dir: t.TempDir()}
	err := empty.Logs(context.Background(), remote.LogOptions{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "mailctl.log") {
		t.Errorf("Logs without a log file = %v, want an error naming it", err)
	}
}
