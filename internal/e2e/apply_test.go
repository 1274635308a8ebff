package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/remote"
	"github.com/mailctl/mailctl/server/auth"
)

// TestApplyToVPS is the whole first path on a real Debian server: HCL ->
// plan -> apply (deploy over SSH under systemd, DKIM keys generated on the
// server and published with the other records in a real Knot via RFC 2136)
// -> mail in over SMTP, out over IMAP -> a second apply changes and
// restarts nothing -> a new user is added by a reload, not a restart ->
// backup, destroy -purge-data, apply, restore: the mail is back -> an
// incremental backup -> a DKIM rotation (vmRotation).
func TestApplyToVPS(t *testing.T) {
	v := sharedVPS(t)
	c := dialVPS(t)
	// Leave the shared VM as it was, whatever happens.
	t.Cleanup(func() { remote.Destroy(context.Background(), c, true) })
	knot := testenv.StartKnot(t, "example.org")

	bin := filepath.Join(t.TempDir(), "mailctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/mailctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	hash := func(pw string) string {
		h, err := auth.HashPassword(pw, auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`
provider "rfc2136" "knot" {
  server    = %q
  tsig_name = %q
  tsig_key  = env("TSIG_SECRET")
}
server "vm" {
  hostname = "mail.example.org"
  ipv4     = "192.0.2.25"
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
}
user "alice@example.org" {
  password_hash = %q
}
alias "postmaster@example.org" {
  to = ["alice@example.org"]
}
`, knot.Addr, knot.TSIGName, v.Addr, v.HostKey, v.KeyFile, hash("alice-pw"))
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	mailctl := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := vmContext(t, 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-chdir", dir}, args...)...)
		cmd.Env = append(os.Environ(), "NO_COLOR=1", "TSIG_SECRET="+knot.TSIGSecret)
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

	out, code := mailctl("plan", "-detailed-exitcode")
	if code != 2 || !strings.Contains(out, "# server.vm will be created") || !strings.Contains(out, "# user.alice@example.org will be created") ||
		!strings.Contains(out, "(known after apply) (from server.vm)") {
		t.Fatalf("first plan = %d:\n%s", code, out)
	}

	// apply waits until the zone's name server, ns1.example.org (found
	// through Knot itself), serves the new records: it is dialled at Knot.
	// The deploy path; TestApplyVerifyVPS is the one that ends with verify.
	endpoints := []string{"-resolver", knot.Addr, "-connect", "ns1.example.org:53=" + knot.Addr, "-verify=false"}
	t0 := time.Now()
	out, code = mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...)
	applyTime := time.Since(t0)
	if code != 0 || !strings.Contains(out, "Apply complete!") || !strings.Contains(out, "DNS propagation complete: 1/1 name servers serve the new records") {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	t.Logf("first apply on a fresh VM: %.1fs (DNS is a local Knot: the propagation wait ends at the first poll)", applyTime.Seconds())

	// Knot serves the MX and the DKIM key generated on the VM.
	if rrs := knot.Query(t, "example.org", mdns.TypeMX); len(rrs) != 1 || !strings.Contains(rrs[0].String(), "mail.example.org.") {
		t.Errorf("MX = %v", rrs)
	}
	dkimTXT := knot.Query(t, "mailctl-ed25519._domainkey.example.org", mdns.TypeTXT)
	if len(dkimTXT) != 1 || !strings.Contains(dkimTXT[0].String(), "k=ed25519; p=") {
		t.Errorf("DKIM TXT = %v", dkimTXT)
	}
	keyFile := run(t, c, "ls /var/lib/mailctl/dkim/example.org/")
	if !strings.Contains(keyFile, "mailctl-ed25519.pem") {
		t.Errorf("DKIM keys on the server: %q", keyFile)
	}

	// Mail in over port 25, read back over IMAPS.
	token := "vm-" + time.Now().Format("150405.000000")
	swaks := exec.Command("swaks", "--server", fmt.Sprintf("127.0.0.1:%d", v.HostPort(25)), "--from", "someone@example.net",
		"--to", "postmaster@example.org", "--header", "Subject: "+token, "--body", "hello vm", "--timeout", "60")
	if b, err := swaks.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, b)
	}
	cert := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(cert, []byte(run(t, c, "cat /var/lib/mailctl/tls/self-signed.crt")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	imapFind := func(user, pw, subject string) error {
		py := `
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False  # 127.0.0.1 is a port forward; the chain is verified
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[2]), ssl_context=ctx, timeout=60)
m.login(sys.argv[3], sys.argv[4])
m.select("INBOX")
typ, data = m.search(None, "SUBJECT", sys.argv[5])
n = len(data[0].split())
print("found", n)
sys.exit(0 if n == 1 or sys.argv[5] == "-" else 3)
`
		b, err := exec.Command("python3", "-c", py, cert, fmt.Sprint(v.HostPort(993)), user, pw, subject).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	}
	if err := imapFind("alice@example.org", "alice-pw", token); err != nil {
		t.Fatalf("IMAP read: %v", err)
	}

	started := show(t, c, "ActiveEnterTimestamp", "MainPID")
	out, code = mailctl("plan", "-detailed-exitcode")
	if code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("plan after apply = %d:\n%s", code, out)
	}
	t0 = time.Now()
	if out, code = mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("second apply = %d:\n%s", code, out)
	}
	t.Logf("no-op apply: %.1fs", time.Since(t0).Seconds())
	if now := show(t, c, "ActiveEnterTimestamp", "MainPID"); now["MainPID"] != started["MainPID"] {
		t.Errorf("second apply restarted the service: %v -> %v", started, now)
	}

	// A new user: a configuration reload, no restart.
	more := conf + fmt.Sprintf("user \"bob@example.org\" {\n  password_hash = %q\n}\n", hash("bob-pw"))
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(more), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = mailctl("plan", "-detailed-exitcode")
	if code != 2 || !strings.Contains(out, "# user.bob@example.org will be created") || !strings.Contains(out, "(reload)") {
		t.Errorf("plan with a new user = %d:\n%s", code, out)
	}
	if out, code = mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...); code != 0 || !strings.Contains(out, "reload") {
		t.Fatalf("apply with a new user = %d:\n%s", code, out)
	}
	if now := show(t, c, "MainPID"); now["MainPID"] != started["MainPID"] {
		t.Errorf("adding a user restarted the service (pid %s -> %s)", started["MainPID"], now["MainPID"])
	}
	if err := imapFind("bob@example.org", "bob-pw", "-"); err != nil {
		t.Errorf("bob cannot log in after the reload: %v", err)
	}

	// Backup and restore over SSH: the mail survives destroy -purge-data
	// and a fresh apply; an incremental backup follows.
	t0 = time.Now()
	if out, code = mailctl("backup", "-out", "bk"); code != 0 {
		t.Fatalf("backup = %d:\n%s", code, out)
	}
	t.Logf("backup over SSH: %.1fs: %s", time.Since(t0).Seconds(), strings.TrimSpace(out))
	files, _ := filepath.Glob(filepath.Join(dir, "bk", "vm-*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("backup files: %v", files)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v %v", fi, err)
	}
	if out, code = mailctl("destroy", "-auto-approve", "-purge-data"); code != 0 {
		t.Fatalf("destroy -purge-data = %d:\n%s", code, out)
	}
	if out, code = mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...); code != 0 {
		t.Fatalf("apply after destroy -purge-data = %d:\n%s", code, out)
	}
	if err := imapFind("alice@example.org", "alice-pw", token); err == nil {
		t.Fatalf("the message is still there after destroy -purge-data")
	}
	t0 = time.Now()
	if out, code = mailctl("restore", files[0]); code != 0 || !strings.Contains(out, "restored and running") {
		t.Fatalf("restore = %d:\n%s", code, out)
	}
	t.Logf("restore over SSH: %.1fs", time.Since(t0).Seconds())
	if err := imapFind("alice@example.org", "alice-pw", token); err != nil {
		t.Errorf("after restore: %v", err)
	}
	if owner := run(t, c, "stat -c %U:%a /var/lib/mailctl/store/index.db"); owner != "mailctl:600" {
		t.Errorf("restored index: %s", owner)
	}
	if left := run(t, c, "ls -a /var/lib/mailctl | grep -c restore || true"); left != "0" {
		t.Errorf("restore left files in the data directory: %s", run(t, c, "ls -a /var/lib/mailctl"))
	}
	// The restored DKIM keys are published again.
	if out, code = mailctl(append([]string{"apply", "-auto-approve"}, endpoints...)...); code != 0 {
		t.Fatalf("apply after restore = %d:\n%s", code, out)
	}
	time.Sleep(1100 * time.Millisecond) // backups are named by the second
	if out, code = mailctl("backup", "-out", "bk", "-incremental"); code != 0 || !strings.Contains(out, "incremental backup on vm-") {
		t.Errorf("backup -incremental = %d:\n%s", code, out)
	}

	// A DKIM rotation, with a grace period short enough to wait for.
	rot := strings.Replace(more, "  server = server.vm\n", "  server = server.vm\n  dkim {\n    grace_period = \"30s\"\n  }\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(rot), 0o644); err != nil {
		t.Fatal(err)
	}
	vmRotation(t, v, knot, cert, "bob-pw", "alice-pw", 30*time.Second, mailctl, endpoints)

	if out, code = mailctl("destroy", "-auto-approve"); code != 0 {
		t.Errorf("destroy = %d:\n%s", code, out)
	}
	if st := run(t, c, "systemctl is-active mailctl || true"); st == "active" {
		t.Errorf("service still active after destroy")
	}
}
