package imap

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// TestConnLiteralChecks: what the library is handed (and what the client
// is answered directly) for literals over the limits, and for a command
// line cut short by the end of input (a timeout, or a client that stops):
// never handed on, so never executed.
func TestConnLiteralChecks(t *testing.T) {
	big := strings.Repeat("x", 5000)
	smuggled := "b LOGOUT\r\n" + big[:4990]
	tests := []struct {
		name, in, wantLib, wantOut string
	}{
		{
			name:    "synchronizing literal over the limit, first line",
			in:      "a LOGIN {5000}\r\nb NOOP\r\n",
			wantLib: "b NOOP\r\n",
			wantOut: "a BAD [TOOBIG] Literal of 5000 bytes over the limit of 4096 bytes\r\n",
		},
		{
			name:    "synchronizing literal over the limit, later line",
			in:      "a LOGIN {3}\r\nbob {5000}\r\nb NOOP\r\n",
			wantLib: "a LOGIN {3}\r\nbob {\r\nb NOOP\r\n",
		},
		{
			name:    "non-synchronizing literal over the limit",
			in:      "a LOGIN {5000+}\r\n" + smuggled + "\r\nc NOOP\r\n",
			wantLib: "",
			wantOut: "a BAD [TOOBIG] Literal of 5000 bytes over the limit of 4096 bytes\r\n* BYE [TOOBIG] Non-synchronizing literal over the limit\r\n",
		},
		{
			name:    "literals within the limit pass",
			in:      "a LOGIN {4096+}\r\n" + big[:4096] + " {3}\r\npw!\r\n",
			wantLib: "a LOGIN {4096+}\r\n" + big[:4096] + " {3}\r\npw!\r\n",
		},
		{
			name:    "partial line at the end of input",
			in:      "a NOOP\r\nb LOGOUT",
			wantLib: "a NOOP\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, pc := newTestConn(tt.in)
			if got := readAll(c); got != tt.wantLib {
				t.Errorf("library reads %.80q, want %.80q", got, tt.wantLib)
			}
			if got := pc.out.String(); got != tt.wantOut {
				t.Errorf("client receives %q, want %q", got, tt.wantOut)
			}
		})
	}
}

// TestConnAppendLiteral: after login, APPEND's message may be as large as
// the APPENDLIMIT, its mailbox name no larger than other arguments.
func TestConnAppendLiteral(t *testing.T) {
	for _, tt := range []struct{ in, wantOut string }{
		{"a APPEND INBOX {100000}\r\n", ""},
		{"a APPEND INBOX (\\Seen) {1000001}\r\n", "a NO [TOOBIG] Literal of 1000001 bytes over the limit of 1000000 bytes\r\n"},
		{"a APPEND {5000}\r\n", "a BAD [TOOBIG] Literal of 5000 bytes over the limit of 4096 bytes\r\n"},
		{"a APPEND {5}\r\nINBOX {100000}\r\n", ""},
	} {
		c, pc := newTestConn(tt.in)
		c.appendLimit = 1000000
		c.setQuota(func() (int64, int64, error) { return 0, 0, nil }) // logged in
		readAll(c)
		if got := pc.out.String(); got != tt.wantOut {
			t.Errorf("%q: client receives %q, want %q", tt.in, got, tt.wantOut)
		}
	}
}

// TestFixBadArgs: only the library's own SERVERBUG answer becomes BAD.
func TestFixBadArgs(t *testing.T) {
	for in, want := range map[string]string{
		"d NO [SERVERBUG] Internal server error\r\n":      "d BAD [CLIENTBUG] Invalid arguments\r\n",
		"d NO [SERVERBUG] " + internalText + "\r\n":       "d NO [SERVERBUG] " + internalText + "\r\n",
		"* OK x NO [SERVERBUG] Internal server error\r\n": "* OK x NO [SERVERBUG] Internal server error\r\n",
		"d OK [READ-WRITE] SELECT completed\r\n":          "d OK [READ-WRITE] SELECT completed\r\n",
	} {
		if got := string(fixBadArgs([]byte(in))); got != want {
			t.Errorf("fixBadArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

// timeoutConn is a pipeConn whose input ends in a read timeout.
type timeoutConn struct {
	pipeConn
	r io.Reader
}

func (c *timeoutConn) Read(b []byte) (int, error) { return c.r.Read(b) }

type failReader struct{ err error }

func (f failReader) Read([]byte) (int, error) { return 0, f.err }

// TestConnPartialLineTimeout: a command line cut short by the read
// deadline (slowloris) is not handed to the library, which sees only the
// timeout.
func TestConnPartialLineTimeout(t *testing.T) {
	tc := &timeoutConn{r: io.MultiReader(strings.NewReader("a NOOP\r\nb CREATE Slow"), failReader{os.ErrDeadlineExceeded})}
	c := newConn(tc, nil, false, slog.New(slog.DiscardHandler))
	var got []byte
	buf := make([]byte, 5)
	var err error
	for err == nil {
		var n int
		n, err = c.Read(buf)
		got = append(got, buf[:n]...)
	}
	if string(got) != "a NOOP\r\n" || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("library reads %q, then %v; want %q, then the timeout", got, err, "a NOOP\r\n")
	}
}
