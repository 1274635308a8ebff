// Package testenv starts real test peers for tests: an authoritative Knot DNS
// server accepting RFC 2136 dynamic updates and RFC 5936 zone transfers
// signed with RFC 8945 TSIG, and Knot secondaries of it that transfer its
// zones (RFC 5936 AXFR, RFC 1995 IXFR) only when the test says so. Peers run as children of the test process on
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
	// Label is the first label of the server's NS name in its zones: "ns1"
	// for a primary, "ns2", "ns3"... for its secondaries (see NSName).
	Label string
	// Primary is the server a secondary transfers its zones from; nil for
	// a primary.
	Primary *Knot

	zones       []string
	mu          sync.Mutex
	secondaries int
}

// StartKnot writes a Knot 3 configuration serving zones (each with a SOA and
// an NS record ns1.<zone>, whose A is 127.0.0.1) with an ACL allowing
// updates and transfers for a fresh TSIG key, starts knotd on a free
// 127.0.0.1 port and waits until it answers. It stops the server when the
// test ends.
func StartKnot(t testing.TB, zones ...string) *Knot {
	t.Helper()
	bin := knotd(t)
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
		Label:      "ns1",
		zones:      normZones(zones),
	}
	for _, z := range k.zones {
		zf := fmt.Sprintf("$ORIGIN %s.\n@ 3600 IN SOA ns1.%s. hostmaster.%s. 1 3600 900 1209600 300\n@ 3600 IN NS ns1.%s.\nns1 3600 IN A 127.0.0.1\n", z, z, z, z)
		if err := os.WriteFile(filepath.Join(k.Dir, z+".zone"), []byte(zf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k.run(t, bin, k.primaryConfig)
	return k
}

// StartKnotSecondary starts a second knotd on a free 127.0.0.1 port that
// serves zones (all served by primary) as a secondary: it transfers them
// from primary (AXFR, then IXFR, signed with primary's TSIG key) when it
// starts, and then only when the test calls Refresh. The primary sends it
// no NOTIFY and the SOA refresh interval is an hour, so after an update on
// the primary the secondary lags, deterministically, until Refresh.
//
// Before it starts, it adds the secondary to each zone at the primary (one
// RFC 2136 update): an NS record <Label>.<zone> (Label "ns2", then "ns3"...)
// with an A record 127.0.0.1, so that the zone's NS RRset lists both
// servers, as a delegated zone's would. It returns once the secondary
// serves every zone with the primary's SOA serial, and stops the server
// when the test ends.
func StartKnotSecondary(t testing.TB, primary *Knot, zones ...string) *Knot {
	t.Helper()
	bin := knotd(t)
	if len(zones) == 0 {
		t.Fatal("StartKnotSecondary needs at least one zone")
	}
	if primary.Primary != nil {
		t.Fatal("StartKnotSecondary: the primary is itself a secondary")
	}
	primary.mu.Lock()
	primary.secondaries++
	label := fmt.Sprintf("ns%d", primary.secondaries+1)
	primary.mu.Unlock()
	k := &Knot{
		TSIGName:   primary.TSIGName,
		TSIGAlg:    primary.TSIGAlg,
		TSIGSecret: primary.TSIGSecret,
		Dir:        t.TempDir(),
		Label:      label,
		Primary:    primary,
		zones:      normZones(zones),
	}
	for _, z := range k.zones {
		ns := &mdns.NS{Hdr: mdns.RR_Header{Name: z + ".", Rrtype: mdns.TypeNS, Class: mdns.ClassINET, Ttl: 3600}, Ns: k.NSName(z) + "."}
		a := &mdns.A{Hdr: mdns.RR_Header{Name: k.NSName(z) + ".", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 3600}, A: net.IPv4(127, 0, 0, 1)}
		if err := primary.Update(context.Background(), z, nil, []mdns.RR{ns, a}); err != nil {
			t.Fatalf("add %s to the NS of %s: %v", k.NSName(z), z, err)
		}
	}
	k.run(t, bin, k.secondaryConfig)
	// knotd answers once the first zone is transferred; wait for them all.
	deadline := time.Now().Add(10 * time.Second)
	for _, z := range k.zones {
		want := primary.Serial(t, z)
		for {
			got, err := k.serial(context.Background(), z)
			if err == nil && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("secondary %s did not transfer %s within 10s (serial %d, %v; want serial %d)", k.Addr, z, got, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return k
}

// NSName returns the name of the server in zone's NS RRset: ns1.<zone> for
// a primary, ns2.<zone> for its first secondary...
func (k *Knot) NSName(zone string) string {
	return k.Label + "." + strings.TrimSuffix(strings.ToLower(zone), ".")
}

// Serial returns the SOA serial k serves for zone.
func (k *Knot) Serial(t testing.TB, zone string) uint32 {
	t.Helper()
	s, err := k.serial(context.Background(), zone)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *Knot) serial(ctx context.Context, zone string) (uint32, error) {
	r, err := k.Exchange(ctx, zone, mdns.TypeSOA)
	for i := 0; i < 2 && err != nil && ctx.Err() == nil; i++ {
		r, err = k.Exchange(ctx, zone, mdns.TypeSOA) // a UDP answer lost on a busy machine
	}
	if err != nil {
		return 0, fmt.Errorf("query SOA %s at %s: %w", zone, k.Addr, err)
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*mdns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("query SOA %s at %s: no SOA in the answer (rcode %s)", zone, k.Addr, mdns.RcodeToString[r.Rcode])
}

// Refresh makes a secondary ask its primary for zone's SOA now and transfer
// what changed (knotc -b zone-refresh returns once the transfer is done).
// It fails the test unless the secondary then serves the primary's serial.
func (k *Knot) Refresh(t testing.TB, zone string) {
	t.Helper()
	if k.Primary == nil {
		t.Fatalf("Refresh %s: %s is not a secondary", zone, k.Addr)
	}
	k.knotc(t, "-b", "zone-refresh", strings.TrimSuffix(zone, "."))
	if got, want := k.Serial(t, zone), k.Primary.Serial(t, zone); got != want {
		t.Fatalf("secondary %s serves %s serial %d after the refresh, want the primary's %d", k.Addr, zone, got, want)
	}
}

// knotc runs knotc on k's control socket.
func (k *Knot) knotc(t testing.TB, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("knotc")
	if err != nil {
		bin = "/usr/sbin/knotc"
	}
	out, err := exec.Command(bin, append([]string{"-c", k.Conf, "-t", "10"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("knotc %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Update sends one RFC 2136 UPDATE for zone over TCP, signed with k's TSIG
// key: it deletes the records of remove (exact data), then adds add.
func (k *Knot) Update(ctx context.Context, zone string, remove, add []mdns.RR) error {
	m := new(mdns.Msg)
	m.SetUpdate(mdns.Fqdn(zone))
	if len(remove) > 0 {
		m.Remove(remove)
	}
	if len(add) > 0 {
		m.Insert(add)
	}
	m.SetTsig(k.TSIGName, mdns.Fqdn(k.TSIGAlg), 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{k.TSIGName: k.TSIGSecret}}
	r, _, err := c.ExchangeContext(ctx, m, k.Addr)
	if err != nil {
		return fmt.Errorf("update %s at %s: %w", zone, k.Addr, err)
	}
	if r.Rcode != mdns.RcodeSuccess {
		return fmt.Errorf("update %s at %s: rcode %s", zone, k.Addr, mdns.RcodeToString[r.Rcode])
	}
	return nil
}

func knotd(t testing.TB) string {
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
	return bin
}

func normZones(zones []string) []string {
	out := make([]string, len(zones))
	for i, z := range zones {
		out[i] = strings.TrimSuffix(strings.ToLower(z), ".")
	}
	return out
}

// run starts knotd with the configuration conf(port) on a free port,
// retrying with another port when the chosen one was taken meanwhile.
func (k *Knot) run(t testing.TB, bin string, conf func(port int) string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(k.Dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		k.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = k.start(t, bin, conf(port)); lastErr == nil {
			return
		}
	}
	t.Fatalf("start knotd: %v", lastErr)
}

// common is the configuration of primaries and secondaries alike: the
// server, the TSIG key and the zone template.
func (k *Knot) common(port int) string {
	return fmt.Sprintf(`server:
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

template:
  - id: default
    storage: %q
    file: "%%s.zone"
    zonefile-sync: -1
    semantic-checks: off

`, port, k.Dir, filepath.Join(k.Dir, "knot.pid"), filepath.Join(k.Dir, "db"), k.TSIGName, k.TSIGAlg, k.TSIGSecret, k.Dir)
}

func (k *Knot) primaryConfig(port int) string {
	var b strings.Builder
	b.WriteString(k.common(port))
	fmt.Fprintf(&b, "acl:\n  - id: mailctl\n    key: %s\n    action: [update, transfer]\n\nzone:\n", k.TSIGName)
	for _, z := range k.zones {
		fmt.Fprintf(&b, "  - domain: %s\n    acl: mailctl\n", z)
	}
	return b.String()
}

// secondaryConfig transfers from the primary with its key and allows
// transfers (for tests), but no NOTIFY and no update.
func (k *Knot) secondaryConfig(port int) string {
	var b strings.Builder
	b.WriteString(k.common(port))
	host, pport, _ := net.SplitHostPort(k.Primary.Addr)
	fmt.Fprintf(&b, "remote:\n  - id: primary\n    address: %s@%s\n    key: %s\n\n", host, pport, k.TSIGName)
	fmt.Fprintf(&b, "acl:\n  - id: mailctl\n    key: %s\n    action: [transfer]\n\nzone:\n", k.TSIGName)
	for _, z := range k.zones {
		fmt.Fprintf(&b, "  - domain: %s\n    master: primary\n    acl: mailctl\n", z)
	}
	return b.String()
}

func (k *Knot) start(t testing.TB, bin string, config string) error {
	conf := filepath.Join(k.Dir, "knot.conf")
	k.Conf = conf
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		return err
	}
	var stderr syncBuffer
	c, err := startChild(&stderr, bin, "-c", conf)
	if err != nil {
		return err
	}
	first := mdns.Fqdn(k.zones[0])
	answers := func() bool {
		m := new(mdns.Msg)
		m.SetQuestion(first, mdns.TypeSOA)
		cl := &mdns.Client{Timeout: 200 * time.Millisecond}
		r, _, err := cl.Exchange(m, k.Addr)
		return err == nil && r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0
	}
	if err := c.waitReady(10*time.Second, answers); err != nil {
		return fmt.Errorf("knotd on %s: %w: %s", k.Addr, err, stderr.String())
	}
	t.Cleanup(func() {
		c.stop()
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
