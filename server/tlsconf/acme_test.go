package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/mailctl/mailctl/server/tlsconf"
)

// startResolver runs a DNS server on loopback that answers every A query
// with 127.0.0.1, so that Pebble's VA really connects to our listeners.
func startResolver(t *testing.T) string {
	t.Helper()
	// Pebble's VA asks over TCP: serve both on one port.
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
		m.Authoritative = true
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: tcp, Handler: handler}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

type pebbleCA struct {
	directory string
	caRootPEM string // file trusted for the ACME API itself
	roots     *x509.CertPool
}

// startPebble runs Pebble's CA, VA and WFE in-process. The VA validates
// HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of whatever resolver
// answers, i.e. 127.0.0.1.
func startPebble(t *testing.T, httpPort, tlsPort int, resolver string) *pebbleCA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	var logw io.Writer = io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	logger := log.New(logw, "pebble ", log.LstdFlags)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, resolver, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	api := httptest.NewTLSServer(front.Handler())
	t.Cleanup(api.Close)

	apiRoot := filepath.Join(t.TempDir(), "pebble-api.pem")
	if err := os.WriteFile(apiRoot, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	return &pebbleCA{directory: api.URL + wfe.DirectoryPath, caRootPEM: apiRoot, roots: roots}
}

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
			pebble := startPebble(t, port(t, httpLn), port(t, httpsLn), startResolver(t))

			cfg := testConfig(tlsconf.ModeACME)
			cfg.TLS.ACMEDirectory = pebble.directory
			cfg.TLS.ACMECARoot = pebble.caRootPEM
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
				leaf, err = peerCert(t, addr, "mail.example.test", pebble.roots)
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
				DNSName: "mail.example.test", Roots: pebble.roots, Intermediates: inter,
			}); err != nil {
				t.Errorf("certificate served without SNI does not verify for the hostname: %v", err)
			}

			// Another managed name arrives too, and status lists both.
			deadline = time.Now().Add(60 * time.Second)
			for {
				if _, err = peerCert(t, addr, "mta-sts.example.test", pebble.roots); err == nil {
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
