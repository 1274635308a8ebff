package smtp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/internal/limits"
	"github.com/mailctl/mailctl/server/smtp"
)

// memStore records deliveries in memory (the fuzz target does thousands).
type memStore struct {
	mu   sync.Mutex
	msgs []string
}

func (s *memStore) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, string(b))
	return uint32(len(s.msgs)), nil
}

// Bodies a DATA or BDAT of a program may send (the final CRLF.CRLF is added).
var fuzzBodies = []string{
	"From: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n",
	"From: alice@example.test\r\n\r\nx\r.\rMAIL FROM:<a@example.test>\r\nRCPT TO:<v@remote.example>\r\nDATA\r\nevil\r\n",
	"From: alice@example.test\r\n\r\nx\n.\nQUIT\n",
	"From: alice@example.test\r\n\r\n" + strings.Repeat("l", 2000) + "\r\n",
	"From: alice@example.test\r\n" + strings.Repeat("X: y\r\n", limits.MaxHeaderLines) + "\r\nbody\r\n",
	"From : alice@example.test\r\n\r\nx\r\n",
	"From: bob@example.test\r\nFrom: alice@example.test\r\n\r\nx\r\n",
	"From: alice@example.test\r\nX-A: a\rFrom: <bob@example.test>\r\n\r\n..dot\r\n.\r\nafter\r\n",
	"no header at all\r\n",
	"",
}

// fuzzCommands are the fixed command lines of a program.
var fuzzCommands = []string{
	"EHLO client.example", "HELO client.example", "MAIL FROM:<x@remote.example>", "MAIL FROM:<>",
	"MAIL FROM:<alice@example.test> SIZE=100 BODY=8BITMIME", "RCPT TO:<bob@example.test>",
	"RCPT TO:<fwd@example.test>", "RCPT TO:<friend@remote.example>", "RCPT TO:<Postmaster>",
	"RCPT TO:<team@example.test>", "RSET", "NOOP", "VRFY bob", "STARTTLS", "QUIT", "DATA",
	"AUTH PLAIN " + plainIR("alice@example.test", alicePW), "AUTH PLAIN " + plainIR("alice@example.test", "wrong"),
	"AUTH LOGIN", "BDAT 0 LAST", "MAIL FROM:<alice@example.test>", "RCPT TO:<alice@example.test> NOTIFY=NEVER",
}

// program turns fuzz input into the bytes a client sends: each byte picks
// a command, a body, or raw bytes taken from the input that follows.
func program(in []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(in); i++ {
		op := int(in[i])
		switch {
		case op < 160:
			out.WriteString(fuzzCommands[op%len(fuzzCommands)] + "\r\n")
		case op < 200: // DATA with a body
			out.WriteString("DATA\r\n" + fuzzBodies[op%len(fuzzBodies)] + ".\r\n")
		case op < 220: // BDAT with a body
			b := fuzzBodies[op%len(fuzzBodies)]
			fmt.Fprintf(&out, "BDAT %d LAST\r\n%s", len(b), b)
		default: // raw bytes: the next n bytes of input as they are
			n := min(int(op-219), len(in)-i-1)
			out.Write(in[i+1 : i+1+n])
			i += n
		}
	}
	return out.Bytes()
}

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// fuzzServer is an MX and a submission service (implicit TLS) with
// in-memory store and queues, and short time-outs.
type fuzzServer struct {
	mx, subs         string
	mxQueue, sqQueue *memQueue
	store            *memStore
}

func newFuzzServer(t testing.TB) *fuzzServer {
	// Failed logins are answered after a short delay only: the throttle's
	// growing delay (up to 5 s each) would make an input of many wrong
	// AUTHs exceed the fuzzer's 10 s per input and count as a hang.
	e := newEnv(t, auth.AuthenticatorOptions{FailureDelay: time.Millisecond, MaxFailureDelay: 5 * time.Millisecond})
	fs := &fuzzServer{mxQueue: &memQueue{}, sqQueue: &memQueue{}, store: &memStore{}}
	opts := func(q *memQueue) func(o *smtp.Options) {
		return func(o *smtp.Options) {
			o.Store = fs.store
			o.Queue = q
			o.Limits = smtp.Limits{MaxMessageBytes: 2 << 20, MaxConnsPerIP: 1000, Timeout: 2 * time.Second, DataTimeout: 4 * time.Second}
		}
	}
	fs.mx = e.start(t, smtp.ModeMX, opts(fs.mxQueue))
	fs.subs = e.start(t, smtp.ModeSubmissions, opts(fs.sqQueue))
	return fs
}

// run sends prog on a new connection (then half-closes it) and checks the
// replies and whatever was delivered or queued.
func (fs *fuzzServer) run(t testing.TB, prog []byte, implicitTLS bool) {
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", fs.subs, clientTLS(t))
	} else {
		conn, err = net.Dial("tcp", fs.mx)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		conn.Write(prog)
		switch c := conn.(type) {
		case *net.TCPConn:
			c.CloseWrite()
		case *tls.Conn:
			c.CloseWrite()
		}
	}()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			if !replyLine.MatchString(line) {
				t.Fatalf("malformed reply %q to program %q", line, prog)
			}
			if strings.Contains(line, "Internal server error") {
				t.Fatalf("server panicked (%q) on program %q", line, prog)
			}
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("session still open after 20 s on program %q", prog)
			}
			break
		}
	}
	fs.check(t, prog)
}

// check: the MX relays only to the forwarding alias's target, what is
// queued can be relayed safely, and everything kept is within the header
// limits.
func (fs *fuzzServer) check(t testing.TB, prog []byte) {
	for _, q := range fs.mxQueue.all() {
		for _, to := range q.to {
			if to != "friend@remote.example" {
				t.Fatalf("the MX relayed to %s on program %q", to, prog)
			}
		}
	}
	for _, q := range append(fs.mxQueue.all(), fs.sqQueue.all()...) {
		if err := relayable(q.body); err != "" {
			t.Fatalf("queued for relay with %s on program %q: %q", err, prog, q.body)
		}
	}
	fs.store.mu.Lock()
	msgs := append([]string(nil), fs.store.msgs...)
	fs.store.mu.Unlock()
	for _, m := range msgs {
		if _, err := io.Copy(io.Discard, limits.NewHeaderReader(strings.NewReader(m))); err != nil {
			t.Fatalf("stored a message beyond the header limits on program %q", prog)
		}
	}
}

// relayable returns what makes body unsafe to relay, or "".
func relayable(body string) string {
	for i := 0; i < len(body); i++ {
		switch {
		case body[i] == '\r' && (i+1 == len(body) || body[i+1] != '\n'):
			return "a bare CR"
		case body[i] == '\n' && (i == 0 || body[i-1] != '\r'):
			return "a bare LF"
		}
	}
	for _, l := range strings.Split(body, "\r\n") {
		if len(l) > limits.MaxOutgoingLineBytes {
			return "a line too long"
		}
	}
	if _, err := io.Copy(io.Discard, limits.NewHeaderReader(strings.NewReader(body))); err != nil {
		return "a header too large"
	}
	return ""
}

// Indexes: 0 EHLO, 2 MAIL from outside, 5 RCPT bob, 6 RCPT the forwarding
// alias, 7 RCPT remote, 8 RCPT <Postmaster>, 10 RSET, 13 STARTTLS, 14 QUIT,
// 16 AUTH alice, 20 MAIL alice; 160+i DATA with fuzzBodies[i], 200+i BDAT
// with it; 220+n: n raw bytes.
var fuzzSeeds = [][]byte{
	{0, 2, 5, 160},                     // a plain delivery
	{0, 2, 6, 161},                     // smuggling to the forwarding alias
	{0, 2, 8, 160},                     // RCPT TO:<Postmaster>
	{0, 2, 5, 200, 10, 2, 5},           // BDAT then a new transaction
	{0, 16, 20, 7, 161, 162},           // authenticated (over TLS) smuggling
	{0, 16, 20, 7, 163, 165, 166, 167}, // long line, From tricks
	{0, 16, 20, 5, 6, 7, 160, 20, 7, 168},
	{0, 2, 5, 5, 5, 14},
	{0, 13, 0, 2, 5, 160},         // STARTTLS then plaintext
	{0, 2, 5, 14, 160},            // DATA after QUIT
	{0, 225, 'M', 'A', 'I', 'L'},  // a line cut short
	{0, 2, 5, 14, 230, '\r', '.'}, // raw bytes
	{0, 2, 5, 164},                // header at the limit
	{0, 2, 5, 18, 17},
}

// FuzzSession runs programs (command sequences, bodies, raw bytes) against
// an in-process MX and submission service and checks that the server
// never panics, answers with well-formed replies, closes every session,
// relays nothing for an unauthenticated client but an alias's forward,
// queues nothing unsafe to relay, and keeps nothing beyond the header
// limits. go test runs the seed corpus (testdata/fuzz/FuzzSession too).
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, in []byte, implicitTLS bool) {
		if len(in) > 200 {
			in = in[:200]
		}
		fs.run(t, program(in), implicitTLS)
	})
}

// TestSessionRandom runs random programs, a bounded number, from a seed it
// prints on failure.
func TestSessionRandom(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	fs := newFuzzServer(t)
	// The harness works: a plain MX delivery is stored, an authenticated
	// submission to a remote recipient queued.
	fs.run(t, program([]byte{0, 2, 5, 160}), false)
	fs.run(t, program([]byte{0, 16, 20, 7, 160}), true)
	fs.store.mu.Lock()
	stored := len(fs.store.msgs)
	fs.store.mu.Unlock()
	if stored != 1 || len(fs.sqQueue.all()) != 1 {
		t.Fatalf("harness: %d stored, %d queued; want 1 and 1", stored, len(fs.sqQueue.all()))
	}
	n := 60
	if testing.Short() {
		n = 15
	}
	for i := range n {
		in := make([]byte, 1+rng.IntN(30))
		for j := range in {
			in[j] = byte(rng.IntN(256))
		}
		tlsMode := rng.IntN(2) == 0
		fs.run(&seededT{TB: t, seed: seed, i: i}, program(in), tlsMode)
	}
}

// seededT adds the seed to a failure.
type seededT struct {
	testing.TB
	seed uint64
	i    int
}

func (s *seededT) Fatalf(format string, args ...any) {
	s.TB.Helper()
	s.TB.Fatalf("seed %d, program %d: "+format, append([]any{s.seed, s.i}, args...)...)
}
