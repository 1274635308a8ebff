package imap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// conn sits between a client's TCP connection and the go-imap server. The
// library has no ID command (RFC 2971), which Apple Mail and Thunderbird
// send, and kills unauthenticated connections that send an unknown command.
// So conn terminates TLS itself (implicit TLS and STARTTLS, RFC 8314 and
// RFC 9051 section 6.2.1), reads the client's commands line by line to
// answer ID, STARTTLS and, once logged in, the QUOTA commands (RFC 9208),
// and adjusts the capability lists the library writes: ID always, QUOTA
// once a password may be sent, STARTTLS before TLS, and LOGINDISABLED (no
// AUTH=) before TLS for clients that are not on a loopback address.
//
// The library runs with InsecureAuth because it never sees a *tls.Conn;
// sessions refuse LOGIN and AUTHENTICATE unless conn.secure(): TLS is on,
// or the client is on a loopback address (127.0.0.0/8, ::1), where a
// password cannot be sniffed from the network (Dovecot exempts loopback
// from disable_plaintext_auth in the same way).
//
// Literals are passed through untouched in both directions, so message
// contents are never taken for commands or capability lines.
type conn struct {
	net.Conn // the TCP connection: addresses, deadlines

	tlsConfig *tls.Config
	logger    *slog.Logger

	tlsActive atomic.Bool
	loopback  bool                      // the client is on a loopback address
	quota     atomic.Pointer[quotaFunc] // set once the session is logged in
	literal8  atomic.Bool               // the last literal is a literal8 (binary.go)
	ext       atomic.Pointer[extFunc]   // SORT, THREAD: set once logged in
	cs        condState                 // CONDSTORE, QRESYNC (condstore.go)
	tlsConn   *tls.Conn                 // guarded by wmu once set
	implicit  *tls.Conn                 // set at creation for implicit TLS
	hsOnce    sync.Once
	hsDone    atomic.Bool
	hsErr     error

	// Read side: only the library's reading goroutine uses it.
	br      *bufio.Reader
	pending []byte // rest of the current command line, within pbuf
	pbuf    []byte
	readErr error // error to return once pending is drained
	literal int64 // bytes of literal still to pass through
	midLine bool  // the last chunk did not end a line
	// The command being read (literal.go): its tag and name, whether the
	// line being read starts it, and whether the next line continues it
	// (the last one ended in a literal).
	cmdTag, cmdName string
	lineFirst       bool
	cont            bool
	appendLimit     int64 // Options.AppendLimit; 0: none here

	// Write side.
	wmu   sync.Mutex
	w     io.Writer
	wline []byte
	wlit  int64
	wcont bool // the next line continues a response, after a literal
	// binOrigins: see patchBinaryOrigin (binary.go).
	binOrigins []int64
	out        []byte
	// While corked (a FETCH or SEARCH answering many messages), output
	// is gathered in cbuf and written in big chunks: the library flushes
	// after every response line, one write(2) per message otherwise.
	corked bool
	cbuf   []byte
	cerr   error // of a write of cbuf; returned by later writes
}

// corkSize is the size of the writes made while corked.
const corkSize = 64 << 10

const maxLine = 64 << 10

func newConn(c net.Conn, cfg *tls.Config, implicitTLS bool, logger *slog.Logger) *conn {
	cc := &conn{Conn: c, tlsConfig: cfg, logger: logger, loopback: isLoopback(c.RemoteAddr())}
	var rw io.ReadWriter = c
	if implicitTLS {
		cc.tlsConn = tls.Server(c, cfg)
		cc.implicit = cc.tlsConn
		cc.tlsActive.Store(true)
		rw = cc.tlsConn
	}
	cc.br = bufio.NewReaderSize(rw, maxLine)
	cc.w = rw
	return cc
}

func (c *conn) isTLS() bool { return c.tlsActive.Load() }

// secure reports whether a password may be sent on the connection: over
// TLS, or in plaintext from a loopback address.
func (c *conn) secure() bool { return c.loopback || c.isTLS() }

// isLoopback reports whether a is an IP address of 127.0.0.0/8 or ::1
// (IPv4-mapped loopback included).
func isLoopback(a net.Addr) bool {
	var ip net.IP
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.IP
	default:
		if a == nil {
			return false
		}
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return false
		}
		ip = net.ParseIP(host)
	}
	return ip != nil && ip.IsLoopback()
}

// handshake completes an implicit-TLS handshake within a bounded time.
func (c *conn) handshake() error {
	if c.implicit == nil || c.hsDone.Load() {
		return nil
	}
	c.hsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.hsErr = c.implicit.HandshakeContext(ctx)
		c.hsDone.Store(true)
	})
	return c.hsErr
}

// Read hands the library one command line at a time (and literals), so
// that when it asks for the next line every earlier command is answered.
func (c *conn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	for len(c.pending) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		if c.literal > 0 {
			n := int64(len(p))
			if n > c.literal {
				n = c.literal
			}
			m, err := c.br.Read(p[:n])
			c.literal -= int64(m)
			return m, err
		}
		line, err := c.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
		}
		if len(line) == 0 {
			return 0, err
		}
		complete := line[len(line)-1] == '\n'
		if err != nil && !complete {
			// A partial line (the client stopped, or timed out): never
			// handed on, so never executed.
			c.readErr = err
			return 0, err
		}
		c.readErr = err
		wasMid := c.midLine
		if !wasMid {
			c.startLine(line)
		}
		if !wasMid && complete && !c.cont {
			c.startCondCmd(line)
			handled, herr := c.handleLine(line)
			if herr != nil {
				return 0, herr
			}
			if handled {
				continue
			}
			if literalSize(line) == 0 {
				rewritten, answered, cerr := c.rewriteCondStore(line)
				if cerr != nil {
					return 0, cerr
				}
				if answered {
					continue
				}
				line = rewritten
			}
		}
		if complete {
			if n := literalSize(line); n > 0 {
				checked, lerr := c.checkLiteral(line, n, c.lineFirst && !wasMid)
				if lerr != nil {
					c.readErr = lerr
					return 0, lerr
				}
				if checked == nil {
					c.midLine, c.cont = false, false
					continue // answered; the client sends no literal
				}
				line = checked
			}
		}
		c.midLine = !complete
		c.pbuf = append(c.pbuf[:0], line...)
		c.pending = c.pbuf
		if complete {
			c.literal = literalSize(line)
			c.cont = c.literal > 0
			c.noteLiteral8(line)
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// handleLine answers the commands that conn implements. line is a whole
// command line (not inside a literal).
func (c *conn) handleLine(line []byte) (bool, error) {
	tag, rest, ok := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(" "))
	if !ok || !validTag(tag) {
		return false, nil
	}
	if bytes.HasSuffix(rest, []byte("}")) {
		// SORT and THREAD with literals (sort.go); the rest to the library.
		return c.answerExtLiteral(string(tag), bytes.Clone(rest))
	}
	cmd, args, _ := bytes.Cut(rest, []byte(" "))
	switch strings.ToUpper(string(cmd)) {
	case "ID":
		return true, c.answerID(string(tag), string(args))
	case "GETQUOTAROOT", "GETQUOTA", "SETQUOTA":
		q := c.quota.Load()
		if q == nil {
			return false, nil // not logged in: the library answers
		}
		return true, c.answerQuota(string(tag), strings.ToUpper(string(cmd)), string(args), *q)
	case "SORT", "THREAD", "UID":
		return c.answerExt(string(tag), strings.ToUpper(string(cmd)), string(args))
	case "SEARCH":
		if !mentionsModSeq(string(args)) {
			return false, nil
		}
		return c.answerExt(string(tag), "SEARCH", string(args))
	case "LIST", "LSUB":
		if c.quota.Load() == nil || (!bytes.Contains(args, []byte("&")) && isASCII(args)) {
			return false, nil // not logged in, or nothing to decode
		}
		return c.answerBadListPattern(string(tag), strings.ToUpper(string(cmd)), args)
	case "STARTTLS":
		if c.isTLS() || c.tlsConfig == nil || len(args) != 0 {
			return false, nil
		}
		return true, c.startTLS(string(tag))
	}
	return false, nil
}

// validTag reports whether tag is an IMAP tag: ASTRING-CHARs but "+".
func validTag(tag []byte) bool {
	if len(tag) == 0 {
		return false
	}
	for _, c := range tag {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\+`, c) >= 0 {
			return false
		}
	}
	return true
}

// answerID answers RFC 2971 ID. The client's identification is logged
// (it names the mail client, useful to support users).
func (c *conn) answerID(tag, args string) error {
	if len(args) > 256 {
		args = args[:256]
	}
	c.logger.Debug("imap client id", "remote", c.RemoteAddr().String(), "id", args)
	return c.writeRaw("* ID (\"name\" \"mailctl\" \"vendor\" \"mailctl\")\r\n" + tag + " OK ID completed\r\n")
}

// quotaFunc reports a user's storage use and limit in bytes (0: none).
type quotaFunc func() (used, limit int64, err error)

// setQuota enables the QUOTA commands for the logged-in user.
func (c *conn) setQuota(q quotaFunc) { c.quota.Store(&q) }

// answerQuota answers the QUOTA extension (RFC 9208) with one quota root,
// "", that holds every mailbox of the user, with the STORAGE resource in
// units of 1024 octets.
func (c *conn) answerQuota(tag, cmd, args string, q quotaFunc) error {
	if cmd == "SETQUOTA" {
		return c.writeRaw(tag + " NO [CANNOT] Quotas are set in the mailctl configuration\r\n")
	}
	used, limit, err := q()
	if err != nil {
		c.logger.Warn("imap quota", "err", err)
		return c.writeRaw(tag + " NO [UNAVAILABLE] Quota unavailable\r\n")
	}
	quota := ""
	if limit > 0 {
		quota = fmt.Sprintf("* QUOTA \"\" (STORAGE %d %d)\r\n", (used+1023)/1024, limit/1024)
	}
	switch cmd {
	case "GETQUOTAROOT":
		mailbox := strings.TrimSpace(args)
		if mailbox == "" {
			return c.writeRaw(tag + " BAD Missing mailbox\r\n")
		}
		root := ""
		if limit > 0 {
			root = ` ""`
		}
		return c.writeRaw("* QUOTAROOT " + mailbox + root + "\r\n" + quota + tag + " OK GETQUOTAROOT completed\r\n")
	default: // GETQUOTA
		if strings.TrimSpace(args) != `""` || limit == 0 {
			return c.writeRaw(tag + " NO [NONEXISTENT] No such quota root\r\n")
		}
		return c.writeRaw(quota + tag + " OK GETQUOTA completed\r\n")
	}
}

func (c *conn) startTLS(tag string) error {
	// Anything the client sent after STARTTLS before the handshake would
	// be plaintext injected into the TLS session: drop it.
	if n := c.br.Buffered(); n > 0 {
		c.br.Discard(n)
	}
	if err := c.writeRaw(tag + " OK Begin TLS negotiation now\r\n"); err != nil {
		return err
	}
	tc := tls.Server(c.Conn, c.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("starttls handshake: %w", err)
	}
	c.wmu.Lock()
	c.tlsConn = tc
	c.w = tc
	c.wline = c.wline[:0]
	c.wlit, c.wcont = 0, false
	c.wmu.Unlock()
	c.br.Reset(tc)
	c.tlsActive.Store(true)
	return nil
}

func (c *conn) writeRaw(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.emit([]byte(s))
}

// emit writes p to the client, or gathers it while corked. wmu is held.
func (c *conn) emit(p []byte) error {
	if c.cerr != nil {
		return c.cerr
	}
	if !c.corked {
		_, err := c.w.Write(p)
		return err
	}
	if len(c.cbuf)+len(p) > corkSize {
		if err := c.flushCork(); err != nil {
			return err
		}
	}
	if len(p) >= corkSize {
		_, c.cerr = c.w.Write(p)
		return c.cerr
	}
	c.cbuf = append(c.cbuf, p...)
	return nil
}

func (c *conn) flushCork() error {
	if len(c.cbuf) == 0 || c.cerr != nil {
		return c.cerr
	}
	_, c.cerr = c.w.Write(c.cbuf)
	c.cbuf = c.cbuf[:0]
	return c.cerr
}

var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, corkSize); return &b }}

// cork gathers the output in big writes until uncork, or the tagged
// response that ends the command, which write what is left: for commands
// whose answer is one response per message. It reports whether it corked
// (false: already corked).
func (c *conn) cork() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked {
		return false
	}
	c.corked = true
	c.cbuf = (*corkPool.Get().(*[]byte))[:0]
	return true
}

func (c *conn) uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.uncorkLocked()
}

func (c *conn) uncorkLocked() error {
	if !c.corked {
		return c.cerr
	}
	err := c.flushCork()
	c.corked = false
	b := c.cbuf[:0]
	c.cbuf = nil
	corkPool.Put(&b)
	return err
}

// writeResponses writes whole responses made outside the library (no
// literals), within the library's time limit for a response.
func (c *conn) writeResponses(p []byte) error {
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	defer c.SetWriteDeadline(time.Time{})
	_, err := c.Write(p)
	return err
}

// Write passes the library's output through, rewriting capability lists.
func (c *conn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	total := len(p)
	tagged := false
	c.out = c.out[:0]
	for len(p) > 0 {
		if c.wlit > 0 {
			n := int64(len(p))
			if n > c.wlit {
				n = c.wlit
			}
			if err := c.flushOut(); err != nil {
				return 0, err
			}
			if err := c.emit(p[:n]); err != nil {
				return 0, err
			}
			c.wlit -= n
			p = p[n:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.wline = append(c.wline, p...)
			break
		}
		c.wline = append(c.wline, p[:i+1]...)
		p = p[i+1:]
		if !c.wcont && len(c.wline) > 0 && c.wline[0] != '*' && c.wline[0] != '+' {
			tagged = true // the end of a command's answer
		}
		line := c.wline
		if !c.wcont {
			var before []byte
			before, line = c.patchCondStore(line)
			c.out = append(c.out, before...)
		}
		start := len(c.out)
		c.out = c.rewriteCaps(c.out, line)
		c.out = c.patchBinaryOrigin(c.out, start)
		c.wlit = literalSize(c.wline)
		c.wcont = c.wlit > 0 // the response goes on after the literal
		c.wline = c.wline[:0]
	}
	if err := c.flushOut(); err != nil {
		return 0, err
	}
	if tagged && c.corked {
		if err := c.uncorkLocked(); err != nil {
			return 0, err
		}
	}
	return total, nil
}

func (c *conn) flushOut() error {
	if len(c.out) == 0 {
		return nil
	}
	err := c.emit(c.out)
	c.out = c.out[:0]
	return err
}

// rewriteCaps appends line to dst, with its capability list (an untagged
// CAPABILITY response or a [CAPABILITY ...] response code) adjusted.
func (c *conn) rewriteCaps(dst, line []byte) []byte {
	if !c.wcont {
		line = fixBadArgs(line) // badargs.go
	}
	var start, end int
	if bytes.HasPrefix(line, []byte("* CAPABILITY ")) {
		start = len("* CAPABILITY ")
		end = len(bytes.TrimRight(line, "\r\n"))
	} else if i := bytes.Index(line, []byte(" [CAPABILITY ")); i >= 0 && i < 64 {
		start = i + len(" [CAPABILITY ")
		j := bytes.IndexByte(line[start:], ']')
		if j < 0 {
			return append(dst, line...)
		}
		end = start + j
	} else {
		return append(dst, line...)
	}
	dst = append(dst, line[:start]...)
	first := true
	add := func(s string) {
		if !first {
			dst = append(dst, ' ')
		}
		first = false
		dst = append(dst, s...)
	}
	tlsOK, secure := c.isTLS(), c.secure()
	for _, cp := range strings.Fields(string(line[start:end])) {
		up := strings.ToUpper(cp)
		if !secure && strings.HasPrefix(up, "AUTH=") || up == "STARTTLS" || up == "LOGINDISABLED" || up == "ID" || strings.HasPrefix(up, "QUOTA") {
			continue
		}
		add(cp)
	}
	add("ID")
	if c.ext.Load() != nil {
		for _, cp := range extCaps {
			add(cp)
		}
		for _, cp := range condCaps {
			add(cp)
		}
	}
	if secure {
		add("QUOTA")
		add("QUOTA=RES-STORAGE")
	}
	if !tlsOK && c.tlsConfig != nil {
		add("STARTTLS")
	}
	if !secure {
		add("LOGINDISABLED")
	}
	return append(dst, line[end:]...)
}

// literalSize returns the size announced by a line ending in a literal
// ("{N}", "{N+}", "{N-}", "~{N}"), or 0.
func literalSize(line []byte) int64 {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0
	}
	num := line[i+1 : len(line)-1]
	num = bytes.TrimRight(num, "+-")
	if len(num) == 0 || len(num) > 18 {
		return 0
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Close closes the connection, with a TLS close_notify when TLS is on.
func (c *conn) Close() error {
	c.wmu.Lock()
	tc := c.tlsConn
	c.wmu.Unlock()
	if tc != nil && c.isTLS() {
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		return tc.Close()
	}
	return c.Conn.Close()
}
