package queue_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/queue"
)

const (
	relayUser = "relayuser@relay.test"
	relayPass = "relay-secret-1"
)

// startPostfix runs a private Postfix instance (Debian packages postfix,
// sasl2-bin, libsasl2-modules) as a smarthost on 127.0.0.1: STARTTLS with
// the test certificate, AUTH PLAIN/LOGIN only over TLS (Cyrus SASL with a
// sasldb holding relayUser), relaying authenticated mail to relayhost.
// It uses its own configuration, queue and data directories and runs in
// the foreground (postfix start-fg) as a child of the test.
func startPostfix(t *testing.T, relayhost string) (addr string) {
	t.Helper()
	for _, bin := range []string{"/usr/sbin/postfix", "/usr/sbin/saslpasswd2"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s missing: install the Debian packages postfix sasl2-bin libsasl2-modules", bin)
		}
	}
	dir, err := os.MkdirTemp("", "mailctl-postfix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, d := range []string{"etc/sasl", "queue", "data", "sasl"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	chownPostfix := func(path string) {
		out, err := exec.Command("chown", "postfix", path).CombinedOutput()
		if err != nil {
			t.Fatalf("chown postfix %s: %v: %s", path, err, out)
		}
	}
	chownPostfix(filepath.Join(dir, "data"))
	// Certificate and key.
	srv, _ := serverTLS()
	cert := srv.Certificates[0]
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	must(err)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	must(os.WriteFile(filepath.Join(dir, "etc", "cert.pem"), certPEM, 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc", "key.pem"), keyPEM, 0o600))
	// SASL: a sasldb readable by the smtpd processes (user postfix).
	sasldb := filepath.Join(dir, "sasl", "sasldb2")
	cmd := exec.Command("/usr/sbin/saslpasswd2", "-f", sasldb, "-p", "-c", "-u", "relay.test", "relayuser")
	cmd.Stdin = strings.NewReader(relayPass)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("saslpasswd2: %v: %s", err, out)
	}
	chownPostfix(sasldb)
	// Debian's Postfix reads <config_directory>/sasl/smtpd.conf.
	must(os.WriteFile(filepath.Join(dir, "etc", "sasl", "smtpd.conf"), []byte(
		"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: "+sasldb+"\n"), 0o644))

	// A port below the kernel's ephemeral range (32768-60999 on Linux):
	// a port from Listen(":0") that is closed again for Postfix to bind
	// can be handed to another test's listener in between, and Postfix
	// then fails to bind while the test talks to that other server.
	for i := 0; ; i++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		if err == nil {
			addr = l.Addr().String()
			l.Close()
			break
		}
		if i > 50 {
			t.Fatalf("no free port for Postfix: %v", err)
		}
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.test
mydestination =
mynetworks =
relayhost = %[2]s
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
smtpd_tls_cert_file = %[1]s/etc/cert.pem
smtpd_tls_key_file = %[1]s/etc/key.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = %[1]s/etc/sasl
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtp_tls_security_level = may
smtp_address_preference = ipv4
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
`, dir, relayhost)
	must(os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(main), 0o644))
	master := addr + ` inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
	must(os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(master), 0o644))
	etc := filepath.Join(dir, "etc")
	if out, err := exec.Command("/usr/sbin/postfix", "-c", etc, "check").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
		t.Fatalf("postfix check: %v: %s\n%s", err, out, log)
	}
	pf := exec.Command("/usr/sbin/postfix", "-c", etc, "start-fg")
	pf.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var out strings.Builder
	pf.Stdout, pf.Stderr = &out, &out
	if err := pf.Start(); err != nil {
		t.Fatalf("postfix start-fg: %v", err)
	}
	t.Cleanup(func() {
		exec.Command("/usr/sbin/postfix", "-c", etc, "stop").Run()
		done := make(chan struct{})
		go func() { pf.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pf.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
			t.Logf("postfix output: %s\nlog:\n%s", out.String(), log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			// Postfix's banner, not another server's.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			banner, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if !strings.HasPrefix(banner, "220 relay.test") {
				log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
				t.Fatalf("%s answers %q, not Postfix: %s\n%s", addr, banner, out.String(), log)
			}
			return addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
			t.Fatalf("postfix does not listen on %s: %s\n%s", addr, out.String(), log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRelayPostfix sends through a real Postfix smarthost with AUTH PLAIN
// over STARTTLS: all mail, then only destinations whose MX matches a
// pattern, then warm-up overflow; a wrong password keeps the message
// queued without a bounce.
func TestRelayPostfix(t *testing.T) {
	_, pool := serverTLS()
	relay := queue.Relay{Username: relayUser, Password: relayPass,
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "relay.test"}}
	_, a, b := pair(t, nil, func(o *queue.Options) {
		o.Warmup = queue.Warmup{Weeks: 6, OverflowRelay: true}
	})
	relay.Address = startPostfix(t, fmt.Sprintf("[127.0.0.2]:%d", b.port))
	set := func(change func(r *queue.Relay)) {
		r := relay
		change(&r)
		a.queue.SetRelay(&r)
	}
	set(func(*queue.Relay) {})
	viaRelay := func(m string) bool {
		for _, r := range header(m, "Received") {
			if strings.Contains(r, "by relay.test") && strings.Contains(r, "ESMTPSA") {
				return true
			}
		}
		return false
	}
	count := 0
	t.Run("all mail", func(t *testing.T) {
		enqueue(t, a, "alice@a.test", "bob@b.test")
		count++
		got := b.waitMessages(t, "bob@b.test", "INBOX", count, 30*time.Second)
		if !viaRelay(got[count-1]) {
			t.Errorf("not relayed with TLS and AUTH:\n%s", got[count-1])
		}
		if n := len(header(got[count-1], "DKIM-Signature")); n != 2 {
			t.Errorf("%d DKIM signatures after the relay, want 2", n)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		set(func(r *queue.Relay) { r.Password = "wrong" })
		enqueue(t, a, "alice@a.test", "bob@b.test")
		list := waitAttempts(t, a, 1)
		if r := list[0].Rcpts[0]; r.State != queue.StatePending || !strings.HasPrefix(r.Diagnostic, "535") {
			t.Fatalf("recipient = %+v, want deferred after 535", r)
		}
		set(func(*queue.Relay) {})
		a.queue.Retry(t.Context(), "")
		count++
		b.waitMessages(t, "bob@b.test", "INBOX", count, 30*time.Second)
		waitQueueEmpty(t, a)
	})
	t.Run("MX pattern", func(t *testing.T) {
		set(func(r *queue.Relay) { r.MXHosts = []string{"*.elsewhere.test"} })
		enqueue(t, a, "alice@a.test", "bob@b.test")
		count++
		got := b.waitMessages(t, "bob@b.test", "INBOX", count, 30*time.Second)
		if viaRelay(got[count-1]) {
			t.Errorf("relayed although the MX does not match")
		}
		set(func(r *queue.Relay) { r.MXHosts = []string{"*.b.test"} })
		enqueue(t, a, "alice@a.test", "bob@b.test")
		count++
		got = b.waitMessages(t, "bob@b.test", "INBOX", count, 30*time.Second)
		if !viaRelay(got[count-1]) {
			t.Errorf("not relayed although the MX matches")
		}
	})
	t.Run("warm-up overflow", func(t *testing.T) {
		set(func(r *queue.Relay) { r.MXHosts = []string{"none.test"} }) // direct, under the warm-up cap
		sent, _, _ := a.queue.WarmupStatus(a.clock.Now())
		n := queue.WarmupFirstCap - sent + 2
		for i := 0; i < n; i++ {
			enqueue(t, a, "alice@a.test", "bob@b.test")
		}
		count += n
		got := b.waitMessages(t, "bob@b.test", "INBOX", count, 60*time.Second)
		relayed := 0
		for _, m := range got[count-n:] {
			if viaRelay(m) {
				relayed++
			}
		}
		if relayed != 2 {
			t.Errorf("%d of %d relayed, want the 2 over the cap", relayed, n)
		}
	})
}
