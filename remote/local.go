package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/mailctl/mailctl/internal/atomicfile"
)

// Local is this machine as a Target: commands run with /bin/sh as the
// current user (no sudo), files are written directly. It serves the local
// lab and running mailctl on the server itself.
type Local struct{}

var _ Target = Local{}

// Run implements Target.
func (Local) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	var stdout bytes.Buffer
	stderr := &limitedBuffer{max: 16 << 10}
	c.Stdout, c.Stderr, c.Stdin = &stdout, stderr, stdin
	// Cancellation kills the whole process group, not only the shell;
	// a command that leaves a child holding stdout must not hang Run.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	err := c.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return stdout.Bytes(), fmt.Errorf("run %q: %w", shorten(cmd, 200), ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		xe := &ExitError{Cmd: cmd, Status: ee.ExitCode(), Stderr: tail(stderr.buf, stderrTailLines)}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			xe.Signal = ws.Signal().String()
		}
		return stdout.Bytes(), xe
	}
	return stdout.Bytes(), fmt.Errorf("run %q: %w", shorten(cmd, 200), err)
}

// WriteFile implements Target.
func (Local) WriteFile(ctx context.Context, path string, r io.Reader, mode os.FileMode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return atomicfile.Write(ctx, path, r, mode.Perm())
}

// ReadFile implements Target.
func (Local) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", path, err)
	}
	return b, nil
}

// Close implements Target.
func (Local) Close() error { return nil }
