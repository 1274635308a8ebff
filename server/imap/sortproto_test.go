package imap_test

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sortMail is a message for the SORT and THREAD tests.
type sortMail struct {
	hdr     string // header fields, CRLF-terminated
	pad     int    // body length
	arrival time.Time
}

func (env *testEnv) deliverSorted(t *testing.T, mailbox string, msgs []sortMail) {
	t.Helper()
	for _, m := range msgs {
		body := m.hdr + "\r\n" + strings.Repeat("x", m.pad) + "\r\n"
		if _, err := env.st.Deliver(context.Background(), alice, mailbox, strings.NewReader(body), nil, m.arrival); err != nil {
			t.Fatal(err)
		}
	}
}

func day(d, h int) time.Time { return time.Date(2026, 1, d, h, 0, 0, 0, time.UTC) }

// expectOne runs a command whose answer is one untagged line.
func (r *rawSession) expectOne(t *testing.T, tag, command, want string) {
	t.Helper()
	got := r.cmd(tag, command)
	if len(got) != 1 || got[0] != want {
		t.Errorf("%s = %q, want %q", command, got, want)
	}
}

// expectTagged runs a command that must fail, and checks the start of
// its tagged answer.
func (r *rawSession) expectTagged(t *testing.T, tag, command, prefix string) {
	t.Helper()
	fmt.Fprintf(r.c, "%s %s\r\n", tag, command)
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" "+prefix) {
				t.Errorf("%s: %s, want %s...", command, l, prefix)
			}
			return
		}
	}
}

// TestSort: SORT (RFC 5256) by every key, REVERSE, several keys, with
// search criteria, UID SORT, and ESORT (RFC 5267), against orders worked
// out by hand from the RFC's rules: base subjects ("Re: [fwd: beta]" is
// "beta", "(fwd)" trailers and "[list] Re:" leaders go), i;ascii-casemap
// comparison, sent dates in UTC with the internal date when there is no
// Date, the first address's mailbox (the first member of a group), ties
// in mailbox order.
func TestSort(t *testing.T) {
	env := newEnv(t, 0)
	// UID 1, expunged: UIDs are sequence numbers + 1.
	env.deliver(t, alice, "gone")
	ctx := context.Background()
	if _, err := env.st.SetFlags(ctx, alice, "INBOX", []uint32{1}, 0, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.st.Expunge(ctx, alice, "INBOX", nil); err != nil {
		t.Fatal(err)
	}
	env.deliverSorted(t, "", []sortMail{
		{"Subject: Re: [fwd: beta]\r\nFrom: Carol <carol@example.test>\r\nTo: zed@example.test\r\nDate: Sat, 03 Jan 2026 10:00:00 +0000\r\n", 500, day(5, 12)},
		{"Subject: alpha (fwd)\r\nFrom: bob@example.test\r\nTo: amy@example.test\r\nCc: m@example.test\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n", 100, day(4, 12)},
		{"Subject: [list] Re: Gamma\r\nFrom: Alice <alice@example.test>\r\nTo: Friends: yan@example.test, abe@example.test;\r\n", 300, day(2, 12)},
		{"Subject: Beta\r\nFrom: dave@example.test\r\nTo: bob@example.test\r\nDate: Fri, 02 Jan 2026 23:00:00 -0500\r\n", 200, day(3, 12)},
		{"Subject: ALPHA\r\nFrom: alice@example.test\r\nTo: amy@example.test\r\nDate: Thu, 01 Jan 2026 09:00:00 +0000\r\n", 400, day(1, 12)},
	})
	r := env.raw(t)
	r.cmd("b", "LOGIN "+alice+" "+alicePW)
	caps := strings.Join(r.cmd("a", "CAPABILITY"), " ") + " "
	for _, c := range []string{" SORT ", " ESORT ", " THREAD=ORDEREDSUBJECT ", " THREAD=REFERENCES "} {
		if !strings.Contains(caps, c) {
			t.Errorf("capabilities %q lack %s", caps, c)
		}
	}
	r.expectTagged(t, "c", "SORT (SUBJECT) UTF-8 ALL", "BAD")
	r.cmd("d", "SELECT INBOX")
	for i, c := range []struct{ command, want string }{
		{"SORT (SUBJECT) UTF-8 ALL", "2 5 1 4 3"},
		{"SORT (SUBJECT DATE) UTF-8 ALL", "5 2 4 1 3"},
		{"SORT (DATE) UTF-8 ALL", "5 2 3 4 1"},
		{"SORT (ARRIVAL) UTF-8 ALL", "5 3 4 2 1"},
		{"SORT (REVERSE ARRIVAL) US-ASCII ALL", "1 2 4 3 5"},
		{"SORT (FROM) UTF-8 ALL", "3 5 2 1 4"},
		{"SORT (TO) UTF-8 ALL", "2 5 4 3 1"},
		{"SORT (CC) UTF-8 ALL", "1 3 4 5 2"},
		{"SORT (SIZE) UTF-8 ALL", "2 4 3 5 1"},
		{"SORT (REVERSE SIZE) UTF-8 ALL", "1 5 3 4 2"},
		{"sort (reverse from date) utf-8 all", "4 1 2 5 3"},
		{"SORT (SUBJECT) UTF-8 FROM alice", "5 3"},
		{`SORT (DATE) UTF-8 OR FROM "bob" SUBJECT beta`, "2 4 1"},
		{"SORT (DATE) UTF-8 (2:4 NOT 3)", "2 4"},
		{"SORT (ARRIVAL) UTF-8 SINCE 3-Jan-2026", "4 2 1"},
		{"SORT (SUBJECT) UTF-8 LARGER 100000", ""},
	} {
		want := "* SORT"
		if c.want != "" {
			want += " " + c.want
		}
		r.expectOne(t, fmt.Sprintf("s%d", i), c.command, want)
	}
	r.expectOne(t, "u1", "UID SORT (ARRIVAL) UTF-8 ALL", "* SORT 6 4 5 3 2")
	r.expectOne(t, "u2", "UID SORT (SUBJECT) UTF-8 UID 4:6", "* SORT 6 5 4")
	r.expectOne(t, "e1", "SORT RETURN (MIN MAX COUNT) (ARRIVAL) UTF-8 ALL", `* ESEARCH (TAG "e1") MIN 5 MAX 1 COUNT 5`)
	r.expectOne(t, "e2", "UID SORT RETURN (ALL) (DATE) UTF-8 ALL", `* ESEARCH (TAG "e2") UID ALL 6,3:5,2`)
	r.expectOne(t, "e3", "SORT RETURN () (SIZE) UTF-8 ALL", `* ESEARCH (TAG "e3") ALL 2,4,3,5,1`)
	r.expectOne(t, "e4", "SORT RETURN (COUNT MIN) (SIZE) UTF-8 LARGER 100000", `* ESEARCH (TAG "e4") COUNT 0`)
	// SAVE, then the saved result as search criteria (RFC 5182).
	if got := r.cmd("e5", "SORT RETURN (SAVE) (DATE) UTF-8 FROM alice"); len(got) != 0 {
		t.Errorf("SORT RETURN (SAVE): %q", got)
	}
	r.expectOne(t, "e6", "SEARCH $", "* SEARCH 3 5")
	r.expectTagged(t, "x1", "SORT (FOO) UTF-8 ALL", "BAD")
	r.expectTagged(t, "x2", "SORT (DATE) KOI8-R ALL", "NO [BADCHARSET")
	r.expectTagged(t, "x3", "SORT (DATE) UTF-8 NOSUCHKEY", "BAD")
	r.expectTagged(t, "x4", "SORT (REVERSE) UTF-8 ALL", "BAD")
	r.expectTagged(t, "x5", "SORT (DATE) UTF-8", "BAD")
	// Other UID commands still reach the library.
	r.expectOne(t, "y", "UID SEARCH FROM alice", "* SEARCH 4 6")
}

// TestThread: THREAD ORDEREDSUBJECT and REFERENCES (RFC 5256 section 3)
// with trees worked out by hand from the RFC's steps: References chains,
// In-Reply-To alone, missing parents (dummies pruned or kept at the root
// with two children), a message without Message-ID gathered under its
// base subject, two non-reply threads of one subject put under a dummy,
// a message put under the dummy of its subject's thread, threads and
// siblings by sent date.
func TestThread(t *testing.T) {
	env := newEnv(t, 0)
	env.deliverSorted(t, "", []sortMail{
		{"Subject: Re: [fwd: beta]\r\nDate: Sat, 03 Jan 2026 10:00:00 +0000\r\n", 1, day(5, 12)},
		{"Subject: alpha (fwd)\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n", 1, day(4, 12)},
		{"Subject: [list] Re: Gamma\r\n", 1, day(2, 12)},
		{"Subject: Beta\r\nDate: Fri, 02 Jan 2026 23:00:00 -0500\r\n", 1, day(3, 12)},
		{"Subject: ALPHA\r\nDate: Thu, 01 Jan 2026 09:00:00 +0000\r\n", 1, day(1, 12)},
	})
	ctx := context.Background()
	if err := env.st.CreateMailbox(ctx, alice, "T", ""); err != nil {
		t.Fatal(err)
	}
	date := func(d int) string { return fmt.Sprintf("Date: %s\r\n", day(d, 8).Format(time.RFC1123Z)) }
	env.deliverSorted(t, "T", []sortMail{
		{"Message-ID: <a@x>\r\nSubject: topic\r\n" + date(2), 1, day(1, 1)},
		{"Message-ID: <b@x>\r\nReferences: <a@x>\r\nSubject: Re: topic\r\n" + date(3), 1, day(1, 1)},
		{"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nSubject: Re: topic\r\n" + date(4), 1, day(1, 1)},
		{"Message-ID: <d@x>\r\nReferences: <a@x>\r\nSubject: Re: topic\r\n" + date(5), 1, day(1, 1)},
		{"Message-ID: <e@x>\r\nReferences: <zz@x> <yy@x>\r\nSubject: other\r\n" + date(6), 1, day(1, 1)},
		{"Message-ID: <f@x>\r\nReferences: <missing@x>\r\nSubject: lonely\r\n" + date(7), 1, day(1, 1)},
		{"Message-ID: <g@x>\r\nReferences: <missing@x>\r\nSubject: Re: lonely\r\n" + date(8), 1, day(1, 1)},
		{"Subject: Re: other\r\n" + date(9), 1, day(1, 1)},
		{"Message-ID: <h@x>\r\nSubject: topic\r\n" + date(1), 1, day(1, 1)},
	})
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	r.expectOne(t, "c", "THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (5 2)(3)(4 1)")
	r.expectOne(t, "d", "THREAD ORDEREDSUBJECT UTF-8 NOT 2", "* THREAD (5)(3)(4 1)")
	r.expectOne(t, "e", "THREAD REFERENCES UTF-8 ALL", "* THREAD (5 2)(3)(4 1)")
	r.cmd("f", "SELECT T")
	r.expectOne(t, "g", "THREAD REFERENCES UTF-8 ALL", "* THREAD ((9)(1 (2 3)(4)))(5 8)((6)(7))")
	r.expectOne(t, "h", "UID THREAD REFERENCES US-ASCII SUBJECT lonely", "* THREAD ((6)(7))")
	r.expectOne(t, "i", "THREAD REFERENCES UTF-8 NOT 1", "* THREAD ((9)(2 3)(4))(5 8)((6)(7))")
	r.expectOne(t, "j", "THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (9 (1)(2)(3)(4))(5 8)(6 7)")
	r.expectOne(t, "k", "THREAD REFERENCES UTF-8 LARGER 100000", "* THREAD")
	r.expectTagged(t, "x", "THREAD FANCY UTF-8 ALL", "BAD")
}

// TestImaplibSortLSUB: Python's imaplib, another client library, checks
// LSUB (subscriptions after CREATE, DELETE, UNSUBSCRIBE; \Noselect),
// SORT, UID SORT and THREAD.
func TestImaplibSortLSUB(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	env := newEnv(t, 0)
	env.deliverSorted(t, "", []sortMail{
		{"Subject: Re: [fwd: Meeting]\r\nFrom: carol@example.test\r\nDate: Sat, 03 Jan 2026 10:00:00 +0000\r\n", 1, day(1, 1)},
		{"Subject: Budget\r\nFrom: alice@example.test\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n", 1, day(1, 2)},
		{"Subject: meeting (fwd)\r\nFrom: bob@example.test\r\nDate: Fri, 02 Jan 2026 10:00:00 +0000\r\n", 1, day(1, 3)},
	})
	host, port, _ := net.SplitHostPort(env.tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "testdata/imaplib_sort.py", host, port, env.caFile, alice, alicePW).CombinedOutput()
	t.Logf("imaplib:\n%s", out)
	if err != nil {
		t.Fatalf("imaplib: %v", err)
	}
}

// TestSortLiterals: SORT and THREAD criteria in literals (how webmails
// send strings beyond ASCII): synchronizing ones get "+", non-synchronizing
// ones do not, several in one command; a synchronizing literal beyond the
// limit is refused before the client sends it.
func TestSortLiterals(t *testing.T) {
	env := newEnv(t, 0)
	env.deliverSorted(t, "", []sortMail{
		{"Subject: =?utf-8?q?caf=C3=A9?= menu\r\nFrom: bob@example.test\r\n", 1, day(2, 1)},
		{"Subject: plain\r\nFrom: bob@example.test\r\n", 1, day(1, 1)},
		{"Subject: Re: =?utf-8?q?caf=C3=A9?= menu\r\nFrom: ann@example.test\r\n", 1, day(3, 1)},
	})
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	send := func(s string) {
		if _, err := io.WriteString(r.c, s); err != nil {
			t.Fatal(err)
		}
	}
	cafe := "caf\u00e9"
	send(fmt.Sprintf("c SORT (ARRIVAL) UTF-8 SUBJECT {%d}\r\n", len(cafe)))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("synchronizing literal: %q", l)
	}
	send(cafe + "\r\n")
	if l, want := r.line(), "* SORT 1 3"; l != want {
		t.Errorf("SORT with a literal = %q, want %q", l, want)
	}
	if l := r.line(); !strings.HasPrefix(l, "c OK") {
		t.Errorf("SORT with a literal: %q", l)
	}
	// Two non-synchronizing literals, then UID THREAD.
	send(fmt.Sprintf("d UID SORT (REVERSE ARRIVAL) UTF-8 SUBJECT {%d+}\r\n%s FROM {4+}\r\nbob@\r\n", len(cafe), cafe))
	if l, want := r.line(), "* SORT 1"; l != want {
		t.Errorf("UID SORT with literals = %q, want %q", l, want)
	}
	if l := r.line(); !strings.HasPrefix(l, "d OK") {
		t.Errorf("UID SORT with literals: %q", l)
	}
	send(fmt.Sprintf("e THREAD REFERENCES UTF-8 SUBJECT {%d+}\r\n%s\r\n", len(cafe), cafe))
	if l, want := r.line(), "* THREAD (1 3)"; l != want {
		t.Errorf("THREAD with a literal = %q, want %q", l, want)
	}
	r.line()
	send("f SORT (ARRIVAL) UTF-8 SUBJECT {99999999}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "f BAD") {
		t.Errorf("SORT with a huge literal: %q", l)
	}
	// Other commands' literals still reach the library.
	send("g SEARCH SUBJECT {5+}\r\nplain\r\n")
	if l := r.line(); l != "* SEARCH 2" {
		t.Errorf("SEARCH with a literal: %q", l)
	}
	r.line()
}

// dovecotCommand returns the command line of Dovecot's imap on the
// Maildir of dir, writing its configuration and the Maildir first when
// create is set. It skips the test when Dovecot is not installed; as
// root, it runs Dovecot as nobody (Dovecot refuses root).
func dovecotCommand(t *testing.T, dir string, create bool) []string {
	t.Helper()
	const bin = "/usr/lib/dovecot/imap"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("Dovecot is not installed")
	}
	uid, gid := strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid())
	var prefix []string
	if os.Getuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("no user nobody to run Dovecot as")
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("setpriv is not installed")
		}
		uid, gid = u.Uid, u.Gid
		prefix = []string{setpriv, "--reuid=" + uid, "--regid=" + gid, "--clear-groups"}
	}
	md := filepath.Join(dir, "md")
	conf := filepath.Join(dir, "dovecot.conf")
	if create {
		cfg := fmt.Sprintf("mail_location = maildir:%s\nlisten =\nmail_uid = %s\nmail_gid = %s\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"+
			"namespace inbox {\n  inbox = yes\n  separator = /\n}\n", md, uid, gid)
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(md, 0o755); err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(uid)
		g, _ := strconv.Atoi(gid)
		for _, p := range []string{dir, md} {
			if err := os.Chown(p, n, g); err != nil {
				t.Fatal(err)
			}
		}
	}
	return append(prefix, "env", "USER=nobody", "HOME="+dir, bin, "-c", conf)
}

// dovecotIMAP runs Dovecot's imap binary, preauthenticated, on script
// (commands, one per line, CRLF) over a new Maildir, and returns its
// output. It skips the test when Dovecot is not installed; as root, it
// runs Dovecot as nobody (Dovecot refuses root).
func dovecotIMAP(t *testing.T, script string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dovecot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	args := dovecotCommand(t, dir, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("Dovecot's imap does not run here: %v", err)
	}
	return string(out)
}

// TestThreadSortAsDovecot: on random mailboxes (reference chains,
// missing parents, duplicate, missing and self-referring Message-IDs,
// reply and forward subjects, dates missing or equal), THREAD REFERENCES,
// THREAD ORDEREDSUBJECT and SORT answer as Dovecot 2.3's imap does.
// Seeded; the seed is printed on failure.
func TestThreadSortAsDovecot(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	subjects := []string{"a", "Re: a", "RE: [x] a", "b", "Fwd: b", "", "c (fwd)", "[fwd: a]", "Re: Re: b"}
	commands := []string{"THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL",
		"SORT (DATE) UTF-8 ALL", "SORT (REVERSE ARRIVAL FROM) UTF-8 ALL", "SORT (SIZE REVERSE SUBJECT) UTF-8 ALL"}
	const boxes = 40
	env := newEnv(t, 0)
	var script strings.Builder
	ctx := context.Background()
	for k := 0; k < boxes; k++ {
		name := fmt.Sprintf("c%d", k)
		if err := env.st.CreateMailbox(ctx, alice, name, ""); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&script, "c%d CREATE %s\r\n", k, name)
		for i, n := 0, 1+rng.Intn(10); i < n; i++ {
			var h strings.Builder
			if rng.Intn(6) > 0 {
				fmt.Fprintf(&h, "Message-ID: <m%d@x>\r\n", rng.Intn(12))
			}
			var refs []string
			for r := rng.Intn(4); r > 0; r-- {
				refs = append(refs, fmt.Sprintf("<m%d@x>", rng.Intn(14)))
			}
			if len(refs) > 0 {
				field := "References"
				if rng.Intn(3) == 0 {
					field = "In-Reply-To"
				}
				fmt.Fprintf(&h, "%s: %s\r\n", field, strings.Join(refs, " "))
			}
			fmt.Fprintf(&h, "Subject: %s\r\nFrom: u%d@x\r\n", subjects[rng.Intn(len(subjects))], rng.Intn(4))
			if rng.Intn(6) > 0 {
				fmt.Fprintf(&h, "Date: %s\r\n", time.Date(2026, 1, 1+rng.Intn(3), rng.Intn(3), 0, 0, 0, time.UTC).Format(time.RFC1123Z))
			}
			msg := h.String() + "\r\n" + strings.Repeat("x", rng.Intn(3)) + "\r\n"
			arrival := time.Date(2026, 1, 1+rng.Intn(3), rng.Intn(4), 0, 0, 0, time.UTC)
			if _, err := env.st.Deliver(ctx, alice, name, strings.NewReader(msg), nil, arrival); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&script, "a APPEND %s \"%s\" {%d+}\r\n%s\r\n", name, arrival.Format("02-Jan-2006 15:04:05 -0700"), len(msg), msg)
		}
	}
	for k := 0; k < boxes; k++ {
		fmt.Fprintf(&script, "s SELECT c%d\r\n", k)
		for _, c := range commands {
			fmt.Fprintf(&script, "t %s\r\n", c)
		}
	}
	script.WriteString("z LOGOUT\r\n")
	var want []string
	for _, l := range strings.Split(dovecotIMAP(t, script.String()), "\r\n") {
		if strings.HasPrefix(l, "* THREAD") || strings.HasPrefix(l, "* SORT") {
			want = append(want, l)
		}
	}
	if len(want) != boxes*len(commands) {
		t.Fatalf("seed %d: Dovecot gave %d answers, want %d", seed, len(want), boxes*len(commands))
	}
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	i := 0
	for k := 0; k < boxes; k++ {
		r.cmd("s", fmt.Sprintf("SELECT c%d", k))
		for _, c := range commands {
			got := r.cmd("t", c)
			if len(got) != 1 || got[0] != want[i] {
				t.Errorf("seed %d, mailbox c%d, %s:\n got %q\nwant %q (Dovecot)", seed, k, c, got, want[i])
			}
			i++
		}
	}
}

// BenchmarkSortThread10k: SORT and THREAD of a 10 000-message mailbox,
// beside FETCH ENVELOPE of it (what a client sorting for itself reads).
func BenchmarkSortThread10k(b *testing.B) {
	env := newEnv(b, 0)
	const n = 10000
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 10 {
				refs := ""
				if i%3 != 0 {
					refs = fmt.Sprintf("References: <m%d@x>\r\n", i-i%3)
				}
				msg := fmt.Sprintf("Message-ID: <m%d@x>\r\n%sSubject: Re: topic %d\r\nFrom: u%d@example.test\r\nDate: %s\r\n\r\nbody\r\n",
					i, refs, i%500, i%37, time.Date(2026, 1, 1, 0, i%1440, 0, 0, time.UTC).Format(time.RFC1123Z))
				if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(msg), nil, time.Time{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	bc := dialBench(b, env)
	for _, bm := range []struct{ name, command string }{
		{"FetchEnvelope", "FETCH 1:* (UID ENVELOPE)"},
		{"SortDate", "SORT (DATE) UTF-8 ALL"},
		{"SortSubject", "SORT (SUBJECT) UTF-8 ALL"},
		{"SortFrom", "SORT (REVERSE FROM) UTF-8 ALL"},
		{"ThreadReferences", "THREAD REFERENCES UTF-8 ALL"},
		{"ThreadOrderedSubject", "THREAD ORDEREDSUBJECT UTF-8 ALL"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				size, _ := bc.run(b, bm.command)
				b.SetBytes(size)
			}
		})
	}
}
