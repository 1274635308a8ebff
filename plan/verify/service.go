package verify

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/mailctl/mailctl/plan/config"
)

// tlsMode says how a service starts TLS.
type tlsMode int

const (
	implicitTLS tlsMode = iota
	smtpSTARTTLS
	imapSTARTTLS
)

type service struct {
	name string
	port int
	mode tlsMode
}

// services lists the server's TLS endpoints.
func services(s *config.Server) []service {
	all := []service{
		{"smtp", s.Ports.SMTP, smtpSTARTTLS},
		{"submissions", s.Ports.Submissions, implicitTLS},
		{"submission", s.Ports.Submission, smtpSTARTTLS},
		{"imap", s.Ports.IMAP, imapSTARTTLS},
		{"imaps", s.Ports.IMAPS, implicitTLS},
		{"https", s.Ports.HTTPS, implicitTLS},
	}
	var out []service
	for _, svc := range all {
		if svc.port != 0 {
			out = append(out, svc)
		}
	}
	return out
}

// insecure is the client TLS configuration of the handshakes: the chain is
// verified afterwards by verifyCert, to report what exactly is wrong.
func insecure(host string) *tls.Config {
	return &tls.Config{ServerName: host, InsecureSkipVerify: true}
}

// smtpClient is a minimal SMTP client that keeps the server's replies.
type smtpClient struct {
	conn net.Conn
	tp   *textproto.Conn
}

func newSMTPClient(c net.Conn) *smtpClient {
	return &smtpClient{conn: c, tp: textproto.NewConn(c)}
}

// cmd sends a command (empty: read only) and returns the reply.
func (c *smtpClient) cmd(line string) (int, string, error) {
	if line != "" {
		if err := c.tp.PrintfLine("%s", line); err != nil {
			return 0, "", err
		}
	}
	// With expectCode 0, err is only a read or syntax error.
	return c.tp.ReadResponse(0)
}

// ehlo returns the upper-cased extension keywords. (The name in the reply
// is not checked: go-smtp, which the bundled server uses, answers
// "Hello <client>" there.)
func (c *smtpClient) ehlo(name string) ([]string, error) {
	code, msg, err := c.cmd("EHLO " + name)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	if code != 250 {
		return nil, fmt.Errorf("EHLO refused: %d %s", code, msg)
	}
	lines := strings.Split(msg, "\n")
	var ext []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			ext = append(ext, strings.ToUpper(f[0]))
		}
	}
	return ext, nil
}

func (c *smtpClient) starttls(ctx context.Context, host string) (*tls.Conn, error) {
	code, msg, err := c.cmd("STARTTLS")
	if err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if code != 220 {
		return nil, fmt.Errorf("STARTTLS refused: %d %s", code, msg)
	}
	tc := tls.Client(c.conn, insecure(host))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake after STARTTLS: %w", err)
	}
	c.conn, c.tp = tc, textproto.NewConn(tc)
	return tc, nil
}

func (c *smtpClient) close() {
	c.tp.PrintfLine("QUIT")
	c.conn.Close()
}

// smtpOpen connects, reads the greeting and, for implicit TLS, handshakes
// first. It returns the greeting text.
func (r *runner) smtpOpen(ctx context.Context, host string, port int, implicit bool) (*smtpClient, string, error) {
	conn, err := r.dial(ctx, host, port)
	if err != nil {
		return nil, "", err
	}
	if implicit {
		tc := tls.Client(conn, insecure(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, "", fmt.Errorf("TLS handshake with %s:%d: %w", host, port, err)
		}
		conn = tc
	}
	c := newSMTPClient(conn)
	code, msg, err := c.cmd("")
	if err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("read the greeting of %s:%d: %w", host, port, err)
	}
	if code != 220 {
		c.close()
		return nil, "", fmt.Errorf("%s:%d greets with %d %s", host, port, code, msg)
	}
	return c, msg, nil
}

// checkTLS handshakes with one service and verifies its certificate.
func (r *runner) checkTLS(ctx context.Context, s *config.Server, svc service) Result {
	host := s.Hostname
	fixConn := fmt.Sprintf("check that the server listens on port %d (%s) and that the firewall lets it through", svc.port, svc.name)
	var state tls.ConnectionState
	switch svc.mode {
	case smtpSTARTTLS:
		c, _, err := r.smtpOpen(ctx, host, svc.port, false)
		if err != nil {
			return Result{Status: Fail, Detail: err.Error(), Fix: fixConn}
		}
		defer c.close()
		ext, err := c.ehlo(r.o.HeloName)
		if err != nil {
			return Result{Status: Fail, Detail: err.Error(), Fix: fixConn}
		}
		if !slices.Contains(ext, "STARTTLS") {
			return Result{Status: Fail, Detail: "STARTTLS is not offered: mail and passwords travel in clear",
				Fix: "configure a certificate on the server (tls block) and redeploy with mailctl apply"}
		}
		tc, err := c.starttls(ctx, host)
		if err != nil {
			return Result{Status: Fail, Detail: err.Error(), Fix: "check the server's TLS configuration and its logs"}
		}
		state = tc.ConnectionState()
	case imapSTARTTLS:
		tc, err := r.imapStartTLS(ctx, host, svc.port)
		if err != nil {
			return Result{Status: Fail, Detail: err.Error(), Fix: fixConn}
		}
		defer tc.Close()
		state = tc.ConnectionState()
	default:
		conn, err := r.dial(ctx, host, svc.port)
		if err != nil {
			return Result{Status: Fail, Detail: err.Error(), Fix: fixConn}
		}
		defer conn.Close()
		tc := tls.Client(conn, insecure(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			return Result{Status: Fail, Detail: fmt.Sprintf("TLS handshake: %v", err), Fix: "check the server's TLS configuration and its logs"}
		}
		state = tc.ConnectionState()
	}
	return r.verifyCert(state.PeerCertificates, host)
}

// imapStartTLS does RFC 3501 STARTTLS on a plain IMAP port.
func (r *runner) imapStartTLS(ctx context.Context, host string, port int) (*tls.Conn, error) {
	conn, err := r.dial(ctx, host, port)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* OK") {
		conn.Close()
		return nil, fmt.Errorf("IMAP greeting of %s:%d: %q %v", host, port, strings.TrimSpace(line), err)
	}
	if _, err := fmt.Fprintf(conn, "v1 STARTTLS\r\n"); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		line, err = br.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("IMAP STARTTLS on %s:%d: %w", host, port, err)
		}
		if strings.HasPrefix(line, "v1 ") {
			break
		}
	}
	if !strings.HasPrefix(strings.ToUpper(line), "V1 OK") {
		conn.Close()
		return nil, fmt.Errorf("IMAP STARTTLS refused on %s:%d: %s", host, port, strings.TrimSpace(line))
	}
	tc := tls.Client(conn, insecure(host))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake after IMAP STARTTLS: %w", err)
	}
	return tc, nil
}

// certWarnDays is when an expiring certificate becomes a warning.
const certWarnDays = 14

// verifyCert checks the leaf's name, the chain against the roots, and
// the expiry, in that order.
func (r *runner) verifyCert(chain []*x509.Certificate, host string) Result {
	if len(chain) == 0 {
		return Result{Status: Fail, Detail: "no certificate", Fix: "configure a certificate on the server"}
	}
	now := r.o.Now()
	leaf := chain[0]
	fixCert := "check the server's tls block: with acme_email, look at the server's logs for ACME errors; with cert_file, install a current certificate for " + host
	if err := leaf.VerifyHostname(host); err != nil {
		names := leaf.DNSNames
		if len(names) == 0 {
			names = []string{leaf.Subject.CommonName}
		}
		return Result{Status: Fail, Detail: fmt.Sprintf("the certificate is for %s, not %s", strings.Join(names, ", "), host), Fix: fixCert}
	}
	if now.After(leaf.NotAfter) {
		return Result{Status: Fail, Detail: fmt.Sprintf("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.DateOnly)), Fix: fixCert}
	}
	if now.Before(leaf.NotBefore) {
		return Result{Status: Fail, Detail: fmt.Sprintf("the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339)), Fix: "check the clocks of this machine and of the server"}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: r.o.Roots, Intermediates: inter, DNSName: host, CurrentTime: now}); err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("the chain does not verify: %v", err),
			Fix: "serve the full chain (leaf and intermediates) from a trusted CA; self-signed certificates are refused by senders enforcing MTA-STS"}
	}
	left := leaf.NotAfter.Sub(now)
	days := int(left.Hours() / 24)
	detail := fmt.Sprintf("valid for %s until %s (%d days), issuer %s", host, leaf.NotAfter.UTC().Format(time.DateOnly), days, issuerName(leaf))
	if days < certWarnDays {
		return Result{Status: Warn, Detail: detail, Fix: "renew the certificate now: " + fixCert}
	}
	return Result{Status: Pass, Detail: detail}
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// checkBanner checks that the SMTP greeting on port 25 names the hostname.
func (r *runner) checkBanner(ctx context.Context, s *config.Server, port int) Result {
	c, banner, err := r.smtpOpen(ctx, s.Hostname, port, false)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fmt.Sprintf("check that the server listens on port %d and that the firewall and the hosting provider let port %d in", port, port)}
	}
	defer c.close()
	first := strings.SplitN(banner, "\n", 2)[0]
	name := ""
	if f := strings.Fields(first); len(f) > 0 {
		name = strings.TrimSuffix(strings.ToLower(f[0]), ".")
	}
	fix := fmt.Sprintf("make the server greet as %s (its EHLO name, which must match the PTR)", s.Hostname)
	if name != s.Hostname {
		return Result{Status: Fail, Detail: fmt.Sprintf("banner %q names %q, want %s", "220 "+first, name, s.Hostname), Fix: fix}
	}
	return Result{Status: Pass, Detail: "220 " + first}
}

// foreignAddress returns an address at the first candidate domain that no
// configured domain covers.
func (r *runner) foreignAddress(local string, candidates ...string) string {
	for _, c := range candidates {
		ours := false
		for _, d := range r.cfg.Domains {
			if c == d.Name || strings.HasSuffix(c, "."+d.Name) || strings.HasSuffix(d.Name, "."+c) {
				ours = true
			}
		}
		if !ours {
			return local + "@" + c
		}
	}
	return local + "@mailctl-verify.invalid"
}

// checkRelay makes sure an anonymous client cannot relay: RCPT TO a
// foreign domain must be refused. No DATA is ever sent.
func (r *runner) checkRelay(ctx context.Context, s *config.Server, port int) Result {
	c, _, err := r.smtpOpen(ctx, s.Hostname, port, false)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fmt.Sprintf("check that the server listens on port %d", port)}
	}
	defer c.close()
	if _, err := c.ehlo(r.o.HeloName); err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: "check the server's logs"}
	}
	from := r.foreignAddress("verify", "example.net", "example.edu")
	to := r.foreignAddress("relay-test", "example.com", "example.edu", "example.net")
	code, msg, err := c.cmd("MAIL FROM:<" + from + ">")
	if err != nil {
		return Result{Status: Fail, Detail: "MAIL FROM: " + err.Error(), Fix: "check the server's logs"}
	}
	if code/100 != 2 {
		return Result{Status: Pass, Detail: fmt.Sprintf("MAIL FROM:<%s> refused with %d %s", from, code, firstLine(msg))}
	}
	code, msg, err = c.cmd("RCPT TO:<" + to + ">")
	if err != nil {
		return Result{Status: Fail, Detail: "RCPT TO: " + err.Error(), Fix: "check the server's logs"}
	}
	c.cmd("RSET")
	switch code / 100 {
	case 2:
		return Result{Status: Fail,
			Detail: fmt.Sprintf("OPEN RELAY: RCPT TO:<%s> from an anonymous client was accepted (%d %s)", to, code, firstLine(msg)),
			Fix:    fmt.Sprintf("stop the service on port %d now: it relays for anyone; make it accept only recipients of its own domains without AUTH", port)}
	case 4:
		return Result{Status: Warn, Detail: fmt.Sprintf("RCPT TO:<%s> deferred with %d %s; relaying is not proven refused", to, code, firstLine(msg)),
			Fix: "run mailctl verify again later; an anonymous RCPT to a foreign domain must get a 5xx reply"}
	}
	return Result{Status: Pass, Detail: fmt.Sprintf("RCPT TO:<%s> refused with %d %s", to, code, firstLine(msg))}
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// checkSubmissionAuth checks that AUTH is offered only over TLS: on 587
// not before STARTTLS but after it, on 465 (implicit TLS) at once.
func (r *runner) checkSubmissionAuth(ctx context.Context, s *config.Server, port int, implicit bool) Result {
	fixConn := fmt.Sprintf("check that the server listens on port %d", port)
	c, _, err := r.smtpOpen(ctx, s.Hostname, port, implicit)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fixConn}
	}
	defer c.close()
	ext, err := c.ehlo(r.o.HeloName)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: fixConn}
	}
	if !implicit {
		if slices.Contains(ext, "AUTH") {
			return Result{Status: Fail, Detail: "AUTH is offered before STARTTLS: passwords can be sent in clear",
				Fix: "make the server offer AUTH only after STARTTLS (RFC 4954 section 4)"}
		}
		if !slices.Contains(ext, "STARTTLS") {
			return Result{Status: Fail, Detail: "STARTTLS is not offered on the submission port", Fix: "configure a certificate on the server and redeploy"}
		}
		if _, err := c.starttls(ctx, s.Hostname); err != nil {
			return Result{Status: Fail, Detail: err.Error(), Fix: "check the server's TLS configuration and its logs"}
		}
		if ext, err = c.ehlo(r.o.HeloName); err != nil {
			return Result{Status: Fail, Detail: err.Error(), Fix: fixConn}
		}
	}
	if !slices.Contains(ext, "AUTH") {
		return Result{Status: Fail, Detail: "AUTH is not offered over TLS: users cannot log in to send mail",
			Fix: "check that the server has users and enables AUTH on its submission ports"}
	}
	if implicit {
		return Result{Status: Pass, Detail: "AUTH offered over implicit TLS"}
	}
	return Result{Status: Pass, Detail: "AUTH offered only after STARTTLS"}
}
