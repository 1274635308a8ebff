package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv/pebbletest"
	"github.com/mailctl/mailctl/server/tlsconf"
)

func port(t *testing.T, ln net.Listener) int {
	t.Helper()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestACME obtains certificates from Pebble, once through each challenge
// type, and checks that the served chain verifies against Pebble's root,
// also for clients that send no SNI.
func TestACME(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			httpLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer httpLn.Close()
			httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer httpsLn.Close()
			pebble := pebbletest.Start(t, port(t, httpLn), port(t, httpsLn))

			cfg := testConfig(tlsconf.ModeACME)
			cfg.TLS.ACMEDirectory = pebble.Directory
			cfg.TLS.ACMECARoot = pebble.APIRootFile
			cfg.TLS.ACMEEmail = "admin@example.test"
			opts := tlsconf.Options{DataDir: t.TempDir(), Logger: testLogger(t)}
			// Offer exactly one challenge type to the CA.
			if challenge == "http-01" {
				opts.HTTPAddr = httpLn.Addr().String()
			} else {
				opts.HTTPSAddr = httpsLn.Addr().String()
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src, err := tlsconf.New(ctx, cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()

			httpSrv := &http.Server{Handler: src.HTTPHandler(http.NotFoundHandler())}
			go httpSrv.Serve(httpLn)
			defer httpSrv.Close()
			httpsSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
			go httpsSrv.Serve(tls.NewListener(httpsLn, src.HTTPSConfig()))
			defer httpsSrv.Close()
			addr := httpsLn.Addr().String()

			var leaf *x509.Certificate
			deadline := time.Now().Add(60 * time.Second)
			for {
				leaf, err = peerCert(t, addr, "mail.example.test", pebble.Roots)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no valid certificate for mail.example.test within 60s: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if !slices.Contains(leaf.DNSNames, "mail.example.test") {
				t.Errorf("served names %v, want mail.example.test", leaf.DNSNames)
			}

			// A client without SNI gets the hostname's certificate, and
			// its chain verifies against Pebble's root.
			conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatalf("handshake without SNI: %v", err)
			}
			state := conn.ConnectionState()
			conn.Close()
			inter := x509.NewCertPool()
			for _, c := range state.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{
				DNSName: "mail.example.test", Roots: pebble.Roots, Intermediates: inter,
			}); err != nil {
				t.Errorf("certificate served without SNI does not verify for the hostname: %v", err)
			}

			// Another managed name arrives too, and status lists both.
			deadline = time.Now().Add(60 * time.Second)
			for {
				if _, err = peerCert(t, addr, "mta-sts.example.test", pebble.Roots); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no certificate for mta-sts.example.test: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			var names []string
			for _, c := range src.Certificates() {
				names = append(names, c.Names...)
				if c.SelfSigned || c.NotAfter.Before(time.Now()) || !strings.Contains(c.Issuer, "Pebble") {
					t.Errorf("certificate info %+v", c)
				}
			}
			for _, n := range []string{"mail.example.test", "mta-sts.example.test"} {
				if !slices.Contains(names, n) {
					t.Errorf("Certificates() names %v lack %s", names, n)
				}
			}
		})
	}
}
