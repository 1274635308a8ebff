package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv/pebbletest"
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

	pebble := pebbletest.Start(t, httpPort, httpsPort)

	dir := t.TempDir()
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.Listen.HTTP = "127.0.0.1:" + strconv.Itoa(httpPort)
	cfg.Listen.HTTPS = "127.0.0.1:" + strconv.Itoa(httpsPort)
	cfg.TLS.Mode = "acme"
	cfg.TLS.ACMEDirectory = pebble.Directory
	cfg.TLS.ACMECARoot = pebble.APIRootFile
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

	roots := pebble.Roots
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
