package testenv_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
)

func TestCA(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	leaf := ca.Leaf(t, "mx1.example.org", "127.0.0.1", "localhost")
	other := testenv.NewCA(t)
	for _, tc := range []struct {
		name, server string
		roots        *x509.CertPool
		ok           bool
	}{
		{"IP address", "127.0.0.1", ca.Pool, true},
		{"host name", "localhost", ca.Pool, true},
		{"first name", "mx1.example.org", ca.Pool, true},
		{"name not in the certificate", "other.example.org", ca.Pool, false},
		{"another CA", "127.0.0.1", other.Pool, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf}})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.(*tls.Conn).Handshake()
				io.WriteString(c, "ok")
			}()
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: tc.roots, ServerName: tc.server}}
			c, err := d.Dial("tcp", ln.Addr().String())
			if (err == nil) != tc.ok {
				t.Fatalf("handshake error = %v, want success %v", err, tc.ok)
			}
			if err == nil {
				c.Close()
			}
		})
	}

	t.Run("files", func(t *testing.T) {
		t.Parallel()
		caFile, certFile, keyFile := ca.WriteFiles(t, t.TempDir(), leaf)
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			t.Errorf("load cert.pem and key.pem: %v", err)
		}
		b, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		if blk, _ := pem.Decode(b); blk == nil || blk.Type != "CERTIFICATE" || !ca.Cert.Equal(mustParse(t, blk.Bytes)) {
			t.Errorf("ca.pem does not hold the CA certificate")
		}
		if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key.pem mode = %v, %v; want 0600", fi.Mode(), err)
		}
	})
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
