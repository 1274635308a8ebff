package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	mdns "github.com/miekg/dns"
)

// labZoneTXT returns a LookupTXT over the lab's zone file as it is now:
// the DNS the lab publishes.
func labZoneTXT(t *testing.T, dir string) func(string) ([]string, error) {
	t.Helper()
	path := filepath.Join(dir, ".mailctl", "zones", "example.test.zone")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	txt := map[string][]string{}
	zp := mdns.NewZoneParser(bytes.NewReader(b), "example.test.", path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if r, isTXT := rr.(*mdns.TXT); isTXT {
			name := strings.ToLower(strings.TrimSuffix(r.Hdr.Name, "."))
			txt[name] = append(txt[name], strings.Join(r.Txt, ""))
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return func(name string) ([]string, error) {
		if v, ok := txt[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
			return v, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
}

var dkimSelectorRE = regexp.MustCompile(`(?i)\bs=([a-z0-9.-]+)`)

// dkimCheck verifies every DKIM signature of msg against the lab's zone
// and returns the sorted selectors of the signatures, and the first
// verification error.
func dkimCheck(t *testing.T, dir string, msg []byte) ([]string, error) {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: labZoneTXT(t, dir)})
	if err != nil {
		t.Fatalf("dkim verify: %v", err)
	}
	if len(vs) == 0 {
		t.Fatalf("the message has no DKIM signature:\n%s", msg)
	}
	var firstErr error
	for _, v := range vs {
		if v.Err != nil && firstErr == nil {
			firstErr = v.Err
		}
	}
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	var sels []string
	for _, line := range strings.Split(regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(string(head), " "), "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), "dkim-signature:") {
			if m := dkimSelectorRE.FindStringSubmatch(line); m != nil {
				sels = append(sels, m[1])
			}
		}
	}
	slices.Sort(sels)
	return sels, firstErr
}

// sendAndFetch submits a message from alice to bob on the lab's
// submission port and returns it as bob's IMAP server serves it.
func sendAndFetch(t *testing.T, dir string, submission, imaps, token string) []byte {
	t.Helper()
	swaks := exec.Command("swaks", "--server", "127.0.0.1:"+submission, "--tls", "--auth", "PLAIN",
		"--auth-user", "alice@example.test", "--auth-password", "lab-alice-password",
		"--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: "+token, "--body", "rotation "+token)
	if b, err := swaks.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, b)
	}
	py := `
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
for _ in range(60):
    m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[2]), ssl_context=ctx)
    m.login("bob@example.test", "lab-bob-password")
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", sys.argv[3])
    ids = data[0].split()
    if ids:
        typ, data = m.fetch(ids[0], "(BODY.PEEK[])")
        sys.stdout.buffer.write(data[0][1])
        sys.exit(0)
    m.logout()
    time.sleep(0.5)
sys.exit("message not delivered")
`
	imap := exec.Command("python3", "-c", py, filepath.Join(dir, ".mailctl", "data", "tls", "self-signed.crt"), imaps, token)
	var stderr bytes.Buffer
	imap.Stderr = &stderr
	b, err := imap.Output()
	if err != nil {
		t.Fatalf("IMAP fetch of %s: %v\n%s", token, err, stderr.String())
	}
	return b
}

// TestDKIMRotationLab rotates the lab's DKIM key with `mailctl dkim
// rotate` and apply, and checks mail signed before, during (both keys
// published, the old one signing), after the switch and after the old
// selector's removal against the zone the lab publishes.
func TestDKIMRotationLab(t *testing.T) {
	bin := buildBinary(t)
	dir := labOnFreePorts(t)
	path := filepath.Join(dir, "mail.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hcl := strings.Replace(string(src), "server = server.lab\n", "server = server.lab\n  dkim {\n    grace_period = \"20s\"\n  }\n", 1)
	if hcl == string(src) {
		t.Fatal("examples/local/mail.hcl: no 'server = server.lab' line in the domain block")
	}
	writeFile(t, path, hcl, 0o644)
	port := func(name string) string {
		m := regexp.MustCompile(`\b` + name + `\s*=\s*(\d+)`).FindStringSubmatch(hcl)
		if m == nil {
			t.Fatalf("no %s port in %s", name, path)
		}
		return m[1]
	}
	submission, imaps := port("submission"), port("imaps")
	t.Cleanup(func() { mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve") })

	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	old := []string{"mailctl-ed25519", "mailctl-rsa"}
	check := func(msg []byte, what string, want []string) {
		t.Helper()
		sels, err := dkimCheck(t, dir, msg)
		if err != nil || !slices.Equal(sels, want) {
			t.Errorf("mail signed %s: selectors %v, verify error %v; want %v, valid", what, sels, err, want)
		}
	}
	before := sendAndFetch(t, dir, submission, imaps, "before-rotation")
	check(before, "before the rotation", old)

	out, code := mailctl(t, bin, "-chdir", dir, "dkim", "rotate", "-domain", "example.test")
	m := regexp.MustCompile(`Generated the keys of selector (mailctl-\d{8}) for example.test`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("dkim rotate = %d:\n%s", code, out)
	}
	next := m[1]
	newSels := []string{next + "-ed25519", next + "-rsa"}
	// A step the server cannot take is one line naming why.
	out, code = mailctl(t, bin, "serve", "dkim", "activate", "example.test", "nope", "-config", filepath.Join(dir, ".mailctl", "server.json"))
	if code != 1 || strings.TrimSpace(out) != "Error: dkim activate example.test: no rotation to selector nope (start one with mailctl dkim rotate)" {
		t.Errorf("serve dkim activate of an unknown selector = %d:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "dkim", "rotate", "-domain", "example.test"); code != 0 || !strings.Contains(out, "under way") {
		t.Errorf("a second dkim rotate = %d, want the rotation under way:\n%s", code, out)
	}
	out, code = mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode")
	if code != 2 || !strings.Contains(out, "~ dkim.example.test") || !strings.Contains(out, "signing switches from mailctl to "+next) ||
		!strings.Contains(out, "+ "+next+"-ed25519._domainkey TXT") {
		t.Fatalf("plan after dkim rotate = %d:\n%s", code, out)
	}

	// -target dkim.DOMAIN plans the rotation with the records it needs,
	// and nothing else of the domain.
	out, code = mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode", "-target", "dkim.example.test")
	if code != 2 || !strings.Contains(out, "~ dkim.example.test") || !strings.Contains(out, "+ "+next+"-ed25519._domainkey TXT") ||
		!strings.Contains(out, "2 to add, 1 to change, 0 to destroy") {
		t.Fatalf("plan -target dkim.example.test = %d:\n%s", code, out)
	}

	// -wait=0 publishes the new key but cannot check its propagation: the
	// old key still signs.
	out, code = mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false", "-wait=0")
	if code != 0 || !strings.Contains(out, "signing stays on mailctl") {
		t.Fatalf("apply -wait=0 = %d:\n%s", code, out)
	}
	during := sendAndFetch(t, dir, submission, imaps, "during-rotation")
	check(during, "during the rotation", old)
	if zone, _ := os.ReadFile(filepath.Join(dir, ".mailctl", "zones", "example.test.zone")); !strings.Contains(string(zone), next+"-ed25519._domainkey") {
		t.Fatalf("the new selector is not published:\n%s", zone)
	}

	out, code = mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false")
	switched := time.Now()
	if code != 0 || !strings.Contains(out, "signing switched from mailctl to "+next) {
		t.Fatalf("apply (switch) = %d:\n%s", code, out)
	}
	after := sendAndFetch(t, dir, submission, imaps, "after-switch")
	check(after, "after the switch", newSels)
	check(before, "before the rotation, read during the grace period", old)
	out, code = mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode")
	if code != 0 || !strings.Contains(out, "deleted after the grace period") {
		t.Errorf("plan during the grace period = %d, want no changes and the removal date:\n%s", code, out)
	}

	time.Sleep(time.Until(switched.Add(21 * time.Second))) // grace_period = "20s"
	out, code = mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false")
	if code != 0 || !strings.Contains(out, "removed the retired selector mailctl") || !strings.Contains(out, "- mailctl-ed25519._domainkey TXT") {
		t.Fatalf("apply after the grace period = %d:\n%s", code, out)
	}
	if zone, _ := os.ReadFile(filepath.Join(dir, ".mailctl", "zones", "example.test.zone")); strings.Contains(string(zone), "mailctl-ed25519._domainkey") {
		t.Errorf("the retired selector is still published:\n%s", zone)
	}
	retired := sendAndFetch(t, dir, submission, imaps, "after-retirement")
	check(retired, "after the retirement", newSels)
	if _, err := dkimCheck(t, dir, before); err == nil {
		t.Errorf("mail signed with the removed key still verifies: the old selector was not unpublished")
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("plan after the rotation = %d:\n%s", code, out)
	}
	if out, code := mailctl(t, bin, "-chdir", dir, "verify"); code != 0 {
		t.Errorf("verify after the rotation = %d:\n%s", code, out)
	}
}

// TestDKIMRotateEveryLab: with dkim { rotate_every = "1d" } and a signing
// key two days old, plan shows the rotation's steps with the new records
// known after apply, and one apply generates the key on the server,
// publishes it and switches signing.
func TestDKIMRotateEveryLab(t *testing.T) {
	bin := buildBinary(t)
	dir := labOnFreePorts(t)
	path := filepath.Join(dir, "mail.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hcl := string(src)
	submission := regexp.MustCompile(`\bsubmission\s*=\s*(\d+)`).FindStringSubmatch(hcl)[1]
	imaps := regexp.MustCompile(`\bimaps\s*=\s*(\d+)`).FindStringSubmatch(hcl)[1]
	t.Cleanup(func() { mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve") })
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}

	// The key was generated two days ago: its file says so, and the
	// server reads it again on the reload that a new alias causes.
	old := time.Now().Add(-48 * time.Hour)
	for _, f := range []string{"mailctl-ed25519.pem", "mailctl-rsa.pem"} {
		if err := os.Chtimes(filepath.Join(dir, ".mailctl", "data", "dkim", "example.test", f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	hcl = strings.Replace(hcl, "server = server.lab\n", "server = server.lab\n  dkim {\n    rotate_every = \"1d\"\n  }\n", 1) +
		"\nalias \"hostmaster@example.test\" {\n  to = [\"alice@example.test\"]\n}\n"
	writeFile(t, path, hcl, 0o644)
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false"); code != 0 {
		t.Fatalf("apply (reload) = %d:\n%s", code, out)
	}

	next := "mailctl-" + time.Now().UTC().Format("20060102")
	out, code := mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode")
	if code != 2 || !strings.Contains(out, "longer than rotate_every = 1d: generate the keys of selector "+next) ||
		!strings.Contains(out, "+ "+next+"-rsa._domainkey TXT") || !strings.Contains(out, "(known after apply) (from server.lab)") {
		t.Fatalf("plan with rotate_every due = %d:\n%s", code, out)
	}
	out, code = mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false")
	if code != 0 || !strings.Contains(out, "generated the keys of selector "+next) || !strings.Contains(out, "signing switched from mailctl to "+next) {
		t.Fatalf("apply of the rotation = %d:\n%s", code, out)
	}
	msg := sendAndFetch(t, dir, submission, imaps, "rotated-by-policy")
	if sels, err := dkimCheck(t, dir, msg); err != nil || !slices.Equal(sels, []string{next + "-ed25519", next + "-rsa"}) {
		t.Errorf("mail after the rotation: selectors %v, error %v", sels, err)
	}
	out, code = mailctl(t, bin, "-chdir", dir, "plan", "-detailed-exitcode")
	if code != 0 || !strings.Contains(out, "the next rotation is due on") {
		t.Errorf("plan after the rotation = %d, want no changes and the next due date:\n%s", code, out)
	}

	// destroy deletes the records of every selector, the rotated ones too.
	if out, code := mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve"); code != 0 {
		t.Fatalf("destroy = %d:\n%s", code, out)
	}
	if zone, _ := os.ReadFile(filepath.Join(dir, ".mailctl", "zones", "example.test.zone")); strings.Contains(string(zone), "_domainkey") {
		t.Errorf("DKIM records left after destroy:\n%s", zone)
	}
}
