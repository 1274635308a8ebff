package inbound_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/store"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mx starts an MX for example.test (user bob) on 127.0.0.1 with checks.
func mx(t *testing.T, opts inbound.Options) (addr string, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(ctx, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.EnsureUser(ctx, "bob@example.test", 0); err != nil {
		t.Fatal(err)
	}
	dir, err := auth.NewDirectory([]string{"example.test"}, []auth.User{{Address: "bob@example.test", PasswordHash: "x"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Hostname = "mx.example.test"
	opts.Logger = log
	c, err := inbound.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtp.New(smtp.Options{Mode: smtp.ModeMX, Hostname: "mx.example.test", Store: st, Directory: dir, Inbound: c, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String(), st
}

// dialFrom opens an SMTP client to addr from the source address ip.
func dialFrom(t *testing.T, ip, addr string) *gosmtp.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	return c
}

// startRbldnsd serves zone bl.test listing 127.0.0.2 with a real rbldnsd
// (Debian package rbldnsd) on a free loopback UDP port.
func startRbldnsd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("rbldnsd")
	if err != nil {
		bin = "/usr/sbin/rbldnsd"
	}
	dir, err := os.MkdirTemp("", "rbldnsd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// rbldnsd drops privileges: its files must be readable by nobody.
	os.Chmod(dir, 0o755)
	zone := ":127.0.0.2:Listed by the test list, see http://bl.test/?$\n127.0.0.2\n"
	if err := os.WriteFile(filepath.Join(dir, "bl.zone"), []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	cmd := exec.Command(bin, "-n", "-u", "nobody", "-b", fmt.Sprintf("127.0.0.1/%d", port), "-w", dir, "bl.test:ip4set:bl.zone")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rbldnsd (Debian package rbldnsd): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	r := &queue.DNS{Servers: []string{addr}, Timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := r.LookupIPAddr(context.Background(), "2.0.0.127.bl.test"); err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("rbldnsd does not answer on %s: %s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDNSBL(t *testing.T) {
	bl := startRbldnsd(t)
	k := testenv.StartKnot(t, "example.test")
	addr, _ := mx(t, inbound.Options{
		Resolver:      &queue.DNS{Servers: []string{k.Addr}},
		DNSBLZones:    []string{"bl.test"},
		DNSBLResolver: &queue.DNS{Servers: []string{bl}},
	})
	tests := []struct {
		ip     string
		listed bool
	}{
		{"127.0.0.2", true},
		{"127.0.0.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			c := dialFrom(t, tc.ip, addr)
			err := c.Mail("someone@example.net", nil)
			if !tc.listed {
				if err != nil {
					t.Fatalf("MAIL from %s = %v, want accepted", tc.ip, err)
				}
				return
			}
			se, ok := err.(*gosmtp.SMTPError)
			if !ok || se.Code != 554 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) ||
				!strings.Contains(se.Message, "bl.test") || !strings.Contains(se.Message, "Listed by the test list") {
				t.Fatalf("MAIL from %s = %v, want 554 5.7.1 naming bl.test", tc.ip, err)
			}
			// Refused for the whole session.
			if err := c.Mail("other@example.net", nil); err == nil {
				t.Errorf("second MAIL accepted")
			}
		})
	}
}

func TestGreylist(t *testing.T) {
	k := testenv.StartKnot(t, "example.test")
	clock := &fakeClock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "greylist.db")
	g, err := inbound.OpenGreylist(path, inbound.GreylistOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	addr, st := mx(t, inbound.Options{Resolver: &queue.DNS{Servers: []string{k.Addr}}, Greylist: g})
	rcpt := func(ip, from string) error {
		c := dialFrom(t, ip, addr)
		if err := c.Mail(from, nil); err != nil {
			t.Fatal(err)
		}
		return c.Rcpt("bob@example.test", nil)
	}
	greylisted := func(err error) bool {
		se, ok := err.(*gosmtp.SMTPError)
		return ok && se.Code == 451 && se.EnhancedCode == (gosmtp.EnhancedCode{4, 7, 1})
	}
	if err := rcpt("127.0.0.1", "a@example.net"); !greylisted(err) {
		t.Fatalf("first attempt: %v, want 451 4.7.1", err)
	}
	clock.Advance(4 * time.Minute)
	if err := rcpt("127.0.0.1", "a@example.net"); !greylisted(err) {
		t.Fatalf("retry after 4m: %v, want 451 4.7.1", err)
	}
	clock.Advance(time.Minute)
	// The sender's other server in the same /24 retries.
	c := dialFrom(t, "127.0.0.9", addr)
	if err := c.SendMail("a@example.net", []string{"bob@example.test"}, strings.NewReader("From: a@example.net\r\nSubject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("retry after 5m: %v, want accepted", err)
	}
	if _, msgs, _ := st.Messages(context.Background(), "bob@example.test", "INBOX"); len(msgs) != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", len(msgs))
	}
	if err := rcpt("127.0.0.1", "other@example.net"); !greylisted(err) {
		t.Errorf("new sender: %v, want 451", err)
	}
	// Whitelisted, and remembered across a reopen.
	g.Close()
	g2, err := inbound.OpenGreylist(path, inbound.GreylistOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	clock.Advance(24 * time.Hour)
	ok, _, err := g2.Check(context.Background(), net.ParseIP("127.0.0.1"), "a@example.net", "bob@example.test")
	if err != nil || !ok {
		t.Errorf("whitelisted triplet after reopen: %v %v", ok, err)
	}
	clock.Advance(40 * 24 * time.Hour)
	if n, err := g2.Expire(context.Background()); err != nil || n != 2 {
		t.Errorf("Expire = %d, %v; want 2 stale triplets removed", n, err)
	}
}
