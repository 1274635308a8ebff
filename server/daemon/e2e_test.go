package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/miekg/dns"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/web"
)

// mailctlBin is the binary built once by TestMain.
var mailctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailctl-daemon-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mailctlBin = filepath.Join(dir, "mailctl")
	build := exec.Command("go", "build", "-o", mailctlBin, "github.com/mailctl/mailctl/cmd/mailctl")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build mailctl:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cheap argon2id parameters: the tests verify many logins.
var testParams = auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPassword(pw, testParams)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func baseConfig(t *testing.T, dataDir string) *config.Config {
	t.Helper()
	return &config.Config{
		FormatVersion: config.FormatVersion,
		Hostname:      "mail.example.test",
		DataDir:       dataDir,
		Listen: config.Listen{
			SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0",
			IMAP: "127.0.0.1:0", IMAPS: "127.0.0.1:0", HTTPS: "127.0.0.1:0", HTTP: "127.0.0.1:0",
		},
		TLS:     config.TLS{Mode: "self-signed"},
		Domains: []config.Domain{{Name: "example.test", MTASTSMode: "testing"}},
		// Every DNS question of the inbound checks and the queue goes to a
		// loopback server that knows nothing; no DNSBL.
		Outbound: &config.Outbound{DNSServers: []string{nxDNS(t)}},
		Inbound:  &config.Inbound{DNSBLZones: []string{}},
		Users: []config.User{
			{Address: "alice@example.test", PasswordHash: hash(t, "alice-pw")},
		},
		LogLevel: "debug",
	}
}

// nxDNS runs a DNS server on loopback (UDP and TCP, one port) that
// answers NXDOMAIN to everything, and returns its address.
func nxDNS(t *testing.T) string {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: tcp, Handler: handler}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return tcp.Addr().String()
}

func writeConfig(t *testing.T, path string, cfg *config.Config) {
	t.Helper()
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// server is a running `mailctl serve` process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	cfgPath string
	socket  string
	logPath string
	done    chan error
	status  *daemon.Status
}

func startServer(t *testing.T, cfgPath string) *server {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(t.TempDir(), "server-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mailctlBin, "serve", "-config", cfgPath)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, cfgPath: cfgPath, socket: cfg.Control, logPath: logf.Name(), done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("server log (tail):\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-s.done:
			b, _ := os.ReadFile(s.logPath)
			t.Fatalf("server exited during start: %v\n%s", err, b)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := daemon.QueryStatus(ctx, s.socket)
		cancel()
		if err == nil {
			s.status = st
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) addr(name string) string {
	a, ok := s.status.Listeners[name]
	if !ok {
		s.t.Fatalf("no %s listener in status %v", name, s.status.Listeners)
	}
	return a
}

func (s *server) signal(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its error.
func (s *server) wait(timeout time.Duration) error {
	s.t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(timeout):
		s.t.Fatalf("server did not exit within %v", timeout)
		return nil
	}
}

// roots trusts the server's self-signed certificate.
func roots(t *testing.T, dataDir string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "tls", "self-signed.crt"))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("self-signed.crt holds no certificate")
	}
	return p
}

func swaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "swaks", append([]string{"--timeout", "20"}, args...)...).CombinedOutput()
	return string(out), err
}

// idleClient is an IMAP client in IDLE on INBOX that reports EXISTS.
type idleClient struct {
	c      *imapclient.Client
	idle   *imapclient.IdleCommand
	exists chan uint32
}

func dialIMAPS(t *testing.T, addr string, pool *x509.CertPool, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(addr, &imapclient.Options{
		TLSConfig:             &tls.Config{ServerName: "mail.example.test", RootCAs: pool},
		UnilateralDataHandler: h,
	})
	if err != nil {
		t.Fatalf("dial imaps %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startIdle(t *testing.T, addr string, pool *x509.CertPool, user, pw string) *idleClient {
	t.Helper()
	ic := &idleClient{exists: make(chan uint32, 100)}
	ic.c = dialIMAPS(t, addr, pool, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				ic.exists <- *d.NumMessages
			}
		},
	})
	if err := ic.c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	if _, err := ic.c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select: %v", err)
	}
	var err error
	if ic.idle, err = ic.c.Idle(); err != nil {
		t.Fatalf("idle: %v", err)
	}
	return ic
}

// waitExists waits for an EXISTS of at least n.
func (ic *idleClient) waitExists(t *testing.T, n uint32, within time.Duration) time.Time {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case got := <-ic.exists:
			if got >= n {
				return time.Now()
			}
		case <-timer.C:
			t.Fatalf("IDLE saw no EXISTS %d within %v", n, within)
		}
	}
}

// fetchBodies returns every message of mailbox, whole.
func fetchBodies(t *testing.T, addr string, pool *x509.CertPool, user, pw, mailbox string) [][]byte {
	t.Helper()
	c := dialIMAPS(t, addr, pool, nil)
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var out [][]byte
	for _, m := range msgs {
		if len(m.BodySection) != 1 {
			t.Fatalf("message %d: %d body sections", m.SeqNum, len(m.BodySection))
		}
		out = append(out, m.BodySection[0].Bytes)
	}
	c.Logout().Wait()
	return out
}

// TestServe runs the real binary: swaks delivers over 25 and 587, an IMAP
// client in IDLE sees each message within a second, SIGHUP adds a user
// without dropping that connection, status is read back, SIGTERM stops it.
func TestServe(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is required (apt-get install swaks)")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.Domains[0].DKIMSelectors = []string{"mx1"}
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	pool := roots(t, cfg.DataDir)

	alice := startIdle(t, srv.addr("imaps"), pool, "alice@example.test", "alice-pw")

	t.Run("MX on 25", func(t *testing.T) {
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "alice@example.test", "--header", "Subject: over 25", "--body", "token-mx-25")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		sent := time.Now()
		if seen := alice.waitExists(t, 1, 5*time.Second); seen.Sub(sent) > time.Second {
			t.Errorf("IDLE saw the message %v after the 250, want within 1s", seen.Sub(sent))
		}
	})
	t.Run("submission on 587", func(t *testing.T) {
		out, err := swaks(t, "--server", srv.addr("submission"), "--tls", "--auth", "PLAIN",
			"--auth-user", "alice@example.test", "--auth-password", "alice-pw",
			"--from", "alice@example.test", "--to", "alice@example.test",
			"--header", "Subject: over 587", "--body", "token-sub-587")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		sent := time.Now()
		if seen := alice.waitExists(t, 2, 5*time.Second); seen.Sub(sent) > time.Second {
			t.Errorf("IDLE saw the message %v after the 250, want within 1s", seen.Sub(sent))
		}
	})
	t.Run("unknown user refused before reload", func(t *testing.T) {
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "bob@example.test", "--body", "nope")
		if err == nil || !strings.Contains(out, "550") {
			t.Fatalf("delivery to bob before he exists: err %v, want a 550\n%s", err, out)
		}
	})

	t.Run("SIGHUP adds a user", func(t *testing.T) {
		cfg.Users = append(cfg.Users, config.User{Address: "bob@example.test", PasswordHash: hash(t, "bob-pw")})
		cfg.Limits.MaxRecipients = 50 // applies only at restart: reported
		writeConfig(t, cfgPath, cfg)
		srv.signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := daemon.QueryStatus(context.Background(), srv.socket)
			if err != nil {
				t.Fatal(err)
			}
			if st.LastReload != nil {
				if !st.LastReload.OK {
					t.Fatalf("reload failed: %s", st.LastReload.Error)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no reload reported within 10s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		out, err := swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "bob@example.test", "--header", "Subject: for bob", "--body", "token-bob")
		if err != nil {
			t.Fatalf("swaks to bob after reload: %v\n%s", err, out)
		}
		bodies := fetchBodies(t, srv.addr("imaps"), pool, "bob@example.test", "bob-pw", "INBOX")
		if len(bodies) != 1 || !bytes.Contains(bodies[0], []byte("token-bob")) {
			t.Fatalf("bob's INBOX = %d messages, want the one for him", len(bodies))
		}
		// The MX ran the inbound checks (SPF, DKIM, DMARC).
		if !bytes.Contains(bodies[0], []byte("Authentication-Results: mail.example.test")) {
			t.Errorf("message received on 25 has no Authentication-Results header:\n%.600s", bodies[0])
		}
		// Alice's IDLE connection survived the reload: it still sees mail.
		out, err = swaks(t, "--server", srv.addr("smtp"), "--from", "someone@elsewhere.test",
			"--to", "alice@example.test", "--body", "token-after-reload")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		alice.waitExists(t, 3, 5*time.Second)
	})

	t.Run("status", func(t *testing.T) {
		out, err := exec.Command(mailctlBin, "serve", "status", "-json", "-config", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("serve status: %v\n%s", err, out)
		}
		var st daemon.Status
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		loaded, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.RestartNeeded) != 1 || st.RestartNeeded[0] != "limits" {
			t.Errorf("restart_needed = %v, want [limits]", st.RestartNeeded)
		}
		if st.ConfigDigest != loaded.Digest() {
			t.Errorf("config_digest = %s, want %s", st.ConfigDigest, loaded.Digest())
		}
		if len(st.Users) != 2 || st.Users[0].Address != "alice@example.test" || st.Users[0].Messages != 3 ||
			st.Users[1].Address != "bob@example.test" || st.Users[1].Messages != 1 {
			t.Errorf("users = %+v, want alice with 3 messages and bob with 1", st.Users)
		}
		if len(st.Certificates) != 1 || !st.Certificates[0].SelfSigned || st.Certificates[0].Names[0] != "mail.example.test" ||
			st.Certificates[0].NotAfter.Before(time.Now().Add(24*time.Hour)) {
			t.Errorf("certificates = %+v", st.Certificates)
		}
		if st.DKIM == nil || st.QueueMessages != 0 || st.StoreBytes <= 0 || st.TLSMode != "self-signed" {
			t.Errorf("status = %+v", st)
		}
		algs := map[string]bool{}
		for _, k := range st.DKIM {
			if k.Domain != "example.test" || !strings.HasPrefix(k.Selector, "mx1") || !strings.HasPrefix(k.Record, "v=DKIM1;") || k.PublicKey == "" {
				t.Errorf("dkim key %+v", k)
			}
			algs[k.Algorithm] = true
		}
		if len(st.DKIM) != 2 || len(algs) != 2 {
			t.Errorf("dkim keys = %+v, want an ed25519 and an rsa key for selector mx1", st.DKIM)
		}
		human, err := exec.Command(mailctlBin, "serve", "status", "-socket", srv.socket).CombinedOutput()
		if err != nil || !strings.Contains(string(human), "bob@example.test") || !strings.Contains(string(human), "self-signed") {
			t.Errorf("human status (err %v):\n%s", err, human)
		}
	})

	t.Run("control socket and https endpoints", func(t *testing.T) {
		fi, err := os.Stat(srv.socket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
			t.Errorf("control socket mode = %v, want a 0600 socket", fi.Mode())
		}
		unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", srv.socket)
		}}}
		if resp, err := unix.Get("http://mailctl/debug/pprof/goroutine?debug=1"); err != nil || resp.StatusCode != 200 {
			t.Errorf("pprof on the control socket: %v", err)
		} else {
			resp.Body.Close()
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "mta-sts.example.test"}}}
		get := func(host, path string) string {
			t.Helper()
			req, _ := http.NewRequest("GET", "https://"+srv.addr("https")+path, nil)
			req.Host = host
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s%s: %v", host, path, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s%s: %s", host, path, resp.Status)
			}
			return string(b)
		}
		policy, _ := web.MTASTSPolicy("mail.example.test", cfg.Domains[0])
		if got := get("mta-sts.example.test", "/.well-known/mta-sts.txt"); got != policy {
			t.Errorf("MTA-STS policy = %q, want %q", got, policy)
		}
		metrics := get("mail.example.test", "/metrics")
		for _, want := range []string{`mailctl_deliveries_total{result="delivered"} 4`, `mailctl_connections_total{service="smtp"}`,
			`mailctl_connections_total{service="imaps"}`, "mailctl_store_bytes "} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})

	t.Run("failed reload keeps the old config", func(t *testing.T) {
		if err := os.WriteFile(cfgPath, []byte(`{"format_version": 1, "hostname": ""}`), 0o600); err != nil {
			t.Fatal(err)
		}
		srv.signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := daemon.QueryStatus(context.Background(), srv.socket)
			if err != nil {
				t.Fatal(err)
			}
			if st.LastReload != nil && !st.LastReload.OK {
				if len(st.Users) != 2 {
					t.Errorf("after a failed reload users = %+v, want the previous two", st.Users)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("failed reload not reported within 10s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if bodies := fetchBodies(t, srv.addr("imaps"), pool, "bob@example.test", "bob-pw", "INBOX"); len(bodies) != 1 {
			t.Errorf("bob has %d messages after a failed reload, want 1", len(bodies))
		}
	})

	t.Run("remote recipient goes through the queue", func(t *testing.T) {
		// The loopback DNS knows no remote.test: the queue bounces the
		// message to its sender with a DSN.
		out, err := swaks(t, "--server", srv.addr("submission"), "--tls", "--auth", "PLAIN",
			"--auth-user", "bob@example.test", "--auth-password", "bob-pw",
			"--from", "bob@example.test", "--to", "someone@remote.test",
			"--header", "Subject: to the world", "--body", "token-remote")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			bodies := fetchBodies(t, srv.addr("imaps"), pool, "bob@example.test", "bob-pw", "INBOX")
			if len(bodies) == 2 {
				if !bytes.Contains(bodies[1], []byte("someone@remote.test")) || !bytes.Contains(bodies[1], []byte("multipart/report")) {
					t.Errorf("second message of bob is not a DSN about someone@remote.test:\n%.800s", bodies[1])
				}
				break
			}
			if time.Now().After(deadline) {
				st, _ := daemon.QueryStatus(context.Background(), srv.socket)
				t.Fatalf("no bounce within 30s (queue holds %d)", st.QueueMessages)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	alice.idle.Close()
	srv.signal(syscall.SIGTERM)
	if err := srv.wait(40 * time.Second); err != nil {
		t.Errorf("server exit after SIGTERM: %v, want 0", err)
	}
	if _, err := os.Stat(srv.socket); !os.IsNotExist(err) {
		t.Errorf("control socket left behind after shutdown (stat err %v)", err)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.Hostname = ""
	cfg.Users = append(cfg.Users, config.User{Address: "carol@nowhere.test", PasswordHash: "plain"})
	writeConfig(t, cfgPath, cfg)
	out, err := exec.Command(mailctlBin, "serve", "-config", cfgPath).CombinedOutput()
	if err == nil {
		t.Fatalf("serve with a bad config succeeded:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 3 {
		t.Errorf("want one line per problem (hostname, domain, hash), got:\n%s", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "Error: "+cfgPath+": ") {
			t.Errorf("line %q does not start with Error: %s:", l, cfgPath)
		}
	}
	if strings.Contains(string(out), "goroutine") || strings.Contains(string(out), `"level"`) {
		t.Errorf("output has a stack trace or log lines:\n%s", out)
	}
}

// TestDurabilityKill streams deliveries from several SMTP clients, kills
// the server with SIGKILL in the middle, restarts it, and checks that every
// message that got a 250 is in the mailbox, byte for byte.
func TestDurabilityKill(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.LogLevel = "info"
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	smtpAddr := srv.addr("smtp")

	const clients = 4
	type acked struct {
		token string
		body  []byte
	}
	ackCh := make(chan acked, 10000)
	stop := make(chan struct{})
	doneCh := make(chan int, clients)
	for c := 0; c < clients; c++ {
		go func() {
			failures := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					doneCh <- failures
					return
				default:
				}
				token := fmt.Sprintf("tok-%d-%d-%d", c, i, time.Now().UnixNano())
				body := messageFor(token, c, i)
				if err := sendOne(smtpAddr, body); err != nil {
					failures++
					time.Sleep(20 * time.Millisecond)
					continue
				}
				ackCh <- acked{token, body}
			}
		}()
	}
	// Kill once a good number of messages has been acknowledged, while
	// the clients keep sending.
	deadline := time.After(60 * time.Second)
	got := map[string][]byte{}
wait:
	for len(got) < 150 {
		select {
		case a := <-ackCh:
			got[a.token] = a.body
		case <-deadline:
			break wait
		}
	}
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	srv.wait(10 * time.Second)
	close(stop)
	for c := 0; c < clients; c++ {
		<-doneCh
	}
	close(ackCh)
	for a := range ackCh {
		got[a.token] = a.body
	}
	if len(got) < 20 {
		t.Fatalf("only %d messages acknowledged before the kill", len(got))
	}
	t.Logf("%d messages acknowledged before SIGKILL", len(got))

	srv2 := startServer(t, cfgPath)
	pool := roots(t, cfg.DataDir)
	bodies := fetchBodies(t, srv2.addr("imaps"), pool, "alice@example.test", "alice-pw", "INBOX")
	found := map[string]int{}
	for _, b := range bodies {
		token := headerValue(b, "X-Test-Token")
		if token == "" {
			t.Errorf("stored message without X-Test-Token (%d bytes)", len(b))
			continue
		}
		found[token]++
		if want, ok := got[token]; ok && !bytes.HasSuffix(b, want) {
			t.Errorf("message %s is not intact: stored %d bytes, sent %d", token, len(b), len(want))
		}
	}
	missing := 0
	for token := range got {
		switch found[token] {
		case 1:
		case 0:
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged message %s is missing after SIGKILL and restart", token)
			}
		default:
			t.Errorf("message %s stored %d times", token, found[token])
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged messages lost", missing, len(got))
	}
	t.Logf("after restart: %d messages in INBOX, %d acknowledged, %d missing", len(bodies), len(got), missing)
	srv2.signal(syscall.SIGTERM)
	if err := srv2.wait(40 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// messageFor builds a CRLF message of a few KiB whose content depends on
// the token, so that a damaged copy cannot match.
func messageFor(token string, c, i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: client%d@elsewhere.test\r\nTo: alice@example.test\r\nSubject: durability %s\r\nX-Test-Token: %s\r\nMessage-ID: <%s@elsewhere.test>\r\n\r\n", c, token, token, token)
	lines := 20 + (i*7+c*13)%120
	for l := 0; l < lines; l++ {
		fmt.Fprintf(&b, "%s line %04d %s\r\n", token, l, strings.Repeat(string(rune('a'+(l+i)%26)), 40))
	}
	return b.Bytes()
}

// sendOne delivers body to alice over a new SMTP connection and returns
// nil only after the server's 250 to the end of DATA.
func sendOne(addr string, body []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := smtp.NewClient(conn, "mail.example.test")
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("client.elsewhere.test"); err != nil {
		return err
	}
	if err := c.Mail("sender@elsewhere.test"); err != nil {
		return err
	}
	if err := c.Rcpt("alice@example.test"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	if err := w.Close(); err != nil { // reads the reply to the final dot
		return err
	}
	c.Quit()
	return nil
}

func headerValue(msg []byte, name string) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(head), "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
