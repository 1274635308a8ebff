package daemon_test

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeLoginLimits: serve applies the configured IMAP caps across
// ports 143 and 993 together, and answers a login lockout with
// NO [UNAVAILABLE] over IMAP and 454 4.7.0 over SMTP submission.
func TestServeLoginLimits(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.Limits.IMAPConnsPerUserIP = 2
	cfg.Limits.AuthFailuresPerIP = 2
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	pool := roots(t, cfg.DataDir)

	if err := dialIMAPS(t, srv.addr("imaps"), pool, nil).Login("alice@example.test", "alice-pw").Wait(); err != nil {
		t.Fatalf("1st session on 993: %v", err)
	}
	// Plaintext LOGIN is allowed from loopback on 143.
	plain := func() *lineConn { return dialLine(t, srv.addr("imap")) }
	if got := plain().cmd("a", "LOGIN alice@example.test alice-pw"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("2nd session on 143: %q", got)
	}
	err := dialIMAPS(t, srv.addr("imaps"), pool, nil).Login("alice@example.test", "alice-pw").Wait()
	if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Errorf("3rd session of alice from one address (limits.imap_conns_per_user_ip 2) = %v, want NO [UNAVAILABLE]", err)
	}

	c := plain()
	for i, tag := range []string{"w1", "w2"} {
		if got := c.cmd(tag, fmt.Sprintf("LOGIN alice@example.test wrong%d", i)); !strings.HasPrefix(got, tag+" NO [AUTHENTICATIONFAILED]") {
			t.Errorf("wrong password %d: %q", i, got)
		}
	}
	if got := c.cmd("r", "LOGIN alice@example.test alice-pw"); !strings.HasPrefix(got, "r NO [UNAVAILABLE] ") {
		t.Errorf("locked-out address: %q, want NO [UNAVAILABLE]", got)
	}
	out, err := swaks(t, "--server", srv.addr("submissions"), "--tls-on-connect", "--auth", "PLAIN",
		"--auth-user", "alice@example.test", "--auth-password", "alice-pw",
		"--from", "alice@example.test", "--to", "alice@example.test", "--quit-after", "AUTH")
	if err == nil || !strings.Contains(out, "454 4.7.0 Too many authentication failures from your address, try again in 10 minutes") {
		t.Errorf("SMTP AUTH from the locked-out address: err %v, want 454 4.7.0 ..., try again in 10 minutes in\n%s", err, out)
	}
}

// lineConn is a raw IMAP connection.
type lineConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	l := &lineConn{t: t, c: c, br: bufio.NewReader(c)}
	l.br.ReadString('\n') // greeting
	return l
}

// cmd sends a command and returns its tagged answer.
func (l *lineConn) cmd(tag, command string) string {
	l.t.Helper()
	if _, err := fmt.Fprintf(l.c, "%s %s\r\n", tag, command); err != nil {
		l.t.Fatal(err)
	}
	for {
		s, err := l.br.ReadString('\n')
		if err != nil {
			l.t.Fatalf("%s: read: %v", command, err)
		}
		if strings.HasPrefix(s, tag+" ") {
			return strings.TrimRight(s, "\r\n")
		}
	}
}
