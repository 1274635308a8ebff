package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// This file reads a deployed server for `mailctl status` and `mailctl
// logs`: whether it runs, its release and status, and its journal (or the
// lab's log file).

// Server states of an Observation.
const (
	StateRunning     = "running"
	StateStopped     = "not running"
	StateNotDeployed = "not deployed"
	StateUnknown     = "unknown"
)

// Observation is what mailctl status reads of a server.
type Observation struct {
	// State is StateRunning when the server answered its status,
	// StateStopped when it is known not to run (unit inactive or failed,
	// lab process gone), StateNotDeployed when no release is installed,
	// and StateUnknown otherwise (Err says why).
	State string
	// Release is the installed release (the current symlink's target).
	Release string
	// Unit is the systemd unit state (is-active) on a VPS.
	Unit string
	// Status is the JSON of "mailctl serve status -json" when running.
	Status []byte
	// Err says why the status could not be read.
	Err error
}

// Observe reads the server deployed with layout l on t. An error is
// returned only when t itself fails (the connection broke); a server that
// does not answer is an Observation with State StateUnknown or
// StateStopped.
func (l Layout) Observe(ctx context.Context, t Target) (Observation, error) {
	var o Observation
	out, err := t.Run(ctx, fmt.Sprintf(`test -x %[1]s && test -f %[2]s || exit 69
printf 'release=%%s\n' "$(readlink %[3]s)"
printf 'unit=%%s\n' "$(systemctl is-active %[4]s 2>/dev/null)"`,
		ShellQuote(l.Binary()), ShellQuote(l.Unit), ShellQuote(l.Current()), serviceName), nil)
	if st, ok := ExitStatus(err); ok && st == 69 {
		o.State = StateNotDeployed
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("read the server's release and unit: %w", err)
	}
	kv := parseKV(out)
	o.Release, o.Unit = path.Base(kv["release"]), kv["unit"]
	if kv["release"] == "" {
		o.Release = ""
	}
	o.Status, o.Err = t.Run(ctx, l.statusCommand(), nil)
	switch {
	case o.Err == nil:
		o.State = StateRunning
	case ctx.Err() != nil:
		return o, fmt.Errorf("read the server's status: %w", ctx.Err())
	case o.Unit == "inactive" || o.Unit == "failed":
		o.State = StateStopped
		o.Err = fmt.Errorf("unit %s is %s", serviceName, o.Unit)
	default:
		o.State = StateUnknown
		if _, ok := ExitStatus(o.Err); !ok {
			// Not the command failing: the connection itself.
			return o, fmt.Errorf("read the server's status: %w", o.Err)
		}
	}
	return o, nil
}

// Observe reads the lab server: its release, whether its process runs
// and its status.
func (lab Lab) Observe(ctx context.Context) Observation {
	var o Observation
	l := lab.Layout()
	if _, err := os.Stat(l.Binary()); err != nil {
		o.State = StateNotDeployed
		return o
	}
	if link, err := os.Readlink(l.Current()); err == nil {
		o.Release = path.Base(link)
	}
	if pid, ok := lab.Running(); !ok {
		o.State = StateStopped
		o.Err = fmt.Errorf("the lab server (pid %d in %s) does not run", pid, lab.PIDFile())
		return o
	}
	o.Status, o.Err = lab.Status(ctx)
	if o.Err == nil {
		o.State = StateRunning
	} else {
		o.State = StateUnknown
	}
	return o
}

// LogOptions select the lines of mailctl logs.
type LogOptions struct {
	// Since keeps the lines logged at or after it (zero: every line).
	Since time.Time
	// Lines keeps the last Lines lines (0: no limit).
	Lines int
	// Follow keeps printing new lines until the context ends.
	Follow bool
	// Poll is how often the lab's log file is checked for new lines
	// when following; default 250ms.
	Poll time.Duration
}

// Streamer runs a command and copies its standard output to w as it
// comes. SSH and Local implement it.
type Streamer interface {
	Stream(ctx context.Context, cmd string, w io.Writer) error
}

// JournalCommand is the journalctl command line that mailctl logs runs on
// a server.
func JournalCommand(o LogOptions) string {
	cmd := "journalctl -u " + serviceName + " --no-pager -o short-iso"
	if !o.Since.IsZero() {
		cmd += " --since @" + strconv.FormatInt(o.Since.Unix(), 10)
	}
	if o.Lines > 0 {
		cmd += " -n " + strconv.Itoa(o.Lines)
	}
	if o.Follow {
		cmd += " -f"
	}
	return cmd
}

// Journal copies the server's journal to w. With o.Follow it returns
// when ctx ends (with nil when ctx was cancelled, as by Ctrl-C).
func Journal(ctx context.Context, t Streamer, o LogOptions, w io.Writer) error {
	err := t.Stream(ctx, JournalCommand(o), w)
	if o.Follow && errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the journal: %w", err)
	}
	return nil
}

// Logs copies the lab server's log file to w: the lines logged since
// o.Since, the last o.Lines of them, then with o.Follow the lines appended
// until ctx is cancelled (nil is returned then). The server logs JSON
// lines with a "time" field; a line without one (a panic's trace) goes
// with the line before it.
func (lab Lab) Logs(ctx context.Context, o LogOptions, w io.Writer) error {
	f, err := os.Open(lab.LogFile())
	if err != nil {
		return fmt.Errorf("open the lab's log: %w", err)
	}
	defer f.Close()
	var keep []string
	r := bufio.NewReader(f)
	var off int64
	show := o.Since.IsZero()
	for {
		line, err := r.ReadString('\n')
		if !strings.HasSuffix(line, "\n") {
			// A partial last line: read it again when it is complete.
			break
		}
		off += int64(len(line))
		if !o.Since.IsZero() {
			if t, ok := lineTime(line); ok {
				show = !t.Before(o.Since)
			}
		}
		if show {
			keep = append(keep, line)
			if o.Lines > 0 && len(keep) > 2*o.Lines {
				keep = append(keep[:0], keep[len(keep)-o.Lines:]...)
			}
		}
		if err != nil {
			break
		}
	}
	if o.Lines > 0 && len(keep) > o.Lines {
		keep = keep[len(keep)-o.Lines:]
	}
	for _, l := range keep {
		if _, err := io.WriteString(w, l); err != nil {
			return err
		}
	}
	if !o.Follow {
		return nil
	}
	return follow(ctx, lab.LogFile(), f, off, o.Poll, w)
}

// follow copies what is appended to the file f (opened at name) from off
// on, until ctx ends. A file that shrinks (truncated) is read again from
// its start; one replaced (a new lab) is reopened.
func follow(ctx context.Context, name string, f *os.File, off int64, poll time.Duration, w io.Writer) error {
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	var partial []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			off += int64(n)
			data := append(partial, buf[:n]...)
			i := bytes.LastIndexByte(data, '\n')
			if _, werr := w.Write(data[:i+1]); werr != nil {
				return werr
			}
			partial = append([]byte{}, data[i+1:]...)
			if n == len(buf) {
				continue
			}
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read the lab's log: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
		if fi, err := f.Stat(); err == nil && fi.Size() < off {
			off, partial = 0, nil
		}
		if fi, err := os.Stat(name); err == nil {
			if cur, err := f.Stat(); err == nil && !os.SameFile(fi, cur) {
				nf, err := os.Open(name)
				if err == nil {
					f.Close()
					f, off, partial = nf, 0, nil
					defer nf.Close()
				}
			}
		}
	}
}

// lineTime returns the "time" of a JSON log line.
func lineTime(line string) (time.Time, bool) {
	if !strings.HasPrefix(line, "{") {
		return time.Time{}, false
	}
	var rec struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil || rec.Time.IsZero() {
		return time.Time{}, false
	}
	return rec.Time, true
}

// streamProbe is how often Stream checks that an SSH connection still
// answers while a command (journalctl -f) prints nothing, and
// streamProbeTimeout how long it waits for the answer.
var (
	streamProbe        = 15 * time.Second
	streamProbeTimeout = 15 * time.Second
)

// Stream implements Streamer. The command runs as with Run (exec'd, so
// that a signal reaches it); when ctx ends it is sent SIGTERM and the
// session closed. A connection that stops answering ends Stream with an
// error after streamProbe+streamProbeTimeout.
func (s *SSH) Stream(ctx context.Context, cmd string, w io.Writer) error {
	return s.Pipe(ctx, cmd, nil, w)
}

// probe sends a keepalive request and waits streamProbeTimeout for its
// answer.
func (s *SSH) probe() error {
	res := make(chan error, 1)
	go func() {
		_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-time.After(streamProbeTimeout):
		return fmt.Errorf("no answer to a keepalive within %s", streamProbeTimeout)
	}
}

// exitError turns the outcome of a session's Run into an *ExitError or a
// wrapped error.
func (s *SSH) exitError(cmd string, err error, stderr *limitedBuffer) error {
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee):
		xe := &ExitError{Cmd: cmd, Status: ee.ExitStatus(), Stderr: tail(stderr.buf, stderrTailLines)}
		if ee.Signal() != "" {
			xe.Status, xe.Signal = -1, ee.Signal()
		}
		return xe
	case errors.As(err, &missing):
		return &ExitError{Cmd: cmd, Status: -1, Stderr: tail(stderr.buf, stderrTailLines)}
	}
	return fmt.Errorf("ssh %s: run %q: %w", s.addr, shorten(cmd, 200), err)
}

// Stream implements Streamer.
func (l Local) Stream(ctx context.Context, cmd string, w io.Writer) error {
	return l.Pipe(ctx, cmd, nil, w)
}
