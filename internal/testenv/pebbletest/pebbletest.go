// Package pebbletest runs Let's Encrypt's Pebble ACME server (RFC 8555)
// in-process for tests, with a loopback resolver that sends its
// validation authority to 127.0.0.1, so that HTTP-01 and TLS-ALPN-01
// challenges reach the listeners under test. It is a package of its own so
// that only the ACME tests link Pebble.
package pebbletest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Pebble is a running ACME server.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// APIRootFile is a PEM file of the certificate the ACME API itself
	// serves (trust it to talk to Directory).
	APIRootFile string
	// Roots holds the root of the certificates Pebble issues.
	Roots *x509.CertPool
}

// Start runs Pebble's CA, VA and WFE until the test ends. The VA validates
// HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of 127.0.0.1, whatever
// the name.
func Start(t testing.TB, httpPort, tlsPort int) *Pebble {
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
	validator := va.New(logger, httpPort, tlsPort, false, startResolver(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	api := httptest.NewTLSServer(front.Handler())
	t.Cleanup(api.Close)

	apiRoot := filepath.Join(t.TempDir(), "pebble-api.pem")
	if err := os.WriteFile(apiRoot, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	return &Pebble{Directory: api.URL + wfe.DirectoryPath, APIRootFile: apiRoot, Roots: roots}
}

// startResolver runs a DNS server on loopback that answers every A query
// with 127.0.0.1, over UDP and TCP on one port (Pebble's VA asks over
// TCP), until the test ends.
func startResolver(t testing.TB) string {
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
