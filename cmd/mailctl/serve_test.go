package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
)

// serveBuffer is a bytes.Buffer safe for the server's goroutines.
type serveBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newServeBuffer() *serveBuffer { return &serveBuffer{mu: make(chan struct{}, 1)} }

func (b *serveBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *serveBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func serveEnv() (*env, *serveBuffer, *serveBuffer) {
	stdout, stderr := newServeBuffer(), newServeBuffer()
	return &env{
		Stdin:  strings.NewReader(""),
		Stdout: stdout,
		Stderr: stderr,
		Dir:    ".",
		Getenv: func(string) string { return "" },
	}, stdout, stderr
}

func TestServeArguments(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no config", []string{"serve"}, "Error: serve needs -config FILE\n"},
		{"extra argument", []string{"serve", "-config", "x.json", "extra"}, `Error: serve: unexpected argument "extra"`},
		{"missing config", []string{"serve", "-config", filepath.Join(dir, "nope.json")}, "Error: " + filepath.Join(dir, "nope.json") + ": load config: open"},
		{"status without target", []string{"serve", "status"}, "Error: serve status needs -config FILE or -socket PATH\n"},
		{"status of nothing", []string{"serve", "status", "-socket", filepath.Join(dir, "none.sock")}, "Error: serve status: query control socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, stdout, stderr := serveEnv()
			if code := run(context.Background(), tt.args, e); code != exitError {
				t.Errorf("exit code = %d, want %d", code, exitError)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.want)
			}
			if strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("stderr has more than one line: %q", stderr.String())
			}
			if stdout.String() != "" {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

// TestServeInProcess runs `mailctl serve` in this process, queries it with
// `mailctl serve status`, and stops it by cancelling the context (what
// SIGTERM does in main).
func TestServeInProcess(t *testing.T) {
	dir := t.TempDir()
	h, err := auth.HashPassword("pw", auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{
		FormatVersion: config.FormatVersion,
		Hostname:      "mail.example.test",
		DataDir:       filepath.Join(dir, "data"),
		Listen:        config.Listen{SMTP: "127.0.0.1:0", IMAPS: "127.0.0.1:0"},
		TLS:           config.TLS{Mode: "self-signed"},
		Domains:       []config.Domain{{Name: "example.test"}},
		Users:         []config.User{{Address: "alice@example.test", PasswordHash: h}},
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "server.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, _, stderr := serveEnv()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", cfgPath}, e) }()

	var st contract.Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		se, stdout, serr := serveEnv()
		if run(context.Background(), []string{"serve", "status", "-json", "-config", cfgPath}, se) == exitOK {
			if err := json.Unmarshal([]byte(stdout.String()), &st); err != nil {
				t.Fatalf("status -json output: %v\n%s", err, stdout.String())
			}
			goldenSkeleton(t, "json/status.schema", []byte(stdout.String()))
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status within 20s: %s", serr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Hostname != "mail.example.test" || len(st.Users) != 1 || st.Users[0].Address != "alice@example.test" ||
		st.Listeners["smtp"] == "" || st.Listeners["imaps"] == "" || st.Listeners["imap"] != "" {
		t.Errorf("status = %+v", st)
	}

	se, stdout, _ := serveEnv()
	if code := run(context.Background(), []string{"serve", "status", "-socket", filepath.Join(cfg.DataDir, "control.sock")}, se); code != exitOK {
		t.Errorf("serve status (human) exit %d", code)
	}
	for _, want := range []string{"mail.example.test: mailctl", "alice@example.test", "self-signed", "smtp           127.0.0.1:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("human status lacks %q:\n%s", want, stdout.String())
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exit code after cancel = %d, want 0\n%s", code, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop within 40s of cancel")
	}
	// Logs are JSON lines.
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Errorf("log line is not JSON: %q", l)
		}
	}
}
