package imap_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// send writes a command (with any literal already in it) and returns the
// lines up to and including the tagged one.
func (r *rawSession) send(tag, command string) (untagged []string, tagged string) {
	r.t.Helper()
	if _, err := fmt.Fprintf(r.c, "%s %s\r\n", tag, command); err != nil {
		r.t.Fatal(err)
	}
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

func keywords(from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "k%d", i)
	}
	return b.String()
}

// TestStoreLimits: flags beyond the store's limits (issue 17: 1 025
// keywords were written, and the store then could not be opened) are
// refused with NO [LIMIT], and nothing is written: STORE, APPEND with
// flags, and a COPY of a message at the limit.
func TestStoreLimits(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "one")
	r := env.raw(t)
	r.cmd("l", "LOGIN "+alice+" "+alicePW)
	r.cmd("s", "SELECT INBOX")

	if _, tagged := r.send("a1", "STORE 1 +FLAGS ("+keywords(0, 1025)+")"); !strings.HasPrefix(tagged, "a1 NO [LIMIT]") {
		t.Fatalf("STORE of 1025 keywords: %q, want NO [LIMIT]", tagged)
	}
	if got := strings.Join(r.cmd("f1", "FETCH 1 FLAGS"), "\n"); strings.Contains(got, "k0") {
		t.Fatalf("refused keywords were stored: %s", got)
	}
	// Up to the limit, then one more: refused as a whole.
	r.cmd("a2", "STORE 1 +FLAGS.SILENT ("+keywords(0, store.MaxFlags-1)+")")
	r.cmd("a3", `STORE 1 +FLAGS.SILENT (\Seen)`)
	if _, tagged := r.send("a4", `STORE 1 +FLAGS (\Flagged k5000)`); !strings.HasPrefix(tagged, "a4 NO [LIMIT]") {
		t.Fatalf("STORE beyond the limit: %q, want NO [LIMIT]", tagged)
	}
	if got := strings.Join(r.cmd("f2", "FETCH 1 FLAGS"), "\n"); strings.Contains(got, `\Flagged`) || !strings.Contains(got, `\Seen`) || !strings.Contains(got, "k1022") {
		t.Fatalf("FLAGS after a refused STORE: %.200s...", got)
	}
	long := strings.Repeat("x", store.MaxKeywordLen+1)
	if _, tagged := r.send("a5", "STORE 1 +FLAGS ("+long+")"); !strings.HasPrefix(tagged, "a5 NO [LIMIT]") {
		t.Fatalf("STORE of a long keyword: %q, want NO [LIMIT]", tagged)
	}

	// COPY of the message at the limit: a readable copy.
	r.cmd("c1", "COPY 1 Archive")
	if got := strings.Join(r.cmd("c2", "EXAMINE Archive"), "\n"); !strings.Contains(got, "* 1 EXISTS") {
		t.Fatalf("EXAMINE Archive after COPY: %s", got)
	}
	if got := strings.Join(r.cmd("c3", "FETCH 1 FLAGS"), "\n"); !strings.Contains(got, "k1022") {
		t.Fatalf("FLAGS of the copy: %.200s...", got)
	}

	// APPEND with too many flags: refused before anything is stored.
	msg := mail("appended")
	fmt.Fprintf(r.c, "p1 APPEND INBOX ("+keywords(0, 1025)+") {%d+}\r\n%s\r\n", len(msg), msg)
	for {
		l := r.line()
		if strings.HasPrefix(l, "p1 ") {
			if !strings.HasPrefix(l, "p1 NO [LIMIT]") {
				t.Fatalf("APPEND with 1025 flags: %q, want NO [LIMIT]", l)
			}
			break
		}
	}
	if got := strings.Join(r.cmd("p2", "STATUS INBOX (MESSAGES)"), "\n"); !strings.Contains(got, "MESSAGES 1)") {
		t.Fatalf("STATUS after a refused APPEND: %s", got)
	}
	if _, msgs, err := env.st.Messages(context.Background(), alice, "INBOX"); err != nil || len(msgs) != 1 {
		t.Fatalf("Messages = %d, %v", len(msgs), err)
	}
}

// plainSession is a client on the plaintext port (from loopback, where
// LOGIN is allowed).
func plainSession(t *testing.T, env *testEnv) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", env.plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q, %v", l, err)
	}
	return c, br
}

// TestLiteralLimits (issue 17): a pre-auth synchronizing literal over
// the limit is answered at once (it hung for 30 s) and the connection
// goes on; the bytes of a refused non-synchronizing literal are never
// run as commands (the connection ends with BYE); bad mailbox names and
// SEARCH keys are BAD, not [SERVERBUG].
func TestLiteralLimits(t *testing.T) {
	env := newEnv(t, 0)
	c, br := plainSession(t, env)
	expect := func(prefix string) {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, prefix) {
			t.Fatalf("got %q, %v; want %q...", l, err, prefix)
		}
	}
	fmt.Fprintf(c, "a LOGIN {5000}\r\n")
	expect("a BAD [TOOBIG]")
	fmt.Fprintf(c, "b CAPABILITY\r\n")
	expect("* CAPABILITY")
	expect("b OK")

	c, br = plainSession(t, env)
	smuggled := "x1 LOGIN " + alice + " " + alicePW + "\r\nx2 CREATE Smuggled\r\n"
	fmt.Fprintf(c, "a LOGIN {5000+}\r\n%s%s\r\n", smuggled, strings.Repeat("y", 5000-len(smuggled)))
	expect("a BAD [TOOBIG]")
	expect("* BYE")
	if l, err := br.ReadString('\n'); err == nil {
		t.Errorf("after BYE: %q", l)
	}
	if _, err := env.st.Mailbox(context.Background(), alice, "Smuggled"); err == nil {
		t.Error("the literal's bytes were run as commands")
	}

	r := env.raw(t)
	r.cmd("l", "LOGIN "+alice+" "+alicePW)
	for _, cmd := range []string{"SELECT \"a\x01b\"", "STATUS \"&Jjo\" (MESSAGES)"} {
		if _, tagged := r.send("m", cmd); !strings.HasPrefix(tagged, "m BAD") && !strings.HasPrefix(tagged, "m NO [CANNOT]") {
			t.Errorf("%q: %q, want BAD or NO [CANNOT]", cmd, tagged)
		}
	}
	r.cmd("s", "SELECT INBOX")
	if _, tagged := r.send("q", "SEARCH FOO bar"); !strings.HasPrefix(tagged, "q BAD") {
		t.Errorf("SEARCH FOO: %q, want BAD", tagged)
	}
	r.cmd("n", "NOOP")
}
