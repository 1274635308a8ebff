package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// This file moves a user's mail between the workstation and a deployed
// server for `mailctl export` and `mailctl import`: the server's own
// binary runs `mailctl serve export|import`, which talks to the control
// socket, and its standard input and output carry the transfer stream
// (internal/mailfmt) over the SSH session (or a local pipe for the lab).

// Piper runs a command with its standard input read from stdin and its
// standard output copied to stdout as it comes. SSH and Local implement
// it.
type Piper interface {
	Pipe(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error
}

// Export modes of ExportCommand.
const (
	ExportMessages  = ""
	ExportDigests   = "-digests"   // the SHA-256 of each message instead of its bytes
	ExportMailboxes = "-mailboxes" // the mailboxes without their messages
)

// ExportCommand is the command line that streams user's mail out of the
// server deployed with layout l, in mode (ExportMessages ...).
func (l Layout) ExportCommand(user, mode string) string {
	cmd := ShellQuote(l.Binary()) + " serve export -config " + ShellQuote(l.ConfigFile) + " -user " + ShellQuote(user)
	if mode != "" {
		cmd += " " + mode
	}
	return cmd
}

// ImportCommand is the command line that appends the transfer stream on
// its standard input to user's mailboxes on the server deployed with
// layout l, answering a JSON line per message appended.
func (l Layout) ImportCommand(user string) string {
	return ShellQuote(l.Binary()) + " serve import -config " + ShellQuote(l.ConfigFile) + " -user " + ShellQuote(user)
}

// TransferError explains the failure of an export or import command: a
// release without the command gets advice.
func TransferError(err error) error {
	var xe *ExitError
	if errors.As(err, &xe) && strings.Contains(xe.Stderr, "serve: unexpected argument") {
		return fmt.Errorf("the server's release has no export and import (run mailctl apply with this mailctl to upgrade it): %w", err)
	}
	return err
}

// Pipe implements Piper.
func (Local) Pipe(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", "exec "+cmd)
	stderr := &limitedBuffer{max: 16 << 10}
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGTERM) }
	c.WaitDelay = 5 * time.Second
	err := c.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run %q: %w", shorten(cmd, 200), ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Cmd: cmd, Status: ee.ExitCode(), Stderr: tail(stderr.buf, stderrTailLines)}
	}
	return fmt.Errorf("run %q: %w", shorten(cmd, 200), err)
}

// Pipe implements Piper. When ctx ends the command is sent SIGTERM and
// the session closed; a connection that stops answering ends Pipe with an
// error, as for Stream.
func (s *SSH) Pipe(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sess, err := s.client.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s: open session: %w", s.addr, err)
	}
	defer sess.Close()
	stderr := &limitedBuffer{max: 16 << 10}
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(s.wrap("exec " + cmd)) }()
	tick := time.NewTicker(streamProbe)
	defer tick.Stop()
	for {
		select {
		case err = <-done:
			return s.exitError(cmd, err, stderr)
		case <-ctx.Done():
			sess.Signal(ssh.SIGTERM)
			sess.Close()
			return fmt.Errorf("ssh %s: run %q: %w", s.addr, shorten(cmd, 200), ctx.Err())
		case <-tick.C:
			if err := s.probe(); err != nil {
				sess.Close()
				return fmt.Errorf("ssh %s: connection lost while running %q: %w", s.addr, shorten(cmd, 200), err)
			}
		}
	}
}
