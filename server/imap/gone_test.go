package imap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"
)

func goneTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestWatchGone: while a command runs, the session's context is
// cancelled once the client has closed its connection (plain TCP, or TLS
// with its close_notify), and not while it stays connected or has sent
// more input before closing.
func TestWatchGone(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("goneProbe is Linux only")
	}
	for _, tc := range []struct {
		name    string
		tls     bool
		send    string // before closing
		close   bool
		cancels bool
	}{
		{"plain closed", false, "", true, true},
		{"tls closed", true, "", true, true},
		{"plain connected", false, "", false, false},
		{"tls connected", true, "", false, false},
		{"plain closed with a pending command", false, "b NOOP\r\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cfg := goneTLSConfig(t)
			var client net.Conn
			dialed := make(chan error, 1)
			go func() {
				var err error
				if tc.tls {
					client, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
				} else {
					client, err = net.Dial("tcp", ln.Addr().String())
				}
				dialed <- err
			}()
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			c := newConn(sc, cfg, tc.tls, slog.New(slog.DiscardHandler))
			if err := c.handshake(); err != nil {
				t.Fatal(err)
			}
			if err := <-dialed; err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop := c.watchGone(cancel)
			defer stop()
			if tc.send != "" {
				client.Write([]byte(tc.send))
			}
			if tc.close {
				client.Close()
			}
			wait := 3 * time.Second
			if !tc.cancels {
				wait = 5 * goneEvery
			}
			select {
			case <-ctx.Done():
				if !tc.cancels {
					t.Fatal("cancelled")
				}
			case <-time.After(wait):
				if tc.cancels {
					t.Fatalf("not cancelled within %v", wait)
				}
			}
		})
	}
}
