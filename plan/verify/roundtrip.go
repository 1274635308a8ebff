package verify

// The round trip (check "roundtrip"): a probe message submitted as a user
// (RFC 6409 over implicit TLS per RFC 8314, or STARTTLS per RFC 3207; SASL
// PLAIN per RFC 4616) is read back over IMAPS (RFC 9051) and must carry
// spf=pass, dkim=pass and dmarc=pass in its Authentication-Results field
// (RFC 8601). The probe is then deleted (\Deleted, then UID EXPUNGE of
// RFC 4315 when offered, else EXPUNGE).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/server/authres"
)

// RoundTripCheck is the name of the round trip's result.
const RoundTripCheck = "roundtrip"

// DefaultProbeWait bounds how long the probe is looked for in the INBOX.
const DefaultProbeWait = 60 * time.Second

// FixProbeCredentials is the fix of the round trip skipped for want of
// credentials.
const FixProbeCredentials = "set MAILCTL_PROBE_USER and MAILCTL_PROBE_PASSWORD (or -probe-user/-probe-password-file) to run the round trip"

// Probe is the account of the round trip.
type Probe struct {
	// User submits the probe (AUTH PLAIN) from its own address; it must be
	// a user of a configured domain. Password is its password (never
	// logged or printed).
	User, Password string
	// To receives the probe; default User. For an address outside the
	// configured domains, IMAPAddr names its IMAPS server.
	To string
	// IMAPUser and IMAPPassword log in to read To's INBOX; default User
	// and Password.
	IMAPUser, IMAPPassword string
	// IMAPAddr is "host:port" of the IMAP server holding To's mailbox
	// (implicit TLS); default the configured server's IMAPS port (or IMAP
	// with STARTTLS).
	IMAPAddr string
	// Wait bounds the polling of the INBOX; default DefaultProbeWait.
	Wait time.Duration
	// Poll is the interval between two looks; default one second.
	Poll time.Duration
}

// RunAll is Run plus the round trip of p (a skip when p is nil or has no
// password), run in parallel with the other checks under its own time
// limit: p.Wait plus Options.Timeout. Options.Only selects it by the name
// "roundtrip" or by its target, the probe's recipient.
func RunAll(ctx context.Context, in Inputs, o Options, p *Probe) Report {
	done := make(chan Report, 1)
	go func() { done <- Run(ctx, in, o) }()
	rt := RunRoundTrip(ctx, in, o, p)
	rep := <-done
	rep.Results = append(rep.Results, rt.Results...)
	return rep
}

// RunRoundTrip runs only the round trip (see RunAll).
func RunRoundTrip(ctx context.Context, in Inputs, o Options, p *Probe) Report {
	r := &runner{cfg: in.Config, o: o}
	if r.o.Timeout <= 0 {
		r.o.Timeout = 20 * time.Second
	}
	if r.o.HeloName == "" {
		r.o.HeloName = "localhost"
	}
	r.log = r.o.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.o.Resolver == nil {
		r.o.Resolver = &DNSClient{} // answers errors: hosts not configured do not resolve
		if sys, err := SystemResolver(); err == nil {
			r.o.Resolver = sys
		}
	}
	var probe Probe
	if p != nil {
		probe = *p
	}
	if probe.To == "" {
		probe.To = probe.User
	}
	if probe.IMAPUser == "" {
		probe.IMAPUser, probe.IMAPPassword = probe.User, probe.Password
	}
	if probe.Wait <= 0 {
		probe.Wait = DefaultProbeWait
	}
	if probe.Poll <= 0 {
		probe.Poll = time.Second
	}
	target := probe.To
	if target == "" {
		target = "probe"
	}
	c := Check{Name: RoundTripCheck, Target: target, Run: func(ctx context.Context) []Result {
		if probe.User == "" || probe.Password == "" {
			return one(Result{Status: Skip, Detail: "no probe credentials", Fix: FixProbeCredentials})
		}
		return one(r.roundTrip(ctx, probe))
	}}
	var cs []Check
	for _, c := range append(append([]Check{c}, r.nodeRoundTrips(probe, target)...), r.nodeLogins(probe)...) {
		if len(r.o.Only) == 0 || selected(r.o.Only, c) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return Report{}
	}
	return runChecks(ctx, r.log, cs, probe.Wait+r.o.Timeout)
}

// probeDomain returns the configured domain of addr, or nil.
func (r *runner) probeDomain(addr string) *config.Domain {
	if r.cfg == nil {
		return nil
	}
	_, dom, _ := strings.Cut(strings.ToLower(addr), "@")
	for _, d := range r.cfg.Domains {
		if strings.EqualFold(d.Name, dom) {
			return d
		}
	}
	return nil
}

// probeServer returns the configured server of addr's domain.
func (r *runner) probeServer(addr string) *config.Server {
	if d := r.probeDomain(addr); d != nil {
		return d.Server
	}
	return nil
}

// roundTrip submits the probe, waits for it and judges its
// Authentication-Results.
func (r *runner) roundTrip(ctx context.Context, p Probe) Result {
	s := r.probeServer(p.User)
	if s == nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s is not an address of a configured domain with a server", p.User),
			Fix: "set the probe user to a user declared in the configuration"}
	}
	return r.roundTripVia(ctx, p, s, false)
}

// roundTripVia is the round trip submitted through server s; node, for
// the round trip of one node of several (nodes.go): the probe is read
// back through s as well.
func (r *runner) roundTripVia(ctx context.Context, p Probe, s *config.Server, node bool) Result {
	token := newToken()
	_, fromDomain, _ := strings.Cut(p.User, "@")
	msgID := fmt.Sprintf("<mailctl-verify-%s@%s>", token, fromDomain)
	var imapHost string
	var imapPort int
	var implicit bool
	var err error
	if node && p.IMAPAddr == "" {
		imapHost, imapPort, implicit, err = serverIMAP(s)
	} else {
		imapHost, imapPort, implicit, err = r.probeIMAP(s, p)
	}
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: "give the IMAP server of " + p.To + " (host:port, implicit TLS)"}
	}
	start := time.Now()
	via, err := r.submitProbe(ctx, s, p, msgID, token)
	var pe probeError
	if errors.As(err, &pe) {
		return pe.result()
	}
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: "check the server's logs"}
	}
	header, err := r.fetchProbe(ctx, imapHost, imapPort, implicit, p, msgID)
	if err != nil {
		if errors.As(err, &pe) {
			return pe.result()
		}
		return Result{Status: Fail, Detail: err.Error(), Fix: "check the server's logs and queue (mailctl serve queue)"}
	}
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	// The field of the recipient's server, or of any server of its
	// domain (they share the queue: any may deliver); another receiver:
	// its topmost field.
	var authservs []string
	if d := r.probeDomain(p.To); d != nil && p.IMAPAddr == "" {
		authservs = hostnames(d)
	}
	return judgeProbe(header, authservs, p.To, fromDomain, via, elapsed)
}

// probeError is a failure with its fix.
type probeError struct {
	status      Status
	detail, fix string
}

func (e probeError) Error() string  { return e.detail }
func (e probeError) result() Result { return Result{Status: e.status, Detail: e.detail, Fix: e.fix} }

func newToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// probeMessage is the probe: plain text, with a unique Message-ID and
// subject.
func probeMessage(from, to, msgID, token string, now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\n", from, to)
	fmt.Fprintf(&b, "Subject: mailctl verify round trip %s\r\n", token)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: %s\r\n", now.Format(time.RFC1123Z), msgID)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString("This message was sent by mailctl verify to check that mail submitted here\r\n")
	b.WriteString("passes SPF, DKIM and DMARC. It is deleted once read; you may delete it.\r\n")
	return b.Bytes()
}

// submitProbe sends the probe on 465 (implicit TLS) or 587 (STARTTLS) and
// returns "host:port" it went through. Its errors are probeErrors.
func (r *runner) submitProbe(ctx context.Context, s *config.Server, p Probe, msgID, token string) (string, error) {
	port, implicit := s.Ports.Submissions, true
	if port == 0 {
		port, implicit = s.Ports.Submission, false
	}
	if port == 0 {
		return "", probeError{Fail, "the server has no submission port (465 or 587)", "enable submissions on the server"}
	}
	hostport := net.JoinHostPort(s.Hostname, strconv.Itoa(port))
	fixConn := fmt.Sprintf("check that the server listens on port %d and that the firewall lets it through", port)
	conn, err := r.dial(ctx, s.Hostname, port)
	if err != nil {
		return "", probeError{Fail, err.Error(), fixConn}
	}
	tc := &tls.Config{ServerName: s.Hostname, RootCAs: r.o.Roots, Time: r.o.Now}
	var c *smtp.Client
	if implicit {
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return "", probeError{Fail, fmt.Sprintf("TLS handshake with %s: %v", hostport, err), "see the tls check of " + hostport}
		}
		c = smtp.NewClient(tlsConn)
	} else {
		c, err = smtp.NewClientStartTLS(conn, tc)
		if err != nil {
			conn.Close()
			return "", probeError{Fail, fmt.Sprintf("STARTTLS with %s: %v", hostport, err), "see the tls check of " + hostport}
		}
	}
	defer c.Close()
	if err := c.Hello(r.o.HeloName); err != nil {
		return "", probeError{Fail, fmt.Sprintf("EHLO to %s: %v", hostport, err), fixConn}
	}
	if err := c.Auth(sasl.NewPlainClient("", p.User, p.Password)); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == 535 {
			return "", probeError{Fail, fmt.Sprintf("authentication failed for %s on %s (%d %s)", p.User, hostport, se.Code, se.Message),
				"check the probe password: its argon2id hash (mailctl passwd) must be the password_hash of user \"" + p.User + "\", deployed with mailctl apply"}
		}
		return "", probeError{Fail, fmt.Sprintf("AUTH as %s on %s: %v", p.User, hostport, err), "check the server's logs"}
	}
	msg := probeMessage(p.User, p.To, msgID, token, time.Now())
	if err := c.SendMail(p.User, []string{p.To}, bytes.NewReader(msg)); err != nil {
		return "", probeError{Fail, fmt.Sprintf("submit the probe from %s to %s on %s: %v", p.User, p.To, hostport, err),
			"check that " + p.User + " may send and that " + p.To + " exists"}
	}
	c.Quit()
	r.log.Debug("probe submitted", "host", hostport, "to", p.To)
	return hostport, nil
}

// probeIMAP returns where To's mailbox is read.
func (r *runner) probeIMAP(s *config.Server, p Probe) (host string, port int, implicit bool, err error) {
	if p.IMAPAddr != "" {
		h, ps, err := net.SplitHostPort(p.IMAPAddr)
		if err != nil {
			return "", 0, false, fmt.Errorf("IMAP address %q: %w", p.IMAPAddr, err)
		}
		n, err := strconv.Atoi(ps)
		if err != nil {
			return "", 0, false, fmt.Errorf("IMAP address %q: bad port", p.IMAPAddr)
		}
		return h, n, true, nil
	}
	if ts := r.probeServer(p.To); ts != nil {
		s = ts
	} else if p.To != p.User {
		return "", 0, false, fmt.Errorf("%s is outside the configured domains and no IMAP server is given for it", p.To)
	}
	return serverIMAP(s)
}

// serverIMAP returns where server s serves IMAP: its implicit-TLS port,
// else its STARTTLS port.
func serverIMAP(s *config.Server) (host string, port int, implicit bool, err error) {
	if s.Ports.IMAPS != 0 {
		return s.Hostname, s.Ports.IMAPS, true, nil
	}
	if s.Ports.IMAP != 0 {
		return s.Hostname, s.Ports.IMAP, false, nil
	}
	return "", 0, false, fmt.Errorf("the server %s has no IMAP port", s.Hostname)
}

// imapLogin connects to host:port over TLS (implicit or STARTTLS) and
// logs in as the probe's IMAP user. Its errors are probeErrors, except
// those of ctx.
func (r *runner) imapLogin(ctx context.Context, host string, port int, implicit bool, p Probe) (*imapclient.Client, error) {
	hostport := net.JoinHostPort(host, strconv.Itoa(port))
	fixConn := fmt.Sprintf("check that %s listens on port %d", host, port)
	conn, err := r.dial(ctx, host, port)
	if err != nil {
		return nil, probeError{Fail, err.Error(), fixConn}
	}
	opts := &imapclient.Options{TLSConfig: &tls.Config{ServerName: host, RootCAs: r.o.Roots, Time: r.o.Now}}
	var c *imapclient.Client
	if implicit {
		tlsConn := tls.Client(conn, opts.TLSConfig)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, probeError{Fail, fmt.Sprintf("TLS handshake with %s: %v", hostport, err), "see the tls check of " + hostport}
		}
		c = imapclient.New(tlsConn, opts)
	} else {
		c, err = imapclient.NewStartTLS(conn, opts)
		if err != nil {
			conn.Close()
			return nil, probeError{Fail, fmt.Sprintf("IMAP STARTTLS with %s: %v", hostport, err), "see the tls check of " + hostport}
		}
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, probeError{Fail, fmt.Sprintf("IMAP greeting of %s: %v", hostport, err), fixConn}
	}
	if err := c.Login(p.IMAPUser, p.IMAPPassword).Wait(); err != nil {
		c.Close()
		return nil, probeError{Fail, fmt.Sprintf("IMAP authentication failed for %s on %s: %v", p.IMAPUser, hostport, err),
			"check the IMAP login and password of " + p.To}
	}
	return c, nil
}

// fetchProbe logs in over IMAP, polls the INBOX until the probe is there
// (bounded by ctx), returns its header section and deletes it.
func (r *runner) fetchProbe(ctx context.Context, host string, port int, implicit bool, p Probe, msgID string) (header []byte, err error) {
	hostport := net.JoinHostPort(host, strconv.Itoa(port))
	c, err := r.imapLogin(ctx, host, port, implicit, p)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The client's commands do not take a context: closing the connection
	// ends them when ctx is done.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return nil, fmt.Errorf("select the INBOX of %s: %w", p.IMAPUser, err)
	}
	id := strings.Trim(msgID, "<>")
	criteria := &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: id}}}
	var uids []imap.UID
	deadline := time.Now().Add(p.Wait)
	for {
		if err := c.Noop().Wait(); err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("IMAP NOOP on %s: %w", hostport, err)
		}
		data, err := c.UIDSearch(criteria, nil).Wait()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("IMAP SEARCH on %s: %w", hostport, err)
		}
		if uids = data.AllUIDs(); len(uids) > 0 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(p.Poll, time.Until(deadline)+time.Millisecond)):
			continue
		}
		break
	}
	if len(uids) == 0 {
		return nil, probeError{Fail, fmt.Sprintf("the probe did not arrive in the INBOX of %s within %s", p.To, p.Wait),
			"check the server's queue (mailctl serve queue) and logs for the message " + msgID}
	}
	set := imap.UIDSetNum(uids...)
	defer r.deleteProbe(c, set, hostport)
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		return nil, fmt.Errorf("IMAP FETCH the probe on %s: %w", hostport, err)
	}
	for _, m := range msgs {
		if h := m.FindBodySection(section); h != nil {
			return h, nil
		}
	}
	return nil, fmt.Errorf("IMAP FETCH on %s returned no header for the probe", hostport)
}

// deleteProbe flags the probe \Deleted and expunges it (only it, with
// UIDPLUS).
func (r *runner) deleteProbe(c *imapclient.Client, set imap.UIDSet, hostport string) {
	err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if err == nil {
		if c.Caps().Has(imap.CapUIDPlus) {
			err = c.UIDExpunge(set).Close()
		} else {
			err = c.Expunge().Close()
		}
	}
	if err != nil {
		r.log.Warn("delete the probe", "host", hostport, "err", err)
	}
	c.Logout().Wait()
}

// judgeProbe reads the Authentication-Results field of authserv (any
// authserv-id when empty: the topmost field) in the probe's header.
func judgeProbe(header []byte, authservs []string, to, fromDomain, via string, elapsed time.Duration) Result {
	m, err := mail.ReadMessage(bytes.NewReader(append(bytes.TrimRight(header, "\r\n"), "\r\n\r\n"...)))
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("the probe's header does not parse: %v", err), Fix: "check the server's logs"}
	}
	var results []authres.Result
	found := false
	for _, v := range m.Header["Authentication-Results"] {
		id, rs, err := authres.Parse(v)
		if err != nil && id == "" {
			continue
		}
		if len(authservs) == 0 || slices.ContainsFunc(authservs, func(a string) bool { return strings.EqualFold(strings.TrimSuffix(id, "."), a) }) {
			results, found = rs, true
			break
		}
	}
	who := strings.Join(authservs, " or ")
	if who == "" {
		who = "the receiver"
	}
	if !found {
		return Result{Status: Fail, Detail: fmt.Sprintf("the probe reached %s after %s but has no Authentication-Results field from %s", to, elapsed, who),
			Fix: "deploy the current server with mailctl apply (it records SPF, DKIM and DMARC on submitted local mail) and make sure its resolvers answer for its own host name"}
	}
	// One result per method; of several DKIM signatures the best counts
	// (one pass is enough: DMARC judges alignment).
	rank := map[string]int{"pass": 0, "fail": 1, "temperror": 2, "permerror": 3}
	got := map[string]string{}
	for _, res := range results {
		prev, ok := got[res.Method]
		if !ok || res.Method == "dkim" && rankOf(rank, res.Value) < rankOf(rank, prev) {
			got[res.Method] = res.Value
		}
	}
	var fs []finding
	for _, method := range []string{"spf", "dkim", "dmarc"} {
		v := got[method]
		if v == "pass" {
			continue
		}
		if v == "" {
			v = "missing"
		}
		fs = append(fs, finding{Fail, method + "=" + v, probeFix(method, v, fromDomain)})
	}
	summary := fmt.Sprintf("spf=%s dkim=%s dmarc=%s", orMissing(got["spf"]), orMissing(got["dkim"]), orMissing(got["dmarc"]))
	if len(fs) > 0 {
		res := combine("", fs)
		res.Detail = fmt.Sprintf("probe via %s read back from %s after %s: %s", via, to, elapsed, res.Detail)
		return res
	}
	return Result{Status: Pass, Detail: fmt.Sprintf("probe via %s read back from %s after %s: %s", via, to, elapsed, summary)}
}

func rankOf(rank map[string]int, v string) int {
	if n, ok := rank[v]; ok {
		return n
	}
	return len(rank)
}

func orMissing(v string) string {
	if v == "" {
		return "missing"
	}
	return v
}

// probeFix is the one-line fix of a method's result.
func probeFix(method, value, domain string) string {
	temp := "the DNS servers of the receiver did not answer: check the server's dns_servers and that the zone of " + domain + " is served, then run mailctl verify again"
	switch method + "=" + value {
	case "dkim=fail":
		return "dkim=fail: the published DKIM key differs from the server's: run mailctl apply"
	case "dkim=permerror":
		return "dkim=permerror: no usable DKIM key is published for " + domain + ": run mailctl apply"
	case "dkim=none", "dkim=missing":
		return "the probe was not DKIM-signed: give domain \"" + domain + "\" a dkim block and run mailctl apply"
	case "spf=fail", "spf=softfail", "spf=neutral":
		return "spf=" + value + ": the SPF record of " + domain + " does not allow the server's sending IP: run mailctl apply"
	case "spf=none":
		return "no SPF record at " + domain + ": run mailctl apply"
	case "spf=permerror":
		return "the SPF record of " + domain + " is invalid: see the spf check and run mailctl apply"
	case "dmarc=fail":
		return "dmarc=fail: neither SPF nor DKIM passes aligned with " + domain + ": fix those first"
	case "dmarc=none", "dmarc=missing":
		return "no DMARC record at _dmarc." + domain + ": run mailctl apply"
	case "dmarc=permerror":
		return "the DMARC record of " + domain + " is invalid: see the dmarc check and run mailctl apply"
	}
	if value == "temperror" {
		return method + "=temperror: " + temp
	}
	return method + "=" + value + ": see the " + method + " check and run mailctl apply"
}
