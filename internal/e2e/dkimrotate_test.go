package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
)

// vmRotation is TestApplyToVPS's DKIM rotation step: mail that alice
// submits to bob on the VM is read back over IMAPS and its signatures are
// verified against Knot, before `mailctl dkim rotate`, during (both keys
// published by apply -wait=0, the old one signing), after apply switched
// signing (it waited until Knot served the new key), and after the grace
// period's apply removed the old selector. mailctl runs mailctl with the
// test's configuration; endpoints are apply's resolver flags.
func vmRotation(t *testing.T, v *testenv.VPS, knot *testenv.Knot, cert, bobPW, alicePW string, grace time.Duration,
	mailctl func(args ...string) (string, int), endpoints []string) {
	t.Helper()
	lookup := func(name string) ([]string, error) {
		r, err := knot.Exchange(context.Background(), name, mdns.TypeTXT)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, rr := range r.Answer {
			if txt, ok := rr.(*mdns.TXT); ok {
				out = append(out, strings.Join(txt.Txt, ""))
			}
		}
		if len(out) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
		}
		return out, nil
	}
	selRE := regexp.MustCompile(`(?i)\bs=([a-z0-9.-]+)`)
	verify := func(msg []byte) ([]string, error) {
		vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: lookup})
		if err != nil {
			return nil, err
		}
		if len(vs) == 0 {
			return nil, fmt.Errorf("no DKIM signature")
		}
		for _, v := range vs {
			if v.Err != nil {
				return nil, v.Err
			}
		}
		head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
		var sels []string
		for _, line := range strings.Split(regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(string(head), " "), "\r\n") {
			if m := selRE.FindStringSubmatch(line); m != nil && strings.HasPrefix(strings.ToLower(line), "dkim-signature:") {
				sels = append(sels, m[1])
			}
		}
		slices.Sort(sels)
		return sels, nil
	}
	send := func(subject string) []byte {
		t.Helper()
		swaks := exec.Command("swaks", "--server", fmt.Sprintf("127.0.0.1:%d", v.HostPort(587)), "--tls", "--auth", "PLAIN",
			"--auth-user", "alice@example.org", "--auth-password", alicePW, "--from", "alice@example.org", "--to", "bob@example.org",
			"--header", "Subject: "+subject, "--body", "rotation "+subject, "--timeout", "60")
		if b, err := swaks.CombinedOutput(); err != nil {
			t.Fatalf("swaks: %v\n%s", err, b)
		}
		py := `
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
for _ in range(120):
    m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[2]), ssl_context=ctx, timeout=60)
    m.login("bob@example.org", sys.argv[3])
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", sys.argv[4])
    ids = data[0].split()
    if ids:
        typ, data = m.fetch(ids[0], "(BODY.PEEK[])")
        sys.stdout.buffer.write(data[0][1])
        sys.exit(0)
    m.logout()
    time.sleep(1)
sys.exit("message not delivered")
`
		cmd := exec.Command("python3", "-c", py, cert, fmt.Sprint(v.HostPort(993)), bobPW, subject)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("IMAP fetch of %s: %v\n%s", subject, err, stderr.String())
		}
		return b
	}
	check := func(msg []byte, what string, want []string) {
		t.Helper()
		sels, err := verify(msg)
		if err != nil || !slices.Equal(sels, want) {
			t.Errorf("mail signed %s: selectors %v, error %v; want %v, valid", what, sels, err, want)
		}
	}
	old := []string{"mailctl-ed25519", "mailctl-rsa"}
	before := send("vm-dkim-before")
	check(before, "before the rotation", old)

	out, code := mailctl("dkim", "rotate", "-domain", "example.org")
	m := regexp.MustCompile(`selector (mailctl-\d{8}) for example.org`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("dkim rotate = %d:\n%s", code, out)
	}
	next := []string{m[1] + "-ed25519", m[1] + "-rsa"}
	if out, code := mailctl(append([]string{"apply", "-auto-approve", "-wait=0"}, endpoints...)...); code != 0 || !strings.Contains(out, "signing stays on mailctl") {
		t.Fatalf("apply -wait=0 = %d:\n%s", code, out)
	}
	check(send("vm-dkim-during"), "during the rotation", old)

	out, code = mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...)
	switched := time.Now()
	if code != 0 || !strings.Contains(out, "DNS propagation complete") || !strings.Contains(out, "signing switched from mailctl to "+m[1]) {
		t.Fatalf("apply (switch) = %d:\n%s", code, out)
	}
	after := send("vm-dkim-after")
	check(after, "after the switch", next)
	check(before, "before the rotation, read in the grace period", old)

	time.Sleep(time.Until(switched.Add(grace + time.Second)))
	if out, code := mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...); code != 0 || !strings.Contains(out, "removed the retired selector mailctl") {
		t.Fatalf("apply after the grace period = %d:\n%s", code, out)
	}
	if rrs := knot.Query(t, "mailctl-ed25519._domainkey.example.org", mdns.TypeTXT); len(rrs) != 0 {
		t.Errorf("Knot still serves the removed selector: %v", rrs)
	}
	check(send("vm-dkim-retired"), "after the retirement", next)
	if out, code := mailctl("plan", "-detailed-exitcode"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("plan after the rotation = %d:\n%s", code, out)
	}
}
