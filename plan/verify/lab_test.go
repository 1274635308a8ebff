package verify_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/verify"
	"github.com/mailctl/mailctl/server/mtasts"
)

// A real argon2id hash (of "x").
const hash = `$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ`

const host = "mx1.example.org"

// baseHCL is the configuration of the lab: one server, one domain with
// every record kind.
const baseHCL = `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  ipv6     = "2001:db8::10"
  local {}
  tls { self_signed = true }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
  dkim    { selector = "mx1" }
  spf     { all = "-all" }
  dmarc {
    policy = "reject"
    rua    = ["mailto:dmarc@example.org"]
  }
  mta_sts { mode = "enforce" }
  tls_rpt { rua = ["mailto:tlsrpt@example.org"] }
}
user "alice@example.org" {
  password_hash = "` + hash + `"
  aliases       = ["postmaster@example.org"]
}
alias "abuse@example.org" { to = ["alice@example.org"] }
`

// zones served by the lab's Knot (google.com: the SPF include a migration
// from Google Workspace keeps).
var zones = []string{"example.org", "example.net", "google.com", "113.0.203.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"}

func loadConfig(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		t.Fatalf("load config: %v", diags)
	}
	return cfg
}

func randomKey(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// dkimKeys are the server's public keys: an ed25519 one and an RSA-sized
// one, long enough to need several TXT strings.
func dkimKeys(t *testing.T) []desired.DKIMKey {
	return []desired.DKIMKey{
		{Domain: "example.org", Selector: "mx1-ed25519", Record: "v=DKIM1; k=ed25519; p=" + randomKey(t, 32)},
		{Domain: "example.org", Selector: "mx1-rsa", Record: "v=DKIM1; k=rsa; p=" + randomKey(t, 294)},
	}
}

// testCA issues certificates trusted through Pool.
type testCA struct{ *testenv.CA }

func newCA(t *testing.T) *testCA { return &testCA{testenv.NewCA(t)} }

// leafValidity is how long lab certificates are valid.
const leafValidity = testenv.LeafValidity

func (ca *testCA) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	return ca.Leaf(t, names...)
}

// smtpOpts shape a test SMTP server.
type smtpOpts struct {
	domain       string
	implicit     bool // TLS from the first byte (465)
	noTLS        bool // no STARTTLS
	insecureAuth bool // AUTH offered before TLS
	openRelay    bool // accept any recipient
}

type smtpBackend struct{ o smtpOpts }

func (b smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{o: b.o}, nil }

type smtpSession struct{ o smtpOpts }

func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(string, *smtp.MailOptions) error {
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.o.openRelay || strings.HasSuffix(strings.ToLower(to), "@example.org") {
		return nil
	}
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
}
func (s *smtpSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(string, string, string) error { return errors.New("invalid credentials") }), nil
}

// startSMTP runs a go-smtp server on 127.0.0.1:0.
func startSMTP(t *testing.T, cert tls.Certificate, o smtpOpts) string {
	t.Helper()
	if o.domain == "" {
		o.domain = host
	}
	s := smtp.NewServer(smtpBackend{o})
	s.Domain = o.domain
	s.AllowInsecureAuth = o.insecureAuth
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	if !o.noTLS {
		s.TLSConfig = tc
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.implicit {
		l = tls.NewListener(l, tc)
	}
	go s.Serve(l)
	t.Cleanup(func() {
		// Shutdown, not Close: go-smtp v0.26.0's Close reads a
		// connection that STARTTLS may be replacing at that moment (a
		// data race under -race); Shutdown closes the listener and waits
		// for the connections the checks close. One still open after 5 s
		// is left to the test binary's exit.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return l.Addr().String()
}

// startIMAP runs a greeting-only IMAP server: implicit TLS, or STARTTLS.
func startIMAP(t *testing.T, cert tls.Certificate, implicit bool) string {
	t.Helper()
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if implicit {
					c = tls.Server(c, tc)
					fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1] ready\r\n")
					io.Copy(io.Discard, c)
					return
				}
				fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				tag, _, _ := strings.Cut(line, " ")
				fmt.Fprintf(c, "%s OK begin TLS\r\n", tag)
				tls.Server(c, tc).Handshake()
			}()
		}
	}()
	return l.Addr().String()
}

// startHTTPS serves the MTA-STS policy.
func startHTTPS(t *testing.T, cert tls.Certificate, policy string) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, policy)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rbldnsd data: clean.test lists only the RFC 5782 test address,
// dirty.test lists the server, refuse.test answers as Spamhaus does to
// public resolvers.
var rbldnsdZones = map[string]string{
	"clean.test":  ":127.0.0.2:Listed for testing\n127.0.0.2\n",
	"dirty.test":  "127.0.0.2\n203.0.113.10 :127.0.0.2:Spam trap hit\n",
	"refuse.test": "203.0.113.10 :127.255.255.254:Query refused\n",
}

// zoneOf returns the lab zone that holds name.
func zoneOf(name string) string {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	best := ""
	for _, z := range zones {
		if (name == z || strings.HasSuffix(name, "."+z)) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

func txtRR(name, value string) mdns.RR {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	parts = append(parts, value)
	return &mdns.TXT{Hdr: mdns.RR_Header{Name: mdns.Fqdn(name), Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 300}, Txt: parts}
}

func newRR(t *testing.T, name, typ, value string) mdns.RR {
	t.Helper()
	if typ == "TXT" {
		return txtRR(name, value)
	}
	rr, err := mdns.NewRR(fmt.Sprintf("%s 300 IN %s %s", mdns.Fqdn(name), typ, value))
	if err != nil || rr == nil {
		t.Fatalf("record %s %s %s: %v", name, typ, value, err)
	}
	return rr
}

// startDNS starts a Knot serving the lab zones with rrs added by one
// signed RFC 2136 update per zone.
func startDNS(t *testing.T, rrs []mdns.RR) string {
	t.Helper()
	k := testenv.StartKnot(t, zones...)
	byZone := map[string][]mdns.RR{}
	for _, rr := range rrs {
		z := zoneOf(rr.Header().Name)
		if z == "" {
			t.Fatalf("no lab zone for %s", rr.Header().Name)
		}
		// Msg.Insert writes the records' headers: copy what cases share.
		byZone[z] = append(byZone[z], mdns.Copy(rr))
	}
	for z, set := range byZone {
		m := new(mdns.Msg)
		m.SetUpdate(mdns.Fqdn(z))
		m.Insert(set)
		m.SetTsig(k.TSIGName, mdns.Fqdn(k.TSIGAlg), 300, time.Now().Unix())
		c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{k.TSIGName: k.TSIGSecret}, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(m, k.Addr)
		if err != nil || r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("update %s: %v %v", z, err, r)
		}
	}
	return k.Addr
}

// lab is the environment of one Run: the configuration, the zone data and
// the options pointing at local servers.
type lab struct {
	cfg     *config.Config
	records []desired.RRSet
	rrs     []mdns.RR
	// dirty is set when rrs changed: the case gets its own Knot.
	dirty bool
	// secondary, when set, makes ns2 a second Knot serving secondary(rrs).
	secondary func([]mdns.RR) []mdns.RR
	opts      verify.Options
	ca        *testCA
	cert      tls.Certificate
	rbl       string
}

// newLab builds the base lab: DNS, SMTP, IMAP, HTTPS and DNSBL servers.
func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{cfg: loadConfig(t, baseHCL), ca: newCA(t)}
	l.records = desired.Records(l.cfg, dkimKeys(t))
	for _, s := range l.records {
		for _, v := range s.Values {
			l.rrs = append(l.rrs, newRR(t, s.Name, s.Type, v))
		}
	}
	l.rrs = append(l.rrs,
		newRR(t, "example.org", "NS", "ns2.example.org."),
		newRR(t, "ns2.example.org", "A", "127.0.0.1"),
		newRR(t, "10.113.0.203.in-addr.arpa", "PTR", host+"."),
		newRR(t, "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR", host+"."),
	)
	dnsAddr := startDNS(t, l.rrs)
	l.cert = l.ca.leaf(t, host, "mta-sts.example.org")
	policy, _ := mtasts.Policy("enforce", []string{host}, 0)
	https := startHTTPS(t, l.cert, policy)
	l.rbl = testenv.StartRbldnsd(t, rbldnsdZones)
	l.opts = verify.Options{
		Resolver: &verify.DNSClient{Servers: []string{dnsAddr}},
		Addresses: map[string]string{
			"ns1.example.org:53":      dnsAddr,
			"ns2.example.org:53":      dnsAddr,
			host + ":25":              startSMTP(t, l.cert, smtpOpts{}),
			host + ":587":             startSMTP(t, l.cert, smtpOpts{}),
			host + ":465":             startSMTP(t, l.cert, smtpOpts{implicit: true}),
			host + ":143":             startIMAP(t, l.cert, false),
			host + ":993":             startIMAP(t, l.cert, true),
			host + ":443":             https,
			"mta-sts.example.org:443": https,
		},
		DNSBLZones:    []string{"clean.test"},
		DNSBLResolver: &verify.DNSClient{Servers: []string{l.rbl}},
		Roots:         l.ca.Pool,
		Timeout:       10 * time.Second,
		HeloName:      "verify.example.net",
	}
	return l
}

// clone copies the lab for one case.
func (l *lab) clone() *lab {
	c := *l
	c.rrs = slices.Clone(l.rrs)
	c.opts.Addresses = maps.Clone(l.opts.Addresses)
	return &c
}

// set replaces the records of name and type (none: delete them).
func (l *lab) set(t *testing.T, name, typ string, values ...string) {
	t.Helper()
	l.rrs = slices.DeleteFunc(l.rrs, func(rr mdns.RR) bool {
		return strings.EqualFold(rr.Header().Name, mdns.Fqdn(name)) && mdns.TypeToString[rr.Header().Rrtype] == typ
	})
	for _, v := range values {
		l.rrs = append(l.rrs, newRR(t, name, typ, v))
	}
	l.dirty = true
}

// run starts what the case changed and runs verify.
func (l *lab) run(t *testing.T) verify.Report {
	t.Helper()
	if l.dirty || l.secondary != nil {
		addr := startDNS(t, l.rrs)
		l.opts.Resolver = &verify.DNSClient{Servers: []string{addr}}
		l.opts.Addresses["ns1.example.org:53"] = addr
		l.opts.Addresses["ns2.example.org:53"] = addr
		if l.secondary != nil {
			l.opts.Addresses["ns2.example.org:53"] = startDNS(t, l.secondary(slices.Clone(l.rrs)))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return verify.Run(ctx, verify.Inputs{Config: l.cfg, Records: l.records}, l.opts)
}
