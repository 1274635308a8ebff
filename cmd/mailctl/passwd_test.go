package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailctl/mailctl/server/auth"
)

// checkHash fails unless hash is an argon2id hash of pw with the default
// parameters; with wrong, it also checks that another password fails (each
// check costs a full argon2id computation, slow under -race).
func checkHash(t *testing.T, hash, pw string, wrong bool) {
	t.Helper()
	p := auth.DefaultParams
	if !strings.HasPrefix(hash, fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$", p.Memory, p.Time, p.Threads)) {
		t.Errorf("hash = %q, want an argon2id PHC string with the default parameters", hash)
	}
	ok, err := auth.VerifyPassword(hash, pw)
	if err != nil || !ok {
		t.Errorf("VerifyPassword(hash, %q) = %v, %v; want true", pw, ok, err)
	}
	if !wrong {
		return
	}
	ok, err = auth.VerifyPassword(hash, pw+"x")
	if err != nil || ok {
		t.Errorf("VerifyPassword(hash, wrong password) = %v, %v; want false", ok, err)
	}
}

func TestPasswdStdin(t *testing.T) {
	tests := []struct {
		name, stdin string
		args        []string
		wantPw      string // "" when an error is expected
		wantErr     string
	}{
		{name: "line", stdin: "s3cret pass\n", wantPw: "s3cret pass"},
		{name: "crlf", stdin: "s3cret\r\n", wantPw: "s3cret"},
		{name: "no final newline", stdin: "s3cret", wantPw: "s3cret"},
		{name: "only the first line", stdin: "first\nsecond\n", wantPw: "first"},
		{name: "empty input", stdin: "", wantErr: "empty password refused"},
		{name: "empty line", stdin: "\nsecond\n", wantErr: "empty password refused"},
		{name: "argument refused", stdin: "x\n", args: []string{"hunter2"}, wantErr: "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, stdout, stderr := testEnv(t.TempDir())
			e.Stdin = strings.NewReader(tt.stdin)
			code := runCLI(t, e, append([]string{"passwd"}, tt.args...)...)
			if tt.wantErr != "" {
				if code != exitError || !strings.Contains(stderr.String(), tt.wantErr) || stdout.Len() != 0 {
					t.Errorf("passwd = %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, tt.wantErr)
				}
				return
			}
			if code != exitOK {
				t.Fatalf("passwd = %d: %s", code, stderr)
			}
			out := stdout.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Errorf("stdout = %q, want one line", out)
			}
			checkHash(t, strings.TrimSpace(out), tt.wantPw, tt.name == "line")
			if strings.Contains(stderr.String()+out, tt.wantPw) {
				t.Errorf("the password appears in the output")
			}
		})
	}
}

// openPTY returns the master and slave ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var n int
	var ioErr error
	raw, _ := m.SyscallConn()
	raw.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			return
		}
		n, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
	})
	if ioErr != nil {
		t.Fatalf("unlock pty: %v", ioErr)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// echoOn reports whether the terminal echoes input.
func echoOn(t *testing.T, f *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("get termios: %v", err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// readAvailable returns what the master side receives within d.
func readAvailable(m *os.File, d time.Duration) string {
	var out bytes.Buffer
	buf := make([]byte, 256)
	m.SetReadDeadline(time.Now().Add(d))
	for {
		n, err := m.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

// TestPasswdTerminal drives `mailctl passwd` through a real pseudo-terminal:
// the password is asked twice, never echoed, and must match.
func TestPasswdTerminal(t *testing.T) {
	tests := []struct {
		name, input string
		wantErr     string
	}{
		{name: "twice the same", input: "tty-secret\ntty-secret\n"},
		{name: "mismatch", input: "tty-secret\nother\n", wantErr: "the two passwords differ"},
		{name: "empty", input: "\n", wantErr: "empty password refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			master, slave := openPTY(t)
			// The terminal echoes by default: prove it, so that the absence
			// of echo below means something.
			if !echoOn(t, slave) {
				t.Fatal("a new pty does not echo")
			}
			master.Write([]byte("probe\n"))
			line := make([]byte, 64)
			if n, err := slave.Read(line); err != nil || string(line[:n]) != "probe\n" {
				t.Fatalf("read probe from the slave = %q, %v", line[:n], err)
			}
			if echo := readAvailable(master, 200*time.Millisecond); !strings.Contains(echo, "probe") {
				t.Fatalf("echo of the probe = %q, want it echoed", echo)
			}

			e, stdout, stderr := testEnv(t.TempDir())
			e.Stdin = slave
			e.IsTerminal = true
			done := make(chan int, 1)
			go func() { done <- run(context.Background(), []string{"passwd"}, e) }()

			// Type only once echo is off, as a person would after the prompt.
			deadline := time.Now().Add(10 * time.Second)
			for echoOn(t, slave) {
				if time.Now().After(deadline) {
					t.Fatal("passwd never turned the terminal echo off")
				}
				time.Sleep(5 * time.Millisecond)
			}
			master.Write([]byte(tt.input))
			var code int
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("passwd did not return")
			}
			if echo := readAvailable(master, 100*time.Millisecond); strings.Contains(echo, "secret") || strings.Contains(echo, "other") {
				t.Errorf("the terminal echoed the password: %q", echo)
			}
			if !echoOn(t, slave) {
				t.Errorf("echo not restored after passwd")
			}
			if tt.wantErr != "" {
				if code != exitError || !strings.Contains(stderr.String(), tt.wantErr) || stdout.Len() != 0 {
					t.Errorf("passwd = %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, tt.wantErr)
				}
				return
			}
			if code != exitOK {
				t.Fatalf("passwd = %d: %s", code, stderr)
			}
			if !strings.Contains(stderr.String(), "Repeat password: ") {
				t.Errorf("stderr = %q, want the second prompt", stderr)
			}
			checkHash(t, strings.TrimSpace(stdout.String()), "tty-secret", true)
		})
	}
}
