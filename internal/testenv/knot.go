// Package testenv starts real test peers for tests: an authoritative Knot DNS
// server accepting RFC 2136 dynamic updates and RFC 5936 zone transfers
// signed with RFC 8945 TSIG. Peers run as children of the test process on
// loopback ports and stop in t.Cleanup. A missing binary fails the test: the
// CI installs the Debian packages (knot, knot-dnsutils).
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// Knot is a running knotd.
type Knot struct {
	// Addr is the UDP and TCP address, 127.0.0.1:PORT.
	Addr string
	// TSIGName is the key name (fully qualified), TSIGAlg "hmac-sha256",
	// TSIGSecret the base64 secret.
	TSIGName, TSIGAlg, TSIGSecret string
	// Dir holds the config, zone files (<zone>.zone) and databases.
	Dir string
	// Conf is the configuration file, for knotc -c.
	Conf string
}

// StartKnot writes a Knot 3 configuration serving zones (each with a SOA and
// an NS record) with an ACL allowing updates and transfers for a fresh TSIG
// key, starts knotd on a free 127.0.0.1 port and waits until it answers. It
// stops the server when the test ends.
func StartKnot(t testing.TB, zones ...string) *Knot {
	t.Helper()
	bin, err := exec.LookPath("knotd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/knotd", "/usr/local/sbin/knotd"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatalf("knotd not found (install the Debian package knot): %v", err)
	}
	if len(zones) == 0 {
		t.Fatal("StartKnot needs at least one zone")
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	k := &Knot{
		TSIGName:   "mailctl-test.",
		TSIGAlg:    "hmac-sha256",
		TSIGSecret: base64.StdEncoding.EncodeToString(secret),
		Dir:        t.TempDir(),
	}
	if err := os.MkdirAll(filepath.Join(k.Dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		z = strings.TrimSuffix(z, ".")
		zf := fmt.Sprintf("$ORIGIN %s.\n@ 3600 IN SOA ns1.%s. hostmaster.%s. 1 3600 900 1209600 300\n@ 3600 IN NS ns1.%s.\nns1 3600 IN A 127.0.0.1\n", z, z, z, z)
		if err := os.WriteFile(filepath.Join(k.Dir, z+".zone"), []byte(zf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		k.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = k.start(t, bin, port, zones); lastErr == nil {
			return k
		}
	}
	t.Fatalf("start knotd: %v", lastErr)
	return nil
}

func (k *Knot) config(port int, zones []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `server:
    listen: 127.0.0.1@%d
    rundir: %q
    pidfile: %q
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: warning

database:
    storage: %q

key:
  - id: %s
    algorithm: %s
    secret: %s

acl:
  - id: mailctl
    key: %s
    action: [update, transfer]

template:
  - id: default
    storage: %q
    file: "%%s.zone"
    zonefile-sync: -1
    semantic-checks: off

zone:
`, port, k.Dir, filepath.Join(k.Dir, "knot.pid"), filepath.Join(k.Dir, "db"), k.TSIGName, k.TSIGAlg, k.TSIGSecret, k.TSIGName, k.Dir)
	for _, z := range zones {
		fmt.Fprintf(&b, "  - domain: %s\n    acl: mailctl\n", strings.TrimSuffix(z, "."))
	}
	return b.String()
}

func (k *Knot) start(t testing.TB, bin string, port int, zones []string) error {
	conf := filepath.Join(k.Dir, "knot.conf")
	k.Conf = conf
	if err := os.WriteFile(conf, []byte(k.config(port, zones)), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "-c", conf)
	var stderr syncBuffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	first := mdns.Fqdn(zones[0])
	for {
		select {
		case err := <-done:
			return fmt.Errorf("knotd exited: %v: %s", err, stderr.String())
		default:
		}
		m := new(mdns.Msg)
		m.SetQuestion(first, mdns.TypeSOA)
		c := &mdns.Client{Timeout: 200 * time.Millisecond}
		if r, _, err := c.Exchange(m, k.Addr); err == nil && r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0 {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("knotd did not answer on %s within 10s: %s", k.Addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("knotd output:\n%s", stderr.String())
		}
	})
	return nil
}

// Query asks Knot for name and type over UDP (TCP if truncated) and returns
// the answer section.
func (k *Knot) Query(t testing.TB, name string, qtype uint16) []mdns.RR {
	t.Helper()
	r, err := k.Exchange(context.Background(), name, qtype)
	if err != nil {
		t.Fatalf("query %s %s at %s: %v", name, mdns.TypeToString[qtype], k.Addr, err)
	}
	return r.Answer
}

// Exchange sends one query and returns the response; a non-NOERROR,
// non-NXDOMAIN rcode is an error.
func (k *Knot) Exchange(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	c := &mdns.Client{Timeout: 2 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, k.Addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, k.Addr)
	}
	if err != nil {
		return nil, err
	}
	if r.Rcode != mdns.RcodeSuccess && r.Rcode != mdns.RcodeNameError {
		return r, fmt.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
	}
	return r, nil
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port on 127.0.0.1")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
