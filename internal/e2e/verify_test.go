package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/crypto/ssh"

	hzemu "github.com/mailctl/mailctl/internal/emulator/hetzner"
	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/remote"
	"github.com/mailctl/mailctl/server/auth"
)

// TestApplyVerifyVPS is issue #7's "done when": on the VM lab, `mailctl
// apply` ends with a verify table where every check passes. Around the VM:
//
//   - a real Knot is authoritative for example.org (its name server
//     ns1.example.org), for the reverse zone 2.0.192.in-addr.arpa and for
//     an empty blocklist zone bl.test;
//   - the Hetzner API emulator holds the server's IP; each PTR change it
//     completes is published in Knot's reverse zone, as Hetzner's own
//     reverse name servers do;
//   - the VM has no route out (qemu restrict=on), so two SSH remote
//     forwards give the server what the Internet would: its resolver (DNS
//     over TCP to Knot) and an SMTP server for the outbound port 25 probe.
func TestApplyVerifyVPS(t *testing.T) {
	v := sharedVPS(t)
	c := dialVPS(t)
	t.Cleanup(func() { remote.Destroy(context.Background(), c, true) })
	knot := testenv.StartKnot(t, "example.org", "2.0.192.in-addr.arpa", "bl.test")

	const ip = "192.0.2.25"
	hz := hzemu.New(t)
	hz.AddServer("vm", ip, "")
	publishPTR := func(a netip.Addr, ptr string) {
		name := mdns.Fqdn(reverseName(a))
		m := new(mdns.Msg)
		m.SetUpdate("2.0.192.in-addr.arpa.")
		m.RemoveRRset([]mdns.RR{&mdns.PTR{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypePTR, Class: mdns.ClassINET}}})
		if ptr != "" {
			rr, err := mdns.NewRR(fmt.Sprintf("%s 300 IN PTR %s", name, mdns.Fqdn(ptr)))
			if err != nil {
				t.Errorf("PTR record: %v", err)
				return
			}
			m.Insert([]mdns.RR{rr})
		}
		m.SetTsig(knot.TSIGName, knot.TSIGAlg+".", 300, time.Now().Unix())
		cl := &mdns.Client{TsigSecret: map[string]string{knot.TSIGName: knot.TSIGSecret}}
		r, _, err := cl.Exchange(m, knot.Addr)
		if err != nil || r.Rcode != mdns.RcodeSuccess {
			t.Errorf("publish PTR %s -> %s in Knot: %v %v", a, ptr, err, r)
		}
	}
	publishPTR(netip.MustParseAddr(ip), hzemu.DefaultPTR(netip.MustParseAddr(ip)))
	hz.OnPTR(publishPTR)

	// What the Internet gives the server: a resolver, an SMTP server.
	probe := testenv.SMTPGreeter(t, "220 mx.probe.test ESMTP")
	forwardFromVM(t, v, "127.0.0.1:5353", knot.Addr)
	forwardFromVM(t, v, "127.0.0.1:10025", probe)

	bin := filepath.Join(t.TempDir(), "mailctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/mailctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pw, err := auth.HashPassword("alice-pw", auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`
provider "rfc2136" "knot" {
  server    = %q
  tsig_name = %q
  tsig_key  = env("TSIG_SECRET")
}
provider "hetzner" "cloud" {
  token    = env("HCLOUD_TOKEN")
  endpoint = %q
}
server "vm" {
  hostname  = "mail.example.org"
  ipv4      = %q
  ptr       = provider.hetzner.cloud
  resolvers = ["tcp://127.0.0.1:5353"]
  ssh {
    address  = %q
    host_key = %q
    identity = %q
  }
  tls {
    self_signed = true
  }
}
domain "example.org" {
  dns    = provider.rfc2136.knot
  server = server.vm
  dmarc {
    policy = "reject"
    rua    = ["mailto:postmaster@example.org"]
  }
  mta_sts {
    mode = "enforce"
  }
  tls_rpt {
    rua = ["mailto:postmaster@example.org"]
  }
}
user "alice@example.org" {
  password_hash = %q
}
alias "postmaster@example.org" {
  to = ["alice@example.org"]
}
alias "abuse@example.org" {
  to = ["alice@example.org"]
}
`, knot.Addr, knot.TSIGName, hz.Endpoint, ip, v.Addr, v.HostKey, v.KeyFile, pw)
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Every name the checks dial goes to the port forwards and to Knot.
	endpoints := []string{"-resolver", knot.Addr, "-connect", "ns1.example.org:53=" + knot.Addr,
		"-dnsbl", "bl.test", "-outbound-probe", "127.0.0.1:10025"}
	for _, p := range []int{25, 465, 587, 143, 993, 443} {
		endpoints = append(endpoints, "-connect", fmt.Sprintf("mail.example.org:%d=127.0.0.1:%d", p, v.HostPort(p)))
	}
	endpoints = append(endpoints, "-connect", fmt.Sprintf("mta-sts.example.org:443=127.0.0.1:%d", v.HostPort(443)))
	mailctl := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := vmContext(t, 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-chdir", dir}, args...)...)
		cmd.Env = append(os.Environ(), "NO_COLOR=1", "TSIG_SECRET="+knot.TSIGSecret, "HCLOUD_TOKEN="+hz.Token,
			"MAILCTL_PROBE_USER=alice@example.org", "MAILCTL_PROBE_PASSWORD=alice-pw")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("mailctl %v: %v", args, err)
		}
		return out.String(), 0
	}

	t0 := time.Now()
	out, code := mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...)
	t.Logf("apply + verify on a fresh VM: %.1fs", time.Since(t0).Seconds())
	if code != 0 || !strings.Contains(out, "Apply complete!") {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	checks := verifyRows(out)
	for _, want := range []string{"dns.ns", "dns.a", "dns.ptr", "dns.mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt",
		"addresses", "tls", "smtp.banner", "smtp.auth", "relay", "dnsbl", "outbound25", "roundtrip"} {
		if checks[want] == 0 {
			t.Errorf("the verify table after apply has no %q check", want)
		}
	}
	if strings.Contains(out, " fail ") || strings.Contains(out, " warn ") || strings.Contains(out, " skip ") {
		t.Errorf("verify after apply is not all pass:\n%s", out)
	}
	if hz.PTR(ip) != "mail.example.org" {
		t.Errorf("Hetzner PTR = %q", hz.PTR(ip))
	}

	if t.Failed() {
		t.Logf("apply output:\n%s", out)
	}

	// Standalone verify agrees: the same checks, all pass.
	out, code = mailctl(append([]string{"verify"}, endpoints...)...)
	if code != 0 || !maps.Equal(verifyRows(out), checks) {
		t.Errorf("verify = %d, checks %v, want %v:\n%s", code, verifyRows(out), checks, out)
	}

	// Break what the hosting provider could: the reverse name servers
	// serve another PTR. verify fails and names it.
	publishPTR(netip.MustParseAddr(ip), "static.example.net")
	out, code = mailctl(append(append([]string{"verify"}, endpoints...), "dns.ptr")...)
	if code != 2 || !strings.Contains(out, "static.example.net") {
		t.Errorf("verify with a foreign PTR = %d:\n%s", code, out)
	}
}

// verifyRows counts the rows of a verify table per check name (targets
// may hold spaces: the status is the first status word after the name).
func verifyRows(out string) map[string]int {
	n := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i := 2; i < len(f); i++ {
			if f[i] == "pass" || f[i] == "warn" || f[i] == "fail" || f[i] == "skip" {
				n[f[0]]++
				break
			}
		}
	}
	return n
}

// reverseName is the in-addr.arpa name of an IPv4 address.
func reverseName(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", b[3], b[2], b[1], b[0])
}

// forwardFromVM makes guestAddr (on the VM's loopback) lead to hostAddr on
// this machine, through an SSH remote port forward (ssh -R).
func forwardFromVM(t *testing.T, v *testenv.VPS, guestAddr, hostAddr string) {
	t.Helper()
	key, err := os.ReadFile(v.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(v.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ssh.Dial("tcp", v.Addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), HostKeyAlgorithms: []string{hk.Type()}, Timeout: vmTimeout(60 * time.Second)})
	if err != nil {
		t.Fatalf("ssh to the VM for a port forward: %v", err)
	}
	ln, err := cl.Listen("tcp", guestAddr)
	if err != nil {
		cl.Close()
		t.Fatalf("remote forward %s on the VM: %v", guestAddr, err)
	}
	t.Cleanup(func() { cl.Close() })
	testenv.Forward(t, ln, hostAddr)
}
