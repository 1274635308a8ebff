package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/tlsconf"
)

// TestRunFilesReload runs the daemon in-process with tls mode "files",
// replaces the files and sends SIGHUP: IMAPS then serves the new
// certificate, and status reports it.
func TestRunFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(names ...string) *x509.Certificate {
		certPEM, keyPEM, err := tlsconf.GenerateSelfSigned(names, time.Now())
		if err != nil {
			t.Fatal(err)
		}
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
		return c.Leaf
	}
	first := write("mail.example.test")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.TLS = config.TLS{Mode: "files", CertFile: certFile, KeyFile: keyFile}
	cfgPath := filepath.Join(dir, "server.json")
	writeConfig(t, cfgPath, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{ConfigPath: cfgPath, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var st *daemon.Status
	for deadline := time.Now().Add(20 * time.Second); ; {
		var err error
		if st, err = daemon.QueryStatus(context.Background(), cfg.DataDir+"/control.sock"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", st.Listeners["imaps"], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	if !served().Equal(first) {
		t.Fatal("imaps does not serve the configured certificate")
	}

	second := write("mail.example.test", "mta-sts.example.test")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		s, err := daemon.QueryStatus(context.Background(), cfg.DataDir+"/control.sock")
		if err != nil {
			t.Fatal(err)
		}
		if s.LastReload != nil {
			if !s.LastReload.OK {
				t.Fatalf("reload failed: %s", s.LastReload.Error)
			}
			if len(s.Certificates) != 1 || len(s.Certificates[0].Names) != 2 || s.Certificates[0].SelfSigned {
				t.Errorf("status certificates after reload = %+v", s.Certificates)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reload within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !served().Equal(second) {
		t.Error("after SIGHUP imaps still serves the old certificate")
	}
}
