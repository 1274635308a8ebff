package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/internal/limits"
	"github.com/mailctl/mailctl/server/store"
)

// Replies (RFC 5321 section 4.2, enhanced codes RFC 3463).
var (
	errAuthRequired     = &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errEncryptionNeeded = &gosmtp.SMTPError{Code: 538, EnhancedCode: gosmtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
	errAuthThrottled    = &gosmtp.SMTPError{Code: 454, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures from your address, try later"}
	errAuthTemp         = &gosmtp.SMTPError{Code: 454, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	errRelayDenied      = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	errNoSuchUser       = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errBadRcptSyntax    = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 1, 3}, Message: "Recipient address refused (syntax)"}
	errBadSenderSyntax  = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 1, 7}, Message: "Sender address refused (syntax)"}
	errNotYourAddress   = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Sender address not owned by the authenticated user"}
	errNoOutbound       = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "Outbound delivery not configured"}
	errQuota            = &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	errLoop             = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 4, 6}, Message: "Too many Received headers: mail loop"}
	errLocalTemp        = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Local delivery failed, try again later"}
	errQueueTemp        = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Could not queue the message, try again later"}
	errFromNotYours     = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "From header address not owned by the authenticated user"}
	errBadFrom          = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Message needs exactly one From header with valid addresses"}
	errLineTooLong      = &gosmtp.SMTPError{Code: 500, EnhancedCode: gosmtp.EnhancedCode{5, 4, 0}, Message: "Line too long"}
	errHeaderTooLarge   = &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message header too large (limit %d bytes, %d lines)", limits.MaxHeaderBytes, limits.MaxHeaderLines)}
	errBareCRLF         = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Message contains a bare CR or LF: every line must end with CRLF"}
	errLongLineOut      = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: fmt.Sprintf("Line longer than %d bytes in a message to relay: encode it (quoted-printable or base64)", limits.MaxOutgoingLineBytes)}
	errReadBody         = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Could not receive the message"}
	errTimeout          = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 4, 2}, Message: "Timeout, closing connection"}
	errCheckTemp        = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure checking the message, try again later"}
)

// maxParallelDeliveries bounds concurrent store deliveries of one message.
const maxParallelDeliveries = 4

type session struct {
	s      *Server
	conn   *gosmtp.Conn
	remote net.Addr
	tls    *tls.ConnectionState
	log    *slog.Logger

	// busy is set while a DATA body is read and delivered (Shutdown waits).
	busy atomic.Bool

	user string // authenticated user, "" if none

	clientChecked bool // Inbound.CheckClient passed

	// transaction
	utf8     bool // MAIL FROM had SMTPUTF8
	from     string
	rcpts    []string
	users    map[string]bool
	outbound map[string]bool
}

func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	if connTimedOut(c.Conn()) {
		return nil, errTimeout
	}
	markTLS(c.Conn())
	se := &session{s: s, conn: c, remote: c.Conn().RemoteAddr()}
	if st, ok := c.TLSConnectionState(); ok {
		se.tls = &st
	}
	se.log = s.log.With("ip", hostOf(se.remote))
	se.Reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "Shutting down"}
	}
	s.sessions[se] = struct{}{}
	return se, nil
}

func (se *session) Reset() {
	se.utf8 = false
	se.from = ""
	se.rcpts = nil
	se.users = map[string]bool{}
	se.outbound = map[string]bool{}
}

func (se *session) Logout() error {
	if se.conn != nil {
		markTLS(se.conn.Conn()) // after STARTTLS, go-smtp ends the session
	}
	se.s.mu.Lock()
	delete(se.s.sessions, se)
	se.s.mu.Unlock()
	return nil
}

func (se *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(se.s.opts.BaseContext, se.s.opts.Limits.Timeout)
}

// AuthMechanisms lists PLAIN and LOGIN in the submission modes (go-smtp
// advertises them only once the connection is TLS).
func (se *session) AuthMechanisms() []string {
	if se.s.opts.Mode == ModeMX {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if se.timedOut() {
		return nil, errTimeout
	}
	if se.s.opts.Mode == ModeMX {
		return nil, gosmtp.ErrAuthUnsupported
	}
	if se.tls == nil {
		return nil, errEncryptionNeeded
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return gosmtp.ErrAuthFailed // no acting as another user
			}
			return se.authenticate(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{authenticate: se.authenticate}, nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

func (se *session) authenticate(username, password string) error {
	if se.timedOut() {
		return errTimeout
	}
	ctx, cancel := se.ctx()
	defer cancel()
	user, err := se.s.opts.Auth.Authenticate(ctx, username, password, se.remote)
	switch {
	case err == nil:
		se.user = user
		se.log = se.log.With("user", user)
		se.log.Info("authenticated")
		return nil
	case errors.Is(err, auth.ErrTooManyFailures):
		var le *auth.LockoutError
		if errors.As(err, &le) {
			e := *errAuthThrottled
			e.Message = fmt.Sprintf("Too many authentication failures from your address, try again in %d minutes", le.RetryMinutes())
			return &e
		}
		return errAuthThrottled
	case errors.Is(err, auth.ErrInvalidCredentials):
		return gosmtp.ErrAuthFailed
	default:
		se.log.Warn("authentication error", "err", err)
		return errAuthTemp
	}
}

func (se *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if se.timedOut() {
		return errTimeout
	}
	se.utf8 = opts != nil && opts.UTF8
	if !se.utf8 && !auth.IsASCII(from) {
		return errNeedSMTPUTF8
	}
	if se.s.opts.Mode != ModeMX {
		if se.user == "" {
			return errAuthRequired
		}
		a, err := auth.ParseAddress(from)
		if err != nil {
			return errBadSenderSyntax
		}
		if !se.s.opts.Directory.MaySendAs(se.user, a.String()) {
			se.log.Info("sender refused", "from", from)
			return errNotYourAddress
		}
		se.from = a.String()
		return nil
	}
	// MX: any well-formed reverse path, including the null one (bounces).
	if !auth.IsASCII(from) {
		a, err := auth.ParseAddress(from)
		if err != nil {
			return errBadSenderSyntax
		}
		from = a.String() // A-label domain, for SPF and bounces
	}
	for i := 0; i < len(from); i++ {
		if from[i] <= ' ' || from[i] == 0x7f {
			return errBadSenderSyntax
		}
	}
	if in := se.s.opts.Inbound; in != nil && !se.clientChecked {
		ctx, cancel := se.ctx()
		defer cancel()
		if err := in.CheckClient(ctx, se.envelope()); err != nil {
			return se.inboundError("client refused", err)
		}
		se.clientChecked = true
	}
	se.from = from
	return nil
}

// envelope describes the transaction for the inbound checks.
func (se *session) envelope() Envelope {
	env := Envelope{Helo: se.conn.Hostname(), From: se.from, Rcpts: se.rcpts, TLS: se.tls != nil}
	if ta, ok := se.remote.(*net.TCPAddr); ok {
		env.RemoteIP = ta.IP
	} else {
		env.RemoteIP = net.ParseIP(hostOf(se.remote))
	}
	return env
}

// inboundError turns a check's error into the reply.
func (se *session) inboundError(what string, err error) error {
	var serr *gosmtp.SMTPError
	if errors.As(err, &serr) {
		se.log.Info(what, "reply", serr.Code, "reason", serr.Message)
		return serr
	}
	se.log.Warn(what+": check failed", "err", err)
	return errCheckTemp
}

func (se *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if se.timedOut() {
		return errTimeout
	}
	var res auth.Resolution
	var a auth.Address
	var err error
	if strings.EqualFold(to, "postmaster") {
		// RFC 5321 section 4.5.1: "<Postmaster>" without a domain is
		// this host's postmaster (go-smtp passes it on as is).
		var addr string
		if addr, res, err = se.s.opts.Directory.ResolvePostmaster(se.s.opts.Hostname); err == nil {
			a, err = auth.ParseAddress(addr)
		}
	} else {
		if !se.utf8 && !auth.IsASCII(to) {
			se.log.Info("recipient refused: non-ASCII without SMTPUTF8", "rcpt", to)
			return errNeedSMTPUTF8
		}
		a, err = auth.ParseAddress(to)
		if err != nil {
			se.log.Info("recipient refused: syntax", "rcpt", to, "err", err)
			return errBadRcptSyntax
		}
		res, err = se.s.opts.Directory.Resolve(a.String())
	}
	switch {
	case errors.Is(err, auth.ErrNotLocal):
		if se.user == "" {
			se.log.Info("recipient refused: relay", "rcpt", a.String())
			return errRelayDenied
		}
		if se.s.opts.Queue == nil {
			return errNoOutbound
		}
		se.outbound[a.String()] = true
	case errors.Is(err, auth.ErrUnknownRecipient):
		se.log.Info("recipient refused: unknown", "rcpt", a.String())
		return errNoSuchUser
	case err != nil:
		return errBadRcptSyntax
	default:
		if len(res.Remote) > 0 && se.s.opts.Queue == nil {
			return errNoOutbound
		}
		if in := se.s.opts.Inbound; in != nil && se.s.opts.Mode == ModeMX && se.user == "" {
			ctx, cancel := se.ctx()
			err := in.CheckRecipient(ctx, se.envelope(), a.String())
			cancel()
			if err != nil {
				return se.inboundError("recipient refused", err)
			}
		}
		if len(res.Users) > 0 && se.allOverQuota(res.Users) {
			return errQuota
		}
		for _, u := range res.Users {
			se.users[u] = true
		}
		for _, r := range res.Remote {
			se.outbound[r] = true
		}
	}
	se.rcpts = append(se.rcpts, a.String())
	return nil
}

// allOverQuota reports whether every user is already at or over quota, when
// the store can tell.
func (se *session) allOverQuota(users []string) bool {
	qr, ok := se.s.opts.Store.(QuotaReporter)
	if !ok {
		return false
	}
	ctx, cancel := se.ctx()
	defer cancel()
	for _, u := range users {
		q, err := qr.Quota(ctx, u)
		if err != nil || q <= 0 {
			return false
		}
		used, _, err := qr.Usage(ctx, u)
		if err != nil || used < q {
			return false
		}
	}
	return true
}

// timedOut reports whether a read of this connection timed out: a
// command's line was cut short, and must not be acted on.
func (se *session) timedOut() bool { return se.conn != nil && connTimedOut(se.conn.Conn()) }

func (se *session) Data(r io.Reader) error {
	se.busy.Store(true)
	defer se.busy.Store(false)
	start := time.Now()
	id := newID()
	log := se.log.With("id", id)

	if se.timedOut() {
		return errTimeout
	}
	lim := se.s.opts.Limits
	dd := &dataDeadline{idle: lim.Timeout, total: lim.DataTimeout, minRate: lim.MinDataRate, start: start}
	if lc := limitConnOf(se.conn.Conn()); lc != nil {
		lc.data.Store(dd)
		defer lc.data.Store(nil)
	}
	stats := &lineStats{r: limits.NewHeaderReader(r)}
	sp, err := newSpool(se.s.opts.SpoolDir, stats)
	if err != nil {
		var serr *gosmtp.SMTPError
		if errors.Is(err, gosmtp.ErrTooLongLine) {
			log.Info("message refused: line too long")
			return errLineTooLong
		}
		if errors.Is(err, os.ErrDeadlineExceeded) || se.timedOut() {
			log.Info("message refused: timeout", "bytes", dd.n.Load(), "ms", time.Since(start).Milliseconds())
			return errTimeout
		}
		if errors.Is(err, limits.ErrHeaderTooLarge) {
			log.Info("message refused: header too large")
			return errHeaderTooLarge
		}
		if errors.As(err, &serr) {
			log.Info("message refused", "err", serr.Message)
			return serr // 552 5.3.4 when over the size limit
		}
		log.Warn("receive message", "err", err)
		return errReadBody
	}
	defer sp.Close()

	// The header reader made sure the whole header is in this much.
	h := scanHeader(sp.head(limits.MaxHeaderBytes))
	if h.Received >= maxReceived {
		log.Warn("message refused: loop", "received", h.Received)
		return errLoop
	}
	// What leaves the server must be read alike by every next hop: no
	// bare CR or LF (a hop that ends lines or the DATA at one would see
	// another message or another header), no line over RFC 5322's limit.
	if (se.s.opts.Mode != ModeMX || len(se.outbound) > 0) && (stats.bareCR || stats.bareLF) {
		log.Info("message refused: bare CR or LF", "bare_cr", stats.bareCR, "bare_lf", stats.bareLF)
		return errBareCRLF
	}
	// A submission client can encode its message; mail from outside to
	// an alias that forwards is folded for the next hop instead.
	fold := len(se.outbound) > 0 && stats.maxLine > limits.MaxOutgoingLineBytes
	if fold && se.s.opts.Mode != ModeMX {
		log.Info("message refused: line too long to relay", "line", stats.maxLine)
		return errLongLineOut
	}
	if se.s.opts.Mode != ModeMX {
		if h.Malformed != "" {
			log.Info("message refused: malformed header", "err", h.Malformed)
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Malformed " + h.Malformed}
		}
		if err := se.checkFrom(h); err != nil {
			log.Info("message refused: From header", "err", err.Message)
			return err
		}
	}
	now := time.Now()
	var prefix bytes.Buffer
	ti := traceInfo{
		Helo: se.conn.Hostname(), RemoteIP: hostOf(se.remote), Hostname: se.s.opts.Hostname,
		Auth: se.user != "", ID: id, Date: now,
	}
	if se.tls != nil {
		ti.TLS = tls.VersionName(se.tls.Version) + " " + tls.CipherSuiteName(se.tls.CipherSuite)
	}
	if len(se.rcpts) == 1 {
		ti.For = se.rcpts[0]
	}
	ti.UTF8 = se.utf8
	mailbox := "INBOX"
	var remove [][2]int64
	if in := se.s.opts.Inbound; in != nil && se.s.opts.Mode == ModeMX && se.user == "" {
		ctx, cancel := se.ctx()
		v, err := in.CheckMessage(ctx, se.envelope(), sp.readerAt(), sp.size)
		cancel()
		if err != nil {
			return se.inboundError("message refused", err)
		}
		prefix.WriteString(v.Header)
		remove = v.Remove
		if v.Junk {
			mailbox = "Junk"
		}
	}
	prefix.WriteString(receivedField(ti))
	if se.s.opts.Mode != ModeMX {
		// RFC 6409 section 8: a submission server may complete the message.
		if !h.HasDate {
			fmt.Fprintf(&prefix, "Date: %s\r\n", now.Format(time.RFC1123Z))
		}
		if !h.HasMessageID {
			fmt.Fprintf(&prefix, "Message-ID: <%s@%s>\r\n", id, se.s.opts.Hostname)
		}
	}
	body := func() io.Reader { return io.MultiReader(bytes.NewReader(prefix.Bytes()), sp.readerWithout(remove)) }

	outUTF8 := len(se.outbound) > 0 && se.needSMTPUTF8(sp.head(limits.MaxHeaderBytes))
	if _, ok := se.s.opts.Queue.(UTF8Queue); outUTF8 && !ok {
		log.Info("message refused: the outbound queue cannot keep SMTPUTF8")
		return errNeedSMTPUTF8Out
	}
	ctx, cancel := se.ctx()
	defer cancel()
	if err := se.deliverLocal(ctx, log, body, now, mailbox); err != nil {
		return err
	}
	if len(se.outbound) > 0 {
		to := sortedSet(se.outbound)
		out := body()
		if fold {
			out = &foldReader{r: bufio.NewReader(out)}
			log.Info("folding long lines for relay", "line", stats.maxLine)
		}
		if err := se.enqueue(ctx, outUTF8, to, out); err != nil {
			log.Error("enqueue", "err", err, "recipients", len(to))
			return errQueueTemp
		}
	}
	log.Info("message accepted", "from", se.from, "recipients", len(se.rcpts),
		"local", len(se.users), "outbound", len(se.outbound), "size", sp.size, "ms", time.Since(start).Milliseconds())
	return nil
}

// checkFrom makes sure an authenticated user signs only its own identities:
// the message's From header (RFC 5322 section 3.6.2) must name addresses the
// user may send as, like the envelope sender.
func (se *session) checkFrom(h headerInfo) *gosmtp.SMTPError {
	if h.FromCount != 1 {
		return errBadFrom
	}
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) {
		return r, nil // display names do not matter here, only addresses
	}}}
	list, err := p.ParseList(strings.TrimSpace(h.From))
	if err != nil || len(list) == 0 {
		return errBadFrom
	}
	for _, a := range list {
		if !se.s.opts.Directory.MaySendAs(se.user, a.Address) {
			return errFromNotYours
		}
	}
	return nil
}

// deliverLocal stores the message in every local user's INBOX and returns
// only when all deliveries are durable; any failure fails the transaction
// (the client retries: a user that already got the message may get it twice,
// which is better than losing it for another).
func (se *session) deliverLocal(ctx context.Context, log *slog.Logger, body func() io.Reader, date time.Time, mailbox string) error {
	users := sortedSet(se.users)
	canReject := len(users) == 1 && len(se.outbound) == 0
	errs := make([]error, len(users))
	sem := make(chan struct{}, maxParallelDeliveries)
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx := se.sieveEnvelope(ctx, u, canReject)
			_, errs[i] = se.s.opts.Store.Deliver(ctx, u, mailbox, body(), nil, date)
			if errors.Is(errs[i], store.ErrNoSuchMailbox) && mailbox != "INBOX" {
				_, errs[i] = se.s.opts.Store.Deliver(ctx, u, "INBOX", body(), nil, date)
			}
		}()
	}
	wg.Wait()
	var result error
	for i, err := range errs {
		if err == nil {
			continue
		}
		if rej := sieveRejection(err); rej != nil {
			log.Info("delivery refused: sieve reject", "rcpt_user", users[i])
			if result == nil {
				result = rej
			}
			continue
		}
		if errors.Is(err, store.ErrQuotaExceeded) {
			log.Info("delivery refused: quota", "rcpt_user", users[i])
			if result == nil {
				result = errQuota
			}
			continue
		}
		log.Error("delivery failed", "rcpt_user", users[i], "err", err)
		result = errLocalTemp // a temporary failure wins: the client will retry
	}
	return result
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// loginServer is the server side of the LOGIN SASL mechanism
// (draft-murchison-sasl-login), which go-sasl no longer provides.
type loginServer struct {
	step         int
	username     string
	authenticate func(username, password string) error
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.username, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.username, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(l.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
