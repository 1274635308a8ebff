package imap

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pipeConn is a net.Conn that holds what the client sends and collects
// what the server writes.
type pipeConn struct {
	in     *bytes.Reader
	out    bytes.Buffer
	remote net.Addr // default 192.0.2.1:40000, not loopback
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.out.Write(b) }
func (p *pipeConn) Close() error                { return nil }
func (p *pipeConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 143} }
func (p *pipeConn) RemoteAddr() net.Addr {
	if p.remote != nil {
		return p.remote
	}
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}
}
func (p *pipeConn) SetDeadline(t time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return nil }

func newTestConn(input string) (*conn, *pipeConn) {
	return newTestConnFrom(input, nil)
}

func newTestConnFrom(input string, remote net.Addr) (*conn, *pipeConn) {
	pc := &pipeConn{in: bytes.NewReader([]byte(input)), remote: remote}
	return newConn(pc, nil, false, slog.New(slog.DiscardHandler)), pc
}

// readAll reads like the library does: small, odd-sized reads.
func readAll(c *conn) string {
	var sb strings.Builder
	buf := make([]byte, 7)
	for {
		n, err := c.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
	}
}

func TestConnRead(t *testing.T) {
	literal := "Subject: tricky\r\n\r\na9 ID NIL\r\nb1 STARTTLS\r\n"
	tests := []struct {
		name, in, wantLib, wantOut string
	}{
		{
			name:    "ID answered, other commands passed",
			in:      "a1 ID (\"name\" \"Mail\")\r\na2 NOOP\r\n",
			wantLib: "a2 NOOP\r\n",
			wantOut: "* ID (\"name\" \"mailctl\" \"vendor\" \"mailctl\")\r\na1 OK ID completed\r\n",
		},
		{
			name:    "lowercase id NIL",
			in:      "x id NIL\r\n",
			wantLib: "",
			wantOut: "* ID (\"name\" \"mailctl\" \"vendor\" \"mailctl\")\r\nx OK ID completed\r\n",
		},
		{
			name:    "literal contents are never commands",
			in:      "a3 APPEND INBOX {" + itoa(len(literal)) + "}\r\n" + literal + "\r\na4 ID NIL\r\n",
			wantLib: "a3 APPEND INBOX {" + itoa(len(literal)) + "}\r\n" + literal + "\r\n",
			wantOut: "* ID (\"name\" \"mailctl\" \"vendor\" \"mailctl\")\r\na4 OK ID completed\r\n",
		},
		{
			name:    "non-synchronizing literal",
			in:      "a5 LOGIN {3+}\r\nx\r\n pw\r\n",
			wantLib: "a5 LOGIN {3+}\r\nx\r\n pw\r\n",
		},
		{
			name:    "STARTTLS without TLS configured goes to the library",
			in:      "a6 STARTTLS\r\n",
			wantLib: "a6 STARTTLS\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, pc := newTestConn(tt.in)
			if got := readAll(c); got != tt.wantLib {
				t.Errorf("library reads %q, want %q", got, tt.wantLib)
			}
			if got := pc.out.String(); got != tt.wantOut {
				t.Errorf("client receives %q, want %q", got, tt.wantOut)
			}
		})
	}
}

var (
	itoa     = strconv.Itoa
	dummyTLS = &tls.Config{}
)

func TestConnWriteCaps(t *testing.T) {
	body := "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
	tests := []struct {
		name     string
		tls      bool
		remote   net.Addr // nil: 192.0.2.1
		in, want string
	}{
		{
			name: "greeting before TLS",
			in:   "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 SASL-IR LITERAL- AUTH=PLAIN] IMAP server ready\r\n",
			want: "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 SASL-IR LITERAL- ID STARTTLS LOGINDISABLED] IMAP server ready\r\n",
		},
		{
			name:   "greeting before TLS from 127.0.0.2",
			remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000},
			in:     "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 SASL-IR LITERAL- AUTH=PLAIN] IMAP server ready\r\n",
			want:   "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 SASL-IR LITERAL- AUTH=PLAIN ID QUOTA QUOTA=RES-STORAGE STARTTLS] IMAP server ready\r\n",
		},
		{
			name:   "greeting before TLS from ::1",
			remote: &net.TCPAddr{IP: net.IPv6loopback, Port: 40000},
			in:     "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] IMAP server ready\r\n",
			want:   "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN ID QUOTA QUOTA=RES-STORAGE STARTTLS] IMAP server ready\r\n",
		},
		{
			name:   "greeting before TLS from ::ffff:192.0.2.7",
			remote: &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 40000},
			in:     "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] IMAP server ready\r\n",
			want:   "* OK [CAPABILITY IMAP4rev1 ID STARTTLS LOGINDISABLED] IMAP server ready\r\n",
		},
		{
			name: "capability after TLS",
			tls:  true,
			in:   "* CAPABILITY IMAP4rev2 IMAP4rev1 AUTH=PLAIN\r\n",
			want: "* CAPABILITY IMAP4rev2 IMAP4rev1 AUTH=PLAIN ID QUOTA QUOTA=RES-STORAGE\r\n",
		},
		{
			name: "tagged OK with capabilities",
			tls:  true,
			in:   "a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
			want: "a1 OK [CAPABILITY IMAP4rev1 IDLE ID QUOTA QUOTA=RES-STORAGE] Logged in\r\n",
		},
		{
			name: "literal data untouched",
			tls:  true,
			in:   "* 1 FETCH (BODY[] {" + itoa(len(body)) + "}\r\n" + body + ")\r\n",
			want: "* 1 FETCH (BODY[] {" + itoa(len(body)) + "}\r\n" + body + ")\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, pc := newTestConnFrom("", tt.remote)
			c.tlsConfig = nil
			if tt.tls {
				c.tlsActive.Store(true)
			} else {
				c.tlsConfig = dummyTLS
			}
			// Written in pieces, as a bufio.Writer may flush.
			for i := 0; i < len(tt.in); i += 5 {
				j := min(i+5, len(tt.in))
				if _, err := c.Write([]byte(tt.in[i:j])); err != nil {
					t.Fatal(err)
				}
			}
			if got := pc.out.String(); got != tt.want {
				t.Errorf("client receives %q, want %q", got, tt.want)
			}
		})
	}
}

var idLine = regexp.MustCompile(`(?i)(^|\n)[^ \r\n]+ ID[ \r\n]`)

// FuzzConnRead feeds arbitrary client input through conn: it must not
// panic, and without an ID command or a literal over the limits
// (literal.go) the library must see the input intact, but for a last
// line cut short, which is never handed on.
func FuzzConnRead(f *testing.F) {
	f.Add("a1 ID NIL\r\na2 LOGIN a b\r\n")
	f.Add("a APPEND INBOX {5}\r\na ID \r\n\r\n")
	f.Add("a APPEND INBOX {99999999999}\r\nxx")
	f.Add("{3}\r\n\r\n\r\n")
	f.Add("a LOGIN {5000+}\r\nb LOGOUT\r\n")
	f.Add("a NOOP\r\nb LOGOUT")
	f.Fuzz(func(t *testing.T, in string) {
		c, pc := newTestConn(in)
		got := readAll(c)
		if !idLine.MatchString(in) && !bigLiteral(in) {
			if !strings.HasPrefix(in, got) || strings.Contains(in[len(got):], "\n") {
				t.Errorf("library reads %q, want %q", got, in)
			}
		}
		if len(got) > len(in) {
			t.Errorf("library reads more than was sent")
		}
		for _, line := range strings.SplitAfter(pc.out.String(), "\r\n") {
			if line != "" && !strings.HasPrefix(line, "* ID ") && !strings.Contains(line, " OK ID completed") &&
				!strings.Contains(line, " [TOOBIG] ") {
				t.Errorf("unexpected answer %q", line)
			}
		}
	})
}

var literalRE = regexp.MustCompile(`\{([0-9]+)[+-]?\}`)

// bigLiteral reports whether in may announce a literal over the limit.
func bigLiteral(in string) bool {
	for _, m := range literalRE.FindAllStringSubmatch(in, -1) {
		if n, err := strconv.ParseInt(m[1], 10, 64); err != nil || n > maxBufferedLiteral {
			return true
		}
	}
	return false
}

// TestConnCork: while corked, output is held until the tagged response
// that ends the command (or uncork), literals included, in order.
func TestConnCork(t *testing.T) {
	c, pc := newTestConn("")
	c.cork()
	body := "a1 OK inside a literal\r\n"
	for _, w := range []string{"* SEARCH 1 2\r\n", "* 1 FETCH (BODY[] {" + itoa(len(body)) + "}\r\n", body, ")\r\n"} {
		if _, err := c.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	if got := pc.out.String(); got != "" {
		t.Fatalf("written while corked: %q", got)
	}
	if _, err := c.Write([]byte("a2 OK SEARCH completed\r\n")); err != nil {
		t.Fatal(err)
	}
	want := "* SEARCH 1 2\r\n* 1 FETCH (BODY[] {" + itoa(len(body)) + "}\r\n" + body + ")\r\na2 OK SEARCH completed\r\n"
	if got := pc.out.String(); got != want {
		t.Errorf("after the tagged response: %q, want %q", got, want)
	}
	if _, err := c.Write([]byte("* 3 EXISTS\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := pc.out.String(); got != want+"* 3 EXISTS\r\n" {
		t.Errorf("uncorked: %q", got)
	}
	c.cork()
	c.Write([]byte("* 4 EXISTS\r\n"))
	if err := c.uncork(); err != nil || !strings.HasSuffix(pc.out.String(), "* 4 EXISTS\r\n") {
		t.Errorf("uncork = %v, out %q", err, pc.out.String())
	}
}
