package queue

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/store"
)

// result is the outcome of one attempt for one recipient.
type result struct {
	rcpt   string
	ok     bool
	perm   bool
	status string // RFC 3463, e.g. "5.1.1"
	diag   string // reply or error text
	mta    string // remote host that replied
}

func allResults(rcpts []string, r result) []result {
	out := make([]result, len(rcpts))
	for i, a := range rcpts {
		out[i] = r
		out[i].rcpt = a
	}
	return out
}

func tempAll(rcpts []string, status, mta, format string, args ...any) []result {
	return allResults(rcpts, result{status: status, mta: mta, diag: fmt.Sprintf(format, args...)})
}

func permAll(rcpts []string, status, mta, format string, args ...any) []result {
	return allResults(rcpts, result{perm: true, status: status, mta: mta, diag: fmt.Sprintf(format, args...)})
}

// attempt makes one delivery attempt of message id and records its
// outcome. l is the lease under which a node of the shared queue claimed
// it (nil for the embedded backend): it is renewed while the attempt runs.
func (q *Queue) attempt(ctx context.Context, id string, l *lease) {
	m, err := q.be.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		q.unschedule(id)
		if l != nil {
			q.pg.release(context.WithoutCancel(ctx), l)
		}
		return
	}
	if err != nil {
		q.log.Error("read queue record", "id", id, "err", err)
		if l != nil {
			q.pg.release(context.WithoutCancel(ctx), l)
		}
		return
	}
	log := q.log.With("id", id, "domain", m.Domain)
	var stopRenew func()
	if l != nil {
		// A lease lost (renewal refused) stops the attempt: another node
		// now owns the message.
		var dctx context.Context
		dctx, stopRenew = q.pg.keepLease(ctx, log, l)
		defer stopRenew()
		ctx = dctx
	}
	rcpts := m.pending()
	var res []result
	var deferTo time.Time
	f, err := q.be.openBody(ctx, m)
	if err != nil {
		log.Error("open queued message", "err", err)
		res = tempAll(rcpts, "4.3.0", "", "local error: %v", err)
	} else {
		defer f.Close()
		body := func() io.Reader {
			return io.MultiReader(strings.NewReader(m.DKIM), io.NewSectionReader(f, 0, m.Size))
		}
		res, deferTo = q.route(ctx, log, m, rcpts, body)
	}
	if ctx.Err() != nil && deferTo.IsZero() {
		// Shutting down: what was not settled stays due.
		var settled []result
		for _, r := range res {
			if r.ok || r.perm {
				settled = append(settled, r)
			}
		}
		if len(settled) == 0 {
			if l != nil {
				stopRenew()
				q.pg.release(context.WithoutCancel(ctx), l)
			}
			return
		}
		res = settled
	}
	if l != nil {
		stopRenew()
	}
	if err := q.recordOutcome(ctx, log, l, m, f, res, deferTo); err != nil {
		log.Error("record delivery outcome", "err", err)
	}
}

// recordOutcome records an attempt's outcome. In the shared queue a
// failed commit (the database restarting, a connection cut) is retried,
// with a doubling pause, for half the lease time, within which the lease
// is surely still ours (it was renewed at most a third of the lease time
// ago): otherwise what the remote server accepted would be sent again
// once the lease expired.
func (q *Queue) recordOutcome(ctx context.Context, log logger, l *lease, m *Message, f bodyReader, res []result, deferTo time.Time) error {
	err := q.record(ctx, l, m, f, res, deferTo)
	if l == nil {
		return err
	}
	deadline := time.Now().Add(q.opts.LeaseTime / 2)
	for wait := 50 * time.Millisecond; err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, errLeaseLost) &&
		time.Now().Add(wait).Before(deadline); wait *= 2 {
		log.Warn("record delivery outcome, retrying", "err", err, "in", wait)
		time.Sleep(wait)
		err = q.record(ctx, l, m, f, res, deferTo)
	}
	return err
}

// route picks local delivery, the relay or direct delivery. A non-zero
// time defers the message without counting an attempt (warm-up cap).
func (q *Queue) route(ctx context.Context, log logger, m *Message, rcpts []string, body func() io.Reader) ([]result, time.Time) {
	if q.opts.IsLocal != nil && q.opts.Deliver != nil && q.opts.IsLocal(m.Domain) {
		return q.deliverLocal(ctx, m, rcpts, body), time.Time{}
	}
	r := q.currentRelay()
	if r != nil && (r.all() || r.forDomain(m.Domain)) {
		return q.viaRelay(ctx, log, r, m, rcpts, body), time.Time{}
	}
	return q.direct(ctx, log, m, rcpts, body)
}

type logger interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

func (q *Queue) deliverLocal(ctx context.Context, m *Message, rcpts []string, body func() io.Reader) []result {
	out := make([]result, 0, len(rcpts))
	for _, rc := range rcpts {
		err := q.opts.Deliver(ctx, m.From, rc, body())
		var pe *PermanentError
		switch {
		case err == nil:
			out = append(out, result{rcpt: rc, ok: true, status: "2.0.0", mta: q.opts.Hostname})
		case errors.As(err, &pe):
			out = append(out, result{rcpt: rc, perm: true, status: localStatus(err), diag: err.Error(), mta: q.opts.Hostname})
		default:
			out = append(out, result{rcpt: rc, status: "4.3.0", diag: err.Error(), mta: q.opts.Hostname})
		}
	}
	return out
}

// localStatus is the RFC 3463 status of a permanent local delivery
// error: 5.2.2 (mailbox full) when the store refused the message over
// quota, else 5.1.1 (bad destination mailbox address).
func localStatus(err error) string {
	if errors.Is(err, store.ErrQuotaExceeded) {
		return "5.2.2"
	}
	return "5.1.1"
}

func (q *Queue) viaRelay(ctx context.Context, log logger, r *Relay, m *Message, rcpts []string, body func() io.Reader) []result {
	host, port, err := net.SplitHostPort(r.Address)
	if err != nil {
		return tempAll(rcpts, "4.3.5", "", "relay address %q: %v", r.Address, err)
	}
	ips, err := q.hostIPs(ctx, host)
	if err != nil {
		return tempAll(rcpts, "4.4.3", host, "resolve relay %q: %v", host, err)
	}
	var res []result
	for _, ip := range ips {
		var next bool
		res, next = q.session(ctx, sessionParams{
			addr: net.JoinHostPort(ip.String(), port), host: host, requireTLS: true, verify: true,
			implicitTLS: port == "465", relay: r, from: m.From, rcpts: rcpts, body: body, size: m.Size,
			smtputf8: m.SMTPUTF8,
		})
		if !next {
			break
		}
	}
	log.Info("relay attempt", "relay", r.Address, "outcome", summarize(res))
	return res
}

// hostIPs resolves host, or returns the literal IP, in the preferred
// family order.
func (q *Queue) hostIPs(ctx context.Context, host string) ([]net.IP, error) {
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := q.opts.Resolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	var v6, v4 []net.IP
	for _, ip := range ips {
		if ip.To4() != nil {
			v4 = append(v4, ip)
		} else {
			v6 = append(v6, ip)
		}
	}
	if q.opts.PreferIPv4 {
		return append(v4, v6...), nil
	}
	return append(v6, v4...), nil
}

// mxHosts returns the hosts to try for domain. perm is set when the domain
// cannot receive mail (null MX, no such domain).
func (q *Queue) mxHosts(ctx context.Context, domain string) (hosts []string, perm []string, err error) {
	mxs, err := q.opts.Resolver.LookupMX(ctx, domain)
	if err != nil && !notFound(err) {
		return nil, nil, err
	}
	if len(mxs) == 0 {
		// RFC 5321 section 5.1: no MX, the domain itself is the implicit MX.
		if _, err := q.opts.Resolver.LookupIPAddr(ctx, domain); err != nil {
			if notFound(err) {
				return nil, []string{"5.1.2", "domain " + domain + " has no MX and no address"}, nil
			}
			return nil, nil, err
		}
		return []string{domain}, nil, nil
	}
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" {
			if len(mxs) == 1 {
				return nil, []string{"5.1.10", "domain " + domain + " does not accept mail (null MX, RFC 7505)"}, nil
			}
			continue
		}
		hosts = append(hosts, h)
	}
	return hosts, nil, nil
}

func (q *Queue) direct(ctx context.Context, log logger, m *Message, rcpts []string, body func() io.Reader) ([]result, time.Time) {
	hosts, perm, err := q.mxHosts(ctx, m.Domain)
	if err != nil {
		return tempAll(rcpts, "4.4.3", "", "MX lookup for %s: %v", m.Domain, err), time.Time{}
	}
	if perm != nil {
		log.Info("destination refuses mail", "reason", perm[1])
		return permAll(rcpts, perm[0], "", "%s", perm[1]), time.Time{}
	}
	r := q.currentRelay()
	if r != nil {
		for _, h := range hosts {
			if r.forMX(h) {
				return q.viaRelay(ctx, log, r, m, rcpts, body), time.Time{}
			}
		}
	}
	if ok, next, err := q.warmupAllow(q.opts.Clock.Now()); err != nil {
		log.Error("warm-up counter", "err", err)
	} else if !ok {
		if q.opts.Warmup.OverflowRelay && r != nil {
			log.Info("warm-up cap reached, using the relay")
			return q.viaRelay(ctx, log, r, m, rcpts, body), time.Time{}
		}
		log.Info("warm-up cap reached, deferred", "until", next)
		return nil, next
	}
	var policy *STSPolicy
	if !q.opts.DisableMTASTS {
		policy = q.sts.get(ctx, log, m.Domain)
	}
	enforce := policy != nil && policy.Mode == "enforce"
	var res []result
	tried := false
	for _, h := range hosts {
		if enforce && !policy.matches(h) {
			log.Warn("MX host not allowed by the MTA-STS policy", "host", h)
			continue
		}
		ips, err := q.hostIPs(ctx, h)
		if err != nil {
			res = tempAll(rcpts, "4.4.3", h, "resolve MX %s: %v", h, err)
			continue
		}
		for _, ip := range ips {
			tried = true
			var next bool
			res, next = q.session(ctx, sessionParams{
				addr: net.JoinHostPort(ip.String(), strconv.Itoa(q.opts.Port)), host: h,
				requireTLS: enforce, verify: enforce, from: m.From, rcpts: rcpts, body: body, size: m.Size,
				smtputf8: m.SMTPUTF8,
			})
			log.Info("delivery attempt", "host", h, "ip", ip.String(), "outcome", summarize(res))
			if !next {
				return res, time.Time{}
			}
		}
	}
	if !tried && res == nil {
		if enforce {
			return tempAll(rcpts, "4.7.5", "", "no MX host of %s matches its MTA-STS policy", m.Domain), time.Time{}
		}
		return tempAll(rcpts, "4.4.4", "", "no usable address for the MX hosts of %s", m.Domain), time.Time{}
	}
	return res, time.Time{}
}

type sessionParams struct {
	addr, host  string
	requireTLS  bool // no STARTTLS or a failed handshake: try the next host
	verify      bool // verify the certificate for host
	implicitTLS bool
	plain       bool // do not try STARTTLS (fallback after a failed handshake)
	relay       *Relay
	from        string
	rcpts       []string
	body        func() io.Reader
	size        int64
	smtputf8    bool // the message needs SMTPUTF8: never sent without it
}

func (q *Queue) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	d := net.Dialer{Timeout: q.opts.DialTimeout}
	if ip != nil && ip.To4() != nil && q.opts.SourceIPv4 != nil {
		d.LocalAddr = &net.TCPAddr{IP: q.opts.SourceIPv4}
	}
	if ip != nil && ip.To4() == nil && q.opts.SourceIPv6 != nil {
		d.LocalAddr = &net.TCPAddr{IP: q.opts.SourceIPv6}
	}
	return d.DialContext(ctx, "tcp", addr)
}

// session runs one SMTP transaction, on a cached connection to the same
// address when one is idle. next reports whether the next address or MX
// host should be tried (the failure concerned this host, not the
// recipients).
func (q *Queue) session(ctx context.Context, p sessionParams) (res []result, next bool) {
	key := p.cacheKey()
	if pc := q.conns.take(key); pc != nil {
		if err := pc.c.Reset(); err == nil {
			res, next, healthy := q.transaction(ctx, pc, p)
			q.conns.release(key, pc, healthy)
			return res, next
		}
		pc.close()
	}
	pc, res, next := q.connect(ctx, p)
	if pc == nil {
		return res, next
	}
	res, next, healthy := q.transaction(ctx, pc, p)
	q.conns.release(key, pc, healthy)
	return res, next
}

func (p *sessionParams) cacheKey() string {
	k := fmt.Sprintf("%s|%s|%t|%t|%t|%t", p.addr, p.host, p.requireTLS, p.verify, p.implicitTLS, p.plain)
	if p.relay != nil {
		k += "|" + p.relay.Username + "|" + p.relay.Password
	}
	return k
}

// connect opens a connection, with TLS as p asks, says EHLO and
// authenticates to a relay.
func (q *Queue) connect(ctx context.Context, p sessionParams) (*pooledConn, []result, bool) {
	conn, err := q.dial(ctx, p.addr)
	if err != nil {
		return nil, tempAll(p.rcpts, "4.4.1", p.host, "connect to %s (%s): %v", p.host, p.addr, err), true
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fail := func(res []result, next bool) (*pooledConn, []result, bool) {
		conn.Close()
		return nil, res, next
	}
	tlsConf := &tls.Config{ServerName: p.host, InsecureSkipVerify: !p.verify, MinVersion: tls.VersionTLS12}
	if p.verify {
		base := q.opts.TLSConfig
		if p.relay != nil && p.relay.TLSConfig != nil {
			base = p.relay.TLSConfig
		}
		if base != nil {
			tlsConf = base.Clone()
			if tlsConf.ServerName == "" {
				tlsConf.ServerName = p.host
			}
			if tlsConf.MinVersion < tls.VersionTLS12 {
				tlsConf.MinVersion = tls.VersionTLS12
			}
		}
	}
	var c *gosmtp.Client
	secure := false
	if p.implicitTLS {
		tc := tls.Client(conn, tlsConf)
		hctx, cancel := context.WithTimeout(ctx, q.opts.CommandTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return fail(tempAll(p.rcpts, "4.7.5", p.host, "TLS with %s: %v", p.host, err), true)
		}
		c = gosmtp.NewClient(tc)
		secure = true
	} else {
		wrapped, isTLS, res, next := q.prelude(ctx, conn, tlsConf, p)
		if res != nil {
			conn.Close()
			if next && !isTLS && !p.requireTLS && !p.plain && res[0].status == "4.7.5" {
				// The handshake failed: RFC 7435 prefers a cleartext
				// delivery to none when nothing requires TLS.
				p.plain = true
				return q.connect(ctx, p)
			}
			return nil, res, next
		}
		c = gosmtp.NewClient(wrapped)
		secure = isTLS
	}
	c.CommandTimeout = q.opts.CommandTimeout
	if err := c.Hello(q.opts.Hostname); err != nil {
		return fail(tempAll(p.rcpts, "4.4.2", p.host, "EHLO: %v", err), true)
	}
	pc := &pooledConn{c: c, conn: conn}
	if p.relay != nil && p.relay.Username != "" {
		if !secure {
			pc.close()
			return nil, tempAll(p.rcpts, "4.7.5", p.host, "relay %s: no TLS, AUTH refused", p.host), true
		}
		if err := c.Auth(sasl.NewPlainClient("", p.relay.Username, p.relay.Password)); err != nil {
			pc.close()
			r := smtpResult("", err, p.host)
			r.perm = false // a credentials problem is fixed by the operator: keep retrying
			return nil, allResults(p.rcpts, r), false
		}
	}
	return pc, nil, false
}

// transaction sends one message on an open connection. healthy reports
// whether the connection may carry another one.
func (q *Queue) transaction(ctx context.Context, pc *pooledConn, p sessionParams) (res []result, next, healthy bool) {
	stop := context.AfterFunc(ctx, func() { pc.conn.Close() })
	defer stop()
	c := pc.c
	pc.uses++
	if p.smtputf8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return noSMTPUTF8(p), true, true
		}
	}
	if err := c.Mail(p.from, &gosmtp.MailOptions{Size: p.size, UTF8: p.smtputf8}); err != nil {
		r := smtpResult("", err, p.host)
		return allResults(p.rcpts, r), !r.perm && !isReply(err), false
	}
	res = make([]result, 0, len(p.rcpts))
	var accepted []int
	for _, rc := range p.rcpts {
		if err := c.Rcpt(rc, nil); err != nil {
			if !isReply(err) {
				return tempAll(p.rcpts, "4.4.2", p.host, "RCPT: %v", err), true, false
			}
			res = append(res, smtpResult(rc, err, p.host))
			continue
		}
		accepted = append(accepted, len(res))
		res = append(res, result{rcpt: rc, ok: true, status: "2.0.0", mta: p.host})
	}
	if len(accepted) == 0 {
		return res, false, c.Reset() == nil
	}
	fail := func(err error) ([]result, bool, bool) {
		r := smtpResult("", err, p.host)
		for _, i := range accepted {
			rc := res[i].rcpt
			res[i] = r
			res[i].rcpt = rc
		}
		return res, false, isReply(err)
	}
	w, err := c.Data()
	if err != nil {
		return fail(err)
	}
	if _, err := io.Copy(w, p.body()); err != nil {
		w.Close()
		res, next, _ := fail(fmt.Errorf("send message: %w", err))
		return res, next, false
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail(err)
	}
	for _, i := range accepted {
		res[i].diag = "250 " + resp.StatusText
	}
	return res, false, ctx.Err() == nil
}

func isReply(err error) bool {
	var se *gosmtp.SMTPError
	return errors.As(err, &se)
}

// smtpResult turns a reply or error into a result.
func smtpResult(rcpt string, err error, mta string) result {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		r := result{rcpt: rcpt, mta: mta, perm: se.Code >= 500, diag: fmt.Sprintf("%d %s", se.Code, se.Message)}
		ec := se.EnhancedCode
		if ec[0] >= 2 && ec[0] <= 5 {
			// The client split "550 5.1.1 No such user" into its parts: the
			// Diagnostic-Code is the reply as the server sent it.
			r.diag = fmt.Sprintf("%d %d.%d.%d %s", se.Code, ec[0], ec[1], ec[2], se.Message)
		}
		if ec[0] == 4 || ec[0] == 5 {
			r.status = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
			if ec[0] == 5 {
				r.perm = se.Code >= 500
			}
		} else if r.perm {
			r.status = "5.0.0"
		} else {
			r.status = "4.0.0"
		}
		if r.perm && r.status[0] != '5' {
			r.status = "5" + r.status[1:]
		}
		if !r.perm && r.status[0] != '4' {
			r.status = "4" + r.status[1:]
		}
		return r
	}
	return result{rcpt: rcpt, mta: mta, status: "4.4.2", diag: err.Error()}
}

// greetConn replays a greeting to go-smtp's client, which reads one first,
// on a connection whose real greeting was read by prelude.
type greetConn struct {
	net.Conn
	r io.Reader
}

func (g *greetConn) Read(p []byte) (int, error) { return g.r.Read(p) }

// prelude reads the greeting, sends EHLO and, when offered, STARTTLS. It
// returns the connection to hand to the SMTP client, or the results of a
// failure.
func (q *Queue) prelude(ctx context.Context, conn net.Conn, tlsConf *tls.Config, p sessionParams) (net.Conn, bool, []result, bool) {
	conn.SetDeadline(time.Now().Add(q.opts.CommandTimeout))
	defer conn.SetDeadline(time.Time{})
	br := bufio.NewReader(conn)
	tp := textproto.NewReader(br)
	code, msg, err := tp.ReadResponse(0)
	if err != nil && code == 0 {
		return nil, false, tempAll(p.rcpts, "4.4.2", p.host, "greeting from %s: %v", p.host, err), true
	}
	if code != 220 {
		// RFC 5321 section 3.1: a 554 greeting means "no service here".
		return nil, false, tempAll(p.rcpts, "4.4.2", p.host, "greeting from %s: %d %s", p.host, code, msg), true
	}
	if _, err := fmt.Fprintf(conn, "EHLO %s\r\n", q.opts.Hostname); err != nil {
		return nil, false, tempAll(p.rcpts, "4.4.2", p.host, "EHLO to %s: %v", p.host, err), true
	}
	_, msg, err = tp.ReadResponse(250)
	starttls := false
	if err == nil {
		for _, l := range strings.Split(msg, "\n") {
			if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
				starttls = true
			}
		}
	}
	if !starttls || p.plain {
		if p.requireTLS {
			return nil, false, tempAll(p.rcpts, "4.7.5", p.host, "%s does not offer STARTTLS, which its policy requires", p.host), true
		}
		// Replay a greeting: go-smtp's client greets again with EHLO (or
		// HELO when EHLO failed), which servers accept.
		return &greetConn{Conn: conn, r: io.MultiReader(strings.NewReader("220 "+p.host+"\r\n"), br)}, false, nil, false
	}
	if br.Buffered() > 0 {
		return nil, false, tempAll(p.rcpts, "4.4.2", p.host, "%s sent data before STARTTLS", p.host), true
	}
	if _, err := fmt.Fprintf(conn, "STARTTLS\r\n"); err != nil {
		return nil, false, tempAll(p.rcpts, "4.4.2", p.host, "STARTTLS to %s: %v", p.host, err), true
	}
	if code, msg, err = tp.ReadResponse(220); err != nil {
		return nil, false, tempAll(p.rcpts, "4.7.5", p.host, "STARTTLS refused by %s: %d %s", p.host, code, msg), true
	}
	tc := tls.Client(conn, tlsConf)
	hctx, cancel := context.WithTimeout(ctx, q.opts.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, false, tempAll(p.rcpts, "4.7.5", p.host, "TLS with %s: %v", p.host, err), true
	}
	return &greetConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 "+p.host+"\r\n"), tc)}, true, nil, false
}

func summarize(res []result) string {
	ok, perm, temp := 0, 0, 0
	last := ""
	for _, r := range res {
		switch {
		case r.ok:
			ok++
		case r.perm:
			perm++
			last = r.diag
		default:
			temp++
			last = r.diag
		}
	}
	s := fmt.Sprintf("delivered=%d failed=%d deferred=%d", ok, perm, temp)
	if last != "" {
		s += ": " + last
	}
	return s
}

// matchHost matches a host against "host" or "*.domain" (one label).
func matchHost(pattern, host string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		i := strings.IndexByte(host, '.')
		return i > 0 && host[i+1:] == rest
	}
	return pattern == host
}
