package preflight_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	hemu "github.com/mailctl/mailctl/internal/emulator/hetzner"
	oemu "github.com/mailctl/mailctl/internal/emulator/ovh"
	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/preflight"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/remote"
)

// listenEnv makes the test binary, run as a process named "mailctl",
// listen on the address it holds until its standard input closes: a port
// held by an existing deployment.
const listenEnv = "PREFLIGHT_TEST_LISTEN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(listenEnv); addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		l.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const serverIP = "203.0.113.10"

const blockedFix = "your provider blocks outbound port 25: ask support to open it, or use a relay { } smarthost"

// lab holds the real peers of the tests: sshd, the DNSBL, the hosting API.
type lab struct {
	sshd  *testenv.SSHD
	dnsbl string
	emu   *hemu.Server
	ovh   *oemu.Server
	probe string
}

// provider is a provider block and its address.
type provider struct{ block, addr string }

func (l *lab) hetzner(token string) provider {
	return provider{fmt.Sprintf("provider \"hetzner\" \"h\" {\n  token    = %q\n  endpoint = %q\n}\n", token, l.emu.Endpoint), "provider.hetzner.h"}
}

func (l *lab) ovhProvider(consumerKey string) provider {
	return provider{fmt.Sprintf("provider \"ovh\" \"o\" {\n  endpoint = %q\n  application_key = %q\n  application_secret = %q\n  consumer_key = %q\n}\n",
		l.ovh.Endpoint, l.ovh.ApplicationKey, l.ovh.ApplicationSecret, consumerKey), "provider.ovh.o"}
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{sshd: testenv.StartSSHD(t), dnsbl: testenv.StartRbldnsd(t, rbldnsdZones), emu: hemu.New(t), ovh: oemu.New(t), probe: testenv.SMTPGreeter(t, "220 probe.test ESMTP ready")}
	l.emu.AddServer("mx1", serverIP, "2001:db8:10::/64")
	l.ovh.AddIPBlock(serverIP + "/32")
	return l
}

// setup is one configuration of the server under test.
type setup struct {
	ports      []int    // smtp, submission, submissions, imap, imaps, https, http
	ptr        provider // no ptr provider when zero
	hostKey    string   // pinned key; "" means known_hosts
	knownHosts string
	relay      bool
	ip         string // default serverIP
}

func (l *lab) config(t *testing.T, s setup) *config.Config {
	t.Helper()
	if len(s.ports) == 0 {
		s.ports = freePorts(t, 7)
	}
	var b strings.Builder
	ptrLine := ""
	if s.ptr.addr != "" {
		b.WriteString(s.ptr.block)
		ptrLine = "  ptr      = " + s.ptr.addr + "\n"
	}
	key := fmt.Sprintf("    host_key = %q\n", s.hostKey)
	if s.hostKey == "" {
		key = fmt.Sprintf("    known_hosts = %q\n", s.knownHosts)
	}
	if s.ip == "" {
		s.ip = serverIP
	}
	relay := ""
	if s.relay {
		relay = "  relay {\n    address = \"smtp.relay.test:587\"\n  }\n"
	}
	fmt.Fprintf(&b, `server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = %q
%s  ssh {
    address  = %q
    identity = %q
%s  }
  tls {
    self_signed = true
  }
%s  ports {
    smtp        = %d
    submission  = %d
    submissions = %d
    imap        = %d
    imaps       = %d
    https       = %d
    http        = %d
  }
}
provider "zonefile" "z" {
  dir = "zones"
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
`, s.ip, ptrLine, l.sshd.Addr, l.sshd.ClientKeyFile, key, relay, s.ports[0], s.ports[1], s.ports[2], s.ports[3], s.ports[4], s.ports[5], s.ports[6])
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(b.String())}, config.LoadOptions{Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatalf("config: %v\n%s", diags, b.String())
	}
	return cfg
}

func (l *lab) options(t *testing.T) preflight.Options {
	return preflight.Options{
		Probe: l.probe,
		// No case waits for it to expire; a loaded machine (the VM tests
		// beside) may take seconds to start the probe's shell.
		ProbeTimeout: 20 * time.Second,
		Resolver:     &verify.DNSClient{Servers: []string{l.dnsbl}, Timeout: time.Second},
		DNSBLZones:   []string{"clean.test"},
		HomeDir:      t.TempDir(),
		Timeout:      60 * time.Second, // the default; naming a port's owner walks /proc, slow under load
	}
}

// result returns the one result of check for target (any target if "").
func result(t *testing.T, rep verify.Report, check, target string) verify.Result {
	t.Helper()
	rs := rep.Find(check, target)
	if len(rs) != 1 {
		t.Fatalf("results of %s %s = %v, want one; report:\n%s", check, target, rs, table(rep))
	}
	return rs[0]
}

func table(rep verify.Report) string {
	var b strings.Builder
	verify.WriteTable(&b, rep, false)
	return b.String()
}

func TestPreflight(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()

	t.Run("ready server", func(t *testing.T) {
		t.Parallel()
		rep := preflight.Run(ctx, l.config(t, setup{ptr: l.hetzner(l.emu.Token), hostKey: l.sshd.HostKeyLine(0)}), l.options(t))
		t.Logf("report:\n%s", table(rep))
		var checks []string
		for _, r := range rep.Results {
			checks = append(checks, r.Check)
			if r.Status != verify.Pass && r.Check != "os" {
				t.Errorf("%s %s = %v %q, want pass", r.Check, r.Target, r.Status, r.Detail)
			}
		}
		// The server is this machine: the os check passes only where
		// systemd runs as init (a CI container has systemctl without it).
		osr := result(t, rep, "os", "mx1.example.org")
		wantExit := 0
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			if osr.Status != verify.Pass {
				t.Errorf("os = %v %q, want pass", osr.Status, osr.Detail)
			}
		} else {
			wantExit = 2
			if osr.Status != verify.Fail || !strings.Contains(osr.Detail, "does not run as init") {
				t.Errorf("os on a machine without systemd as init = %v %q, want fail", osr.Status, osr.Detail)
			}
		}
		want := []string{"ssh", "os", "memory", "disk", "ports", "outbound25", "dnsbl", "ptr"}
		if !slices.Equal(checks, want) {
			t.Errorf("checks = %v, want %v", checks, want)
		}
		if r := result(t, rep, "ssh", "mx1.example.org"); !strings.Contains(r.Detail, "host key pinned (ssh-ed25519 SHA256:") {
			t.Errorf("ssh detail = %q, want the pinned key's fingerprint", r.Detail)
		}
		if r := result(t, rep, "outbound25", "mx1.example.org"); !strings.Contains(r.Detail, "220 probe.test ESMTP ready") {
			t.Errorf("outbound25 detail = %q, want the probe's greeting", r.Detail)
		}
		if r := result(t, rep, "ptr", serverIP); !strings.Contains(r.Detail, hemu.DefaultPTR(netip.MustParseAddr(serverIP))) {
			t.Errorf("ptr detail = %q, want the current PTR", r.Detail)
		}
		if rep.ExitCode() != wantExit {
			t.Errorf("ExitCode = %d, want %d", rep.ExitCode(), wantExit)
		}
	})

	t.Run("outbound 25 blocked", func(t *testing.T) {
		t.Parallel()
		o := l.options(t)
		o.Probe = closedPort(t)
		rep := preflight.Run(ctx, l.config(t, setup{hostKey: l.sshd.HostKeyLine(0)}), o)
		r := result(t, rep, "outbound25", "mx1.example.org")
		if r.Status != verify.Fail || r.Fix != blockedFix || !strings.Contains(r.Detail, "Connection refused") {
			t.Errorf("outbound25 = %v %q fix %q; want fail, the refusal and %q", r.Status, r.Detail, r.Fix, blockedFix)
		}
		if !strings.Contains(table(rep), "fix: "+blockedFix) {
			t.Errorf("table has no fix line:\n%s", table(rep))
		}
		if rep.ExitCode() != 2 {
			t.Errorf("ExitCode = %d, want 2", rep.ExitCode())
		}
	})

	t.Run("outbound 25 blocked with a relay for all mail", func(t *testing.T) {
		t.Parallel()
		o := l.options(t)
		o.Probe = closedPort(t)
		rep := preflight.Run(ctx, l.config(t, setup{hostKey: l.sshd.HostKeyLine(0), relay: true}), o)
		r := result(t, rep, "outbound25", "mx1.example.org")
		if r.Status != verify.Warn || !strings.Contains(r.Detail, "smtp.relay.test:587") {
			t.Errorf("outbound25 = %v %q, want warn naming the relay", r.Status, r.Detail)
		}
	})

	t.Run("port in use", func(t *testing.T) {
		t.Parallel()
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		ports := freePorts(t, 7)
		ports[0] = busy.Addr().(*net.TCPAddr).Port
		rep := preflight.Run(ctx, l.config(t, setup{hostKey: l.sshd.HostKeyLine(0), ports: ports}), l.options(t))
		r := result(t, rep, "ports", "mx1.example.org")
		want := fmt.Sprintf("port %d (smtp) is in use by preflight.test (pid %d", ports[0], os.Getpid())
		if r.Status != verify.Fail || !strings.Contains(r.Detail, want) || !strings.Contains(r.Detail, "127.0.0.1") {
			t.Errorf("ports = %v %q, want fail with %q", r.Status, r.Detail, want)
		}
		if !strings.Contains(r.Fix, "ports { }") {
			t.Errorf("ports fix = %q", r.Fix)
		}
	})

	t.Run("port held by mailctl", func(t *testing.T) {
		t.Parallel()
		ports := freePorts(t, 7)
		startMailctlListener(t, fmt.Sprintf("127.0.0.1:%d", ports[0]))
		rep := preflight.Run(ctx, l.config(t, setup{hostKey: l.sshd.HostKeyLine(0), ports: ports}), l.options(t))
		r := result(t, rep, "ports", "mx1.example.org")
		if want := fmt.Sprintf("held by mailctl (already deployed): %d", ports[0]); r.Status != verify.Pass || !strings.Contains(r.Detail, want) {
			t.Errorf("ports = %v %q, want pass with %q", r.Status, r.Detail, want)
		}
	})

	t.Run("listed on a blocklist", func(t *testing.T) {
		t.Parallel()
		o := l.options(t)
		o.DNSBLZones = []string{"clean.test", "dirty.test"}
		rep := preflight.Run(ctx, l.config(t, setup{hostKey: l.sshd.HostKeyLine(0)}), o)
		r := result(t, rep, "dnsbl", serverIP)
		if r.Status != verify.Fail || !strings.Contains(r.Detail, "listed on dirty.test") {
			t.Errorf("dnsbl = %v %q, want fail listed on dirty.test", r.Status, r.Detail)
		}
	})

	t.Run("refused PTR credential", func(t *testing.T) {
		t.Parallel()
		rep := preflight.Run(ctx, l.config(t, setup{ptr: l.hetzner("not-the-token"), hostKey: l.sshd.HostKeyLine(0)}), l.options(t))
		r := result(t, rep, "ptr", serverIP)
		if r.Status != verify.Fail || !strings.Contains(r.Detail, "token") || r.Fix == "" {
			t.Errorf("ptr = %v %q fix %q, want fail naming the token", r.Status, r.Detail, r.Fix)
		}
	})

	t.Run("OVH reverse DNS", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name, consumerKey string
			want              verify.Status
			detail            string
		}{
			{"valid credentials", l.ovh.ConsumerKey, verify.Pass, "no PTR yet; provider.ovh.o answers for " + serverIP},
			{"revoked consumer key", "0123456789abcdef", verify.Fail, "consumer_key"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rep := preflight.Run(ctx, l.config(t, setup{ptr: l.ovhProvider(tc.consumerKey), hostKey: l.sshd.HostKeyLine(0)}), l.options(t))
				r := result(t, rep, "ptr", serverIP)
				t.Logf("ptr: %s %s (fix: %s)", r.Status, r.Detail, r.Fix)
				if r.Status != tc.want || !strings.Contains(r.Detail, tc.detail) {
					t.Errorf("ptr = %v %q, want %v with %q", r.Status, r.Detail, tc.want, tc.detail)
				}
			})
		}
	})

	t.Run("IP of another account", func(t *testing.T) {
		t.Parallel()
		rep := preflight.Run(ctx, l.config(t, setup{ptr: l.hetzner(l.emu.Token), hostKey: l.sshd.HostKeyLine(0), ip: "198.51.100.99"}), l.options(t))
		r := result(t, rep, "ptr", "198.51.100.99")
		if r.Status != verify.Fail || !strings.Contains(r.Fix, "the account that holds 198.51.100.99") {
			t.Errorf("ptr = %v %q fix %q, want fail: not in the account", r.Status, r.Detail, r.Fix)
		}
	})

	t.Run("no PTR provider", func(t *testing.T) {
		t.Parallel()
		rep := preflight.Run(ctx, l.config(t, setup{hostKey: l.sshd.HostKeyLine(0)}), l.options(t))
		r := result(t, rep, "ptr", serverIP)
		if want := "set the PTR of " + serverIP + " to mx1.example.org in your hosting panel"; r.Status != verify.Warn || !strings.Contains(r.Fix, want) {
			t.Errorf("ptr = %v fix %q, want warn with %q", r.Status, r.Fix, want)
		}
	})

	t.Run("unknown host key", func(t *testing.T) {
		t.Parallel()
		known := filepath.Join(t.TempDir(), "known_hosts")
		cfg := l.config(t, setup{knownHosts: known})
		rep := preflight.Run(ctx, cfg, l.options(t))
		r := result(t, rep, "ssh", "mx1.example.org")
		// The client prefers the server's ecdsa key when none is known.
		pin := fmt.Sprintf("host_key = %q", l.sshd.HostKeyLine(1))
		fp := ssh.FingerprintSHA256(l.sshd.HostKeys[1])
		if r.Status != verify.Fail || !strings.Contains(r.Detail, "unknown") || !strings.Contains(r.Detail, fp) || !strings.Contains(r.Fix, pin) {
			t.Errorf("ssh = %v %q fix %q; want fail with the fingerprint %s and %s", r.Status, r.Detail, r.Fix, fp, pin)
		}
		for _, c := range []string{"os", "memory", "disk", "ports", "outbound25"} {
			if r := result(t, rep, c, "mx1.example.org"); r.Status != verify.Skip {
				t.Errorf("%s without SSH = %v, want skip", c, r.Status)
			}
		}

		o := l.options(t)
		o.AcceptNewHostKey = true
		rep = preflight.Run(ctx, cfg, o)
		if r := result(t, rep, "ssh", "mx1.example.org"); r.Status != verify.Pass || !strings.Contains(r.Detail, "recorded in "+known) {
			t.Errorf("ssh with -accept-new-host-key = %v %q, want pass, recorded", r.Status, r.Detail)
		}
		rep = preflight.Run(ctx, cfg, l.options(t))
		if r := result(t, rep, "ssh", "mx1.example.org"); r.Status != verify.Pass || !strings.Contains(r.Detail, "matches "+known) {
			t.Errorf("ssh after recording = %v %q, want pass", r.Status, r.Detail)
		}
	})

	t.Run("changed host key", func(t *testing.T) {
		t.Parallel()
		// Pinned: another server's ed25519 key; the server presents its
		// own key of the same type.
		other := testenv.StartSSHD(t)
		rep := preflight.Run(ctx, l.config(t, setup{hostKey: other.HostKeyLine(0)}), l.options(t))
		r := result(t, rep, "ssh", "mx1.example.org")
		if r.Status != verify.Fail || !strings.Contains(r.Detail, "CHANGED") || !strings.Contains(r.Fix, fmt.Sprintf("host_key = %q", l.sshd.HostKeyLine(0))) {
			t.Errorf("ssh = %v %q fix %q; want fail CHANGED with the new pin", r.Status, r.Detail, r.Fix)
		}
	})
}

// TestOutbound25Check runs the exported check on this machine (the Local
// target) against peers that greet oddly or not at all.
func TestOutbound25Check(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		probe  string
		want   verify.Status
		detail string
	}{
		{"smtp greeting", testenv.SMTPGreeter(t, "220-mx.test ESMTP"), verify.Pass, "220-mx.test ESMTP"},
		{"not smtp", testenv.SMTPGreeter(t, "SSH-2.0-OpenSSH_9.2"), verify.Warn, "not an SMTP greeting"},
		{"closed without greeting", testenv.SMTPGreeter(t, ""), verify.Fail, "closed without a greeting"},
		{"refused", closedPort(t), verify.Fail, "Connection refused"},
		{"bad probe", "no-port", verify.Fail, "probe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := preflight.Outbound25Check(remote.Local{}, nil, tc.probe)
			if c.Name != "outbound25" || c.Target != tc.probe {
				t.Errorf("check = %s %s, want outbound25 %s", c.Name, c.Target, tc.probe)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rs := c.Run(ctx)
			if len(rs) != 1 || rs[0].Status != tc.want || !strings.Contains(rs[0].Detail, tc.detail) {
				t.Errorf("Run = %+v, want %v with %q", rs, tc.want, tc.detail)
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// freePorts returns n distinct free TCP ports of 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startMailctlListener runs a copy of the test binary named mailctl that
// listens on addr, as a deployed mailctl does.
func startMailctlListener(t *testing.T, addr string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "mailctl")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), listenEnv+"="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("mailctl listener: %q", line)
	}
}

// rbldnsdZones: clean.test lists only the RFC 5782 test address,
// dirty.test lists the server.
var rbldnsdZones = map[string]string{
	"clean.test": "127.0.0.2\n",
	"dirty.test": "127.0.0.2\n" + serverIP + " :127.0.0.2:Spam trap hit\n",
}
