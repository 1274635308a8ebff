// Package remote runs commands and installs files on the machine that hosts
// the mail server, and deploys mailctl there.
//
// A [Target] is either a server reached over SSH (RFC 4251-4254, with file
// transfer over the SFTP protocol, draft-ietf-secsh-filexfer-02, and the
// OpenSSH posix-rename and fsync extensions) or this machine ([Local]). The
// SSH host key is always verified: against a pinned key in authorized_keys
// format or a known_hosts file; an unknown or changed key is an error that
// prints the key's SHA256 fingerprint and how to pin it. Everything runs
// as root: an SSH user other than root needs password-less sudo
// ("USER ALL=(root) NOPASSWD: ALL" in /etc/sudoers.d), as every command is
// run through "sudo -n sh -c" and files are written by that root shell
// instead of SFTP.
//
// On top of a Target, the deploy procedures (see deploy.go) install a
// release under /opt/mailctl/releases, switch /opt/mailctl/current
// atomically, write /etc/mailctl/server.json and a hardened systemd unit,
// restart or reload only what changed, check the health of the server and
// roll back to the previous release when it fails. The local lab (see
// lab.go) uses the same layout under a directory and supervises the server
// as a detached process instead of a systemd unit.
package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Target is a machine on which mailctl runs commands and writes files.
type Target interface {
	// Run runs cmd with the target's shell (sh -c) as root (through
	// sudo when the SSH user is not root) and returns its standard
	// output. stdin, when not nil, is the command's standard input; it
	// may hold secrets and never appears in errors. A failure is an
	// *ExitError when the command ran and exited non-zero.
	Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)
	// WriteFile replaces path atomically with the content of r: it
	// writes a temporary file in the same directory, syncs it, sets
	// mode and renames it over path. The directory must exist.
	WriteFile(ctx context.Context, path string, r io.Reader, mode os.FileMode) error
	// ReadFile returns the content of path. A missing file is an error
	// for which errors.Is(err, fs.ErrNotExist) is true.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Close releases the connection.
	Close() error
}

// ExitError is a command that ran and failed.
type ExitError struct {
	// Cmd is the command line (never its standard input).
	Cmd string
	// Status is the exit status, or -1 when the command was killed by
	// a signal or the status is unknown.
	Status int
	// Signal names the signal that ended the command, if any.
	Signal string
	// Stderr holds the last lines of the command's standard error.
	Stderr string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "command %q ", shorten(e.Cmd, 200))
	if e.Signal != "" {
		fmt.Fprintf(&b, "killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "exited with status %d", e.Status)
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, ": %s", e.Stderr)
	}
	return b.String()
}

// ExitStatus returns the exit status of a failed command in err, and false
// when err is not an *ExitError.
func ExitStatus(err error) (int, bool) {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Status, true
	}
	return 0, false
}

// stderrTailLines is how many lines of standard error an ExitError keeps.
const stderrTailLines = 10

// tail returns the last n non-empty lines of b, joined with " | "-free
// newlines, each line capped in length.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(bytes.ToValidUTF8(b, []byte("?"))), "\n"), "\n")
	var out []string
	for _, l := range lines {
		l = strings.TrimRight(l, "\r ")
		if l == "" {
			continue
		}
		out = append(out, shorten(l, 300))
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@,+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// limitedBuffer keeps at most max bytes, dropping the oldest ones: the
// tail of standard error is what explains a failure.
type limitedBuffer struct {
	buf []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	if len(l.buf) > l.max {
		l.buf = append(l.buf[:0], l.buf[len(l.buf)-l.max:]...)
	}
	return len(p), nil
}
