package tlsconf_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/tlsconf"
)

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testConfig(mode string) *config.Config {
	return &config.Config{
		FormatVersion: config.FormatVersion,
		Hostname:      "mail.example.test",
		TLS:           config.TLS{Mode: mode},
		Domains:       []config.Domain{{Name: "example.test"}},
	}
}

// serveTLS accepts TLS connections on a loopback listener with c and
// completes their handshakes; it returns the address.
func serveTLS(t *testing.T, c *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.(*tls.Conn).Handshake()
				io.Copy(io.Discard, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// peerCert dials addr with serverName ("" = no SNI) and returns the leaf.
func peerCert(t *testing.T, addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	c := &tls.Config{ServerName: serverName, RootCAs: roots}
	if serverName == "" {
		// No SNI: verify against the hostname ourselves.
		c.InsecureSkipVerify = true
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestNames(t *testing.T) {
	cfg := testConfig(tlsconf.ModeSelfSigned)
	cfg.Domains = append(cfg.Domains, config.Domain{Name: "Other.Test."}, config.Domain{Name: "example.test"})
	got := tlsconf.Names(cfg)
	want := []string{"mail.example.test",
		"mta-sts.example.test", "autoconfig.example.test", "autodiscover.example.test",
		"mta-sts.other.test", "autoconfig.other.test", "autodiscover.other.test"}
	if !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestSelfSigned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := testConfig(tlsconf.ModeSelfSigned)
	src, err := tlsconf.New(ctx, cfg, tlsconf.Options{DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	addr := serveTLS(t, src.TLSConfig())

	first, err := peerCert(t, addr, "", nil)
	if err != nil {
		t.Fatalf("handshake without SNI: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(first)
	for _, name := range tlsconf.Names(cfg) {
		if _, err := peerCert(t, addr, name, roots); err != nil {
			t.Errorf("handshake for %s verified against the self-signed cert: %v", name, err)
		}
	}
	if _, ok := first.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("public key type %T, want ECDSA", first.PublicKey)
	}
	st, err := os.Stat(filepath.Join(dir, "tls", "self-signed.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	infos := src.Certificates()
	if len(infos) != 1 || !infos[0].SelfSigned || !slices.Equal(infos[0].Names, tlsconf.Names(cfg)) ||
		infos[0].NotAfter.Before(time.Now().Add(300*24*time.Hour)) {
		t.Errorf("Certificates() = %+v", infos)
	}

	// A second start reuses the persisted certificate.
	src2, err := tlsconf.New(ctx, cfg, tlsconf.Options{DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	again, err := peerCert(t, serveTLS(t, src2.TLSConfig()), "mail.example.test", roots)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(first) {
		t.Error("restart generated a new self-signed certificate, want the persisted one")
	}

	// A new domain on reload brings a new certificate covering it.
	cfg.Domains = append(cfg.Domains, config.Domain{Name: "new.test"})
	if err := src2.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	leaf, err := peerCert(t, serveTLS(t, src2.TLSConfig()), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Equal(first) || !slices.Contains(leaf.DNSNames, "mta-sts.new.test") {
		t.Errorf("after reload names = %v, want mta-sts.new.test in a new certificate", leaf.DNSNames)
	}
}

func writeCert(t *testing.T, dir string, names []string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned(names, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Key first, so that a poll between the writes sees a mismatched pair
	// at worst, which must be refused.
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c.Leaf
}

func TestFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	certFile, keyFile, leaf1 := writeCert(t, dir, []string{"mail.example.test"})
	cfg := testConfig(tlsconf.ModeFiles)
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile

	t.Run("missing files", func(t *testing.T) {
		bad := testConfig(tlsconf.ModeFiles)
		bad.TLS.CertFile, bad.TLS.KeyFile = filepath.Join(dir, "nope.pem"), keyFile
		if _, err := tlsconf.New(ctx, bad, tlsconf.Options{Logger: testLogger(t)}); err == nil {
			t.Error("New with a missing cert file succeeded, want an error")
		}
	})

	src, err := tlsconf.New(ctx, cfg, tlsconf.Options{Logger: testLogger(t), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	addr := serveTLS(t, src.TLSConfig())
	got, err := peerCert(t, addr, "mail.example.test", nil)
	if err == nil || got != nil {
		// Unverified peer: the dial must fail verification (not our root).
		t.Fatalf("verification against system roots succeeded, want failure")
	}
	if got, err = peerCert(t, addr, "", nil); err != nil || !got.Equal(leaf1) {
		t.Fatalf("served cert = %v (err %v), want the file's", got, err)
	}

	// Replace the files: the poller picks up the new pair.
	_, _, leaf2 := writeCert(t, dir, []string{"mail.example.test", "mta-sts.example.test"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err = peerCert(t, addr, "", nil)
		if err == nil && got.Equal(leaf2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("changed files not picked up within 5s: serving %v", got.DNSNames)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if infos := src.Certificates(); len(infos) != 1 || infos[0].SelfSigned || len(infos[0].Names) != 2 {
		t.Errorf("Certificates() = %+v", infos)
	}

	// A broken file on reload keeps the old certificate.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(ctx, cfg); err == nil {
		t.Error("Reload with a broken cert file succeeded, want an error")
	}
	time.Sleep(150 * time.Millisecond) // the poller must not break it either
	if got, err = peerCert(t, addr, "", nil); err != nil || !got.Equal(leaf2) {
		t.Errorf("after a failed reload served %v (err %v), want the previous cert", got, err)
	}

	// Mode changes need a restart.
	if err := src.Reload(ctx, testConfig(tlsconf.ModeSelfSigned)); err == nil {
		t.Error("Reload changing the mode succeeded, want an error")
	}
}
