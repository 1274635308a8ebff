package testenv

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// child is a test peer running as a child process, killed with the test
// process (Pdeathsig).
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has ended
	err    error         // Wait's result, once exited is closed
}

// startChild starts bin with args, its standard output and error to out.
func startChild(out io.Writer, bin string, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	return c, nil
}

// errNotReady says that a child did not become ready in time.
var errNotReady = errors.New("not ready in time")

// waitReady calls ready every 50 ms until it reports true, for up to
// timeout. It returns an error saying so if the child exits first, or
// errNotReady, once the child is stopped, if time runs out.
func (c *child) waitReady(timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("exited: %v", c.err)
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return fmt.Errorf("%w (%s)", errNotReady, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the child: SIGTERM, then SIGKILL after 5 s. It may be called
// more than once.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}
