package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/mailctl/mailctl/server/daemon"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRunACME runs the daemon in tls mode "acme" against an in-process
// Pebble whose VA validates on the daemon's own http and https ports
// (names resolved to 127.0.0.1 by a loopback DNS server), and checks
// that SMTP STARTTLS and HTTPS serve the obtained certificate, which
// chains to Pebble's root, and that status lists it.
func TestRunACME(t *testing.T) {
	httpPort, httpsPort := freePort(t), freePort(t)

	// Loopback resolver: every A query is 127.0.0.1 (TCP and UDP).
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
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: tcp, Handler: handler}} {
		go srv.ActivateAndServe()
		defer srv.Shutdown()
	}

	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	plog := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(plog, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	front := wfe.New(plog, store, va.New(plog, httpPort, httpsPort, false, tcp.Addr().String(), store), authority,
		[]string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	api := httptest.NewTLSServer(front.Handler())
	defer api.Close()

	dir := t.TempDir()
	apiRoot := filepath.Join(dir, "pebble-api.pem")
	if err := os.WriteFile(apiRoot, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.Listen.HTTP = "127.0.0.1:" + strconv.Itoa(httpPort)
	cfg.Listen.HTTPS = "127.0.0.1:" + strconv.Itoa(httpsPort)
	cfg.TLS.Mode = "acme"
	cfg.TLS.ACMEDirectory = api.URL + wfe.DirectoryPath
	cfg.TLS.ACMECARoot = apiRoot
	cfg.TLS.ACMEEmail = "admin@example.test"
	cfgPath := filepath.Join(dir, "server.json")
	writeConfig(t, cfgPath, cfg)

	var logw io.Writer = io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{ConfigPath: cfgPath, Logger: slog.New(slog.NewJSONHandler(logw, nil)), Version: "test"})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("Run did not return within 40s of cancel")
		}
	}()

	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	httpsAddr := cfg.Listen.HTTPS
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "mail.example.test", RootCAs: roots})
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("https did not serve a certificate chaining to Pebble's root within 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	st, err := daemon.QueryStatus(context.Background(), cfg.DataDir+"/control.sock")
	if err != nil {
		t.Fatal(err)
	}
	// SMTP STARTTLS on 25 serves the same certificate, also without SNI.
	c, err := net.Dial("tcp", st.Listeners["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	read := func() string {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	read() // banner
	io.WriteString(c, "EHLO client.test\r\n")
	for got := read(); !strings.Contains("\n"+got, "\n250 "); got += read() {
	}
	io.WriteString(c, "STARTTLS\r\n")
	read()
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("STARTTLS handshake without SNI: %v", err)
	}
	leaf := tc.ConnectionState().PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, ic := range tc.ConnectionState().PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "mail.example.test", Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("SMTP certificate does not verify for the hostname against Pebble's root: %v", err)
	}

	st, err = daemon.QueryStatus(context.Background(), cfg.DataDir+"/control.sock")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ci := range st.Certificates {
		for _, n := range ci.Names {
			found = found || n == "mail.example.test"
		}
	}
	if st.TLSMode != "acme" || !found {
		t.Errorf("status tls %q certificates %+v, want acme with mail.example.test", st.TLSMode, st.Certificates)
	}
}
