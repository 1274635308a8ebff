package imap_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// status sends a tagged command and returns the untagged responses and
// the tagged one, whatever its status.
func (r *rawSession) status(tag, command string) (untagged []string, tagged string) {
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

func login(t *testing.T, env *testEnv, mailbox string) *rawSession {
	t.Helper()
	r := env.raw(t)
	r.cmd("l", "LOGIN "+alice+" "+alicePW)
	if mailbox != "" {
		r.cmd("s", "SELECT "+mailbox)
	}
	return r
}

// TestCopyIntoSelectedShowsOnNoop (issue 13 item 1): a COPY by one
// session into the mailbox another has selected shows as EXISTS on that
// session's next NOOP, and its FETCH then answers with FETCH data.
func TestCopyIntoSelectedShowsOnNoop(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 3; i++ {
		env.deliver(t, alice, fmt.Sprint("copy ", i))
	}
	a := login(t, env, "INBOX")
	b := login(t, env, "Trash")
	for round := 0; round < 5; round++ {
		a.cmd("c", "COPY 1:3 Trash")
		got := b.cmd("n", "NOOP")
		want := fmt.Sprintf("* %d EXISTS", 3*(round+1))
		if !slices.Contains(got, want) {
			t.Fatalf("round %d: NOOP after COPY = %q, want %q", round, got, want)
		}
		got = b.cmd("f", "FETCH 1:3 (FLAGS)")
		if len(got) != 3 || !strings.HasPrefix(got[0], "* 1 FETCH (") {
			t.Fatalf("round %d: FETCH 1:3 = %q, want three FETCH responses", round, got)
		}
	}
}

// TestFetchExpungedByOther (issue 13 item 9): FETCH of a message that
// another session expunged, still in this session's view, answers NO
// [EXPUNGEISSUED] with the data of the others; a sequence number above
// EXISTS is BAD.
func TestFetchExpungedByOther(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 3; i++ {
		env.deliver(t, alice, fmt.Sprint("gone ", i))
	}
	a := login(t, env, "INBOX")
	b := login(t, env, "INBOX")
	b.cmd("b1", `STORE 2 +FLAGS.SILENT (\Deleted)`)
	b.cmd("b2", "EXPUNGE")

	got, tagged := a.status("a1", "FETCH 1:3 (UID BODY.PEEK[])")
	if !strings.HasPrefix(tagged, "a1 NO [EXPUNGEISSUED]") {
		t.Errorf("FETCH of an expunged message: tagged %q, want NO [EXPUNGEISSUED]", tagged)
	}
	var seqs []string
	for _, l := range got {
		if strings.Contains(l, " FETCH ") {
			seqs = append(seqs, strings.Fields(l)[1])
		}
		if strings.Contains(l, "EXPUNGE") && !strings.Contains(l, "EXPUNGEISSUED") {
			t.Errorf("EXPUNGE during FETCH: %q", l)
		}
	}
	if !slices.Equal(seqs, []string{"1", "3"}) {
		t.Errorf("FETCH 1:3 answered for %v, want [1 3]; responses %q", seqs, got)
	}
	if _, tagged := a.status("a2", "FETCH 4 (UID)"); !strings.HasPrefix(tagged, "a2 BAD") {
		t.Errorf("FETCH 4 with 3 messages: %q, want BAD", tagged)
	}
	if got := a.cmd("a3", "NOOP"); !slices.Equal(got, []string{"* 2 EXPUNGE"}) {
		t.Errorf("NOOP = %q, want * 2 EXPUNGE", got)
	}
	if _, tagged := a.status("a4", "FETCH 3 (UID)"); !strings.HasPrefix(tagged, "a4 BAD") {
		t.Errorf("FETCH 3 with 2 messages: %q, want BAD", tagged)
	}
	if got := a.cmd("a5", "FETCH 2 (UID)"); !slices.Equal(got, []string{"* 2 FETCH (UID 3)"}) {
		t.Errorf("FETCH 2 = %q", got)
	}
	for _, c := range []string{`STORE 3 +FLAGS (\Seen)`, "COPY 2:3 Trash", "MOVE 3 Trash"} {
		if _, tagged := a.status("a7", c); !strings.HasPrefix(tagged, "a7 BAD") {
			t.Errorf("%s with 2 messages: %q, want BAD", c, tagged)
		}
	}
	// UID sets name what exists: no BAD.
	if got := a.cmd("a6", "UID FETCH 2:9 (UID)"); !slices.Equal(got, []string{"* 2 FETCH (UID 3)"}) {
		t.Errorf("UID FETCH 2:9 = %q", got)
	}
}

// TestKeywordAnnounced (issue 13 item 3): a keyword first used by STORE,
// APPEND or COPY is announced by FLAGS and PERMANENTFLAGS to every
// session that has the mailbox selected, before any FETCH shows it.
func TestKeywordAnnounced(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "kw")
	a := login(t, env, "INBOX")
	b := login(t, env, "INBOX")
	e := env.raw(t)
	e.cmd("l", "LOGIN "+alice+" "+alicePW)
	e.cmd("x", "EXAMINE INBOX")

	// flagsFirst checks that got announces kw before any FETCH with it.
	flagsFirst := func(who string, got []string, kw string, readOnly bool) {
		t.Helper()
		flags, perm, fetch := -1, -1, -1
		for i, l := range got {
			switch {
			case strings.HasPrefix(l, "* FLAGS ") && strings.Contains(l, kw):
				flags = i
			case strings.HasPrefix(l, "* OK [PERMANENTFLAGS "):
				perm = i
				if readOnly != strings.HasPrefix(l, "* OK [PERMANENTFLAGS ()]") || (!readOnly && !strings.Contains(l, kw)) {
					t.Errorf("%s: %q", who, l)
				}
			case strings.Contains(l, " FETCH ") && strings.Contains(l, kw) && fetch < 0:
				fetch = i
			}
		}
		if flags < 0 || perm < 0 || fetch >= 0 && (fetch < flags || fetch < perm) {
			t.Errorf("%s: %q: want FLAGS and PERMANENTFLAGS with %s before any FETCH showing it", who, got, kw)
		}
	}
	got := b.cmd("b1", "STORE 1 +FLAGS ($Label1)")
	flagsFirst("STORE's session", got, "$Label1", false)
	flagsFirst("other session's NOOP", a.cmd("a1", "NOOP"), "$Label1", false)
	flagsFirst("read-only session's NOOP", e.cmd("e1", "NOOP"), "$Label1", true)
	// Announced once.
	if got := a.cmd("a2", "STORE 1 -FLAGS ($Label1)"); slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "* FLAGS") }) {
		t.Errorf("known keyword announced again: %q", got)
	}

	// APPEND with a new keyword into the selected mailbox.
	msg := mail("appended")
	flagsFirst("APPEND's session", b.cmd("b2", fmt.Sprintf("APPEND INBOX (Project7) {%d+}\r\n%s", len(msg), msg)), "Project7", false)
	flagsFirst("NOOP after APPEND", a.cmd("a3", "NOOP"), "Project7", false)

	// COPY of a message with a keyword from another mailbox.
	if err := env.st.CreateMailbox(context.Background(), alice, "Src", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := env.st.Deliver(context.Background(), alice, "Src", strings.NewReader(mail("src")), []string{"Copied9"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	c := login(t, env, "Src")
	c.cmd("c1", "COPY 1 INBOX")
	flagsFirst("NOOP after COPY", a.cmd("a4", "NOOP"), "Copied9", false)
}

// TestRecent (issue 13 item 2): each new message is \Recent in exactly
// one IMAP4rev1 session: SELECT's RECENT, the RECENT sent with EXISTS,
// FETCH FLAGS, SEARCH RECENT and NEW, STATUS RECENT. An IMAP4rev2 session
// neither sees nor takes it.
func TestRecent(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "r1")
	env.deliver(t, alice, "r2")
	st := login(t, env, "")
	if got := st.cmd("s1", "STATUS INBOX (RECENT)"); !slices.Equal(got, []string{"* STATUS INBOX (RECENT 2)"}) {
		t.Errorf("STATUS before any SELECT = %q", got)
	}
	// A rev2 session does not take \Recent.
	v2 := env.raw(t)
	v2.cmd("l", "LOGIN "+alice+" "+alicePW)
	v2.cmd("e", "ENABLE IMAP4rev2")
	got := v2.cmd("s", "SELECT INBOX")
	if slices.ContainsFunc(got, func(l string) bool { return strings.HasSuffix(l, " RECENT") }) {
		t.Errorf("rev2 SELECT = %q, want no RECENT", got)
	}
	a := env.raw(t)
	a.cmd("l", "LOGIN "+alice+" "+alicePW)
	if got := a.cmd("s", "SELECT INBOX"); !slices.Contains(got, "* 2 RECENT") {
		t.Errorf("first rev1 SELECT = %q, want * 2 RECENT", got)
	}
	b := env.raw(t)
	b.cmd("l", "LOGIN "+alice+" "+alicePW)
	if got := b.cmd("s", "SELECT INBOX"); !slices.Contains(got, "* 0 RECENT") {
		t.Errorf("second SELECT = %q, want * 0 RECENT", got)
	}
	if got := st.cmd("s2", "STATUS INBOX (RECENT)"); !slices.Equal(got, []string{"* STATUS INBOX (RECENT 2)"}) {
		t.Errorf("STATUS with a's session open = %q", got)
	}
	env.deliver(t, alice, "r3")
	if got := b.cmd("b1", "NOOP"); !slices.Equal(got, []string{"* 3 EXISTS", "* 1 RECENT"}) {
		t.Errorf("b's NOOP = %q, want 3 EXISTS and 1 RECENT", got)
	}
	if got := a.cmd("a1", "NOOP"); !slices.Equal(got, []string{"* 3 EXISTS", "* 2 RECENT"}) {
		t.Errorf("a's NOOP = %q, want 3 EXISTS and 2 RECENT", got)
	}
	if got := a.cmd("a2", "SEARCH RECENT"); !slices.Equal(got, []string{"* SEARCH 1 2"}) {
		t.Errorf("a: SEARCH RECENT = %q", got)
	}
	a.cmd("a3", `STORE 1 +FLAGS.SILENT (\Seen)`)
	if got := a.cmd("a4", "SEARCH NEW"); !slices.Equal(got, []string{"* SEARCH 2"}) {
		t.Errorf("a: SEARCH NEW = %q", got)
	}
	if got := a.cmd("a5", "SEARCH OLD"); !slices.Equal(got, []string{"* SEARCH 3"}) {
		t.Errorf("a: SEARCH OLD = %q", got)
	}
	if got := b.cmd("b2", "SEARCH RECENT"); !slices.Contains(got, "* SEARCH 3") {
		t.Errorf("b: SEARCH RECENT = %q", got)
	}
	if got := b.cmd("b3", "FETCH 3 (FLAGS)"); !slices.Equal(got, []string{`* 3 FETCH (UID 3 FLAGS (\Recent))`}) {
		t.Errorf("b: FETCH 3 = %q", got)
	}
	if got := v2.cmd("v1", "FETCH 1:* (FLAGS)"); slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, `\Recent`) }) {
		t.Errorf("rev2 FETCH = %q, want no \\Recent", got)
	}
	if got := st.cmd("s3", "STATUS INBOX (RECENT)"); !slices.Equal(got, []string{"* STATUS INBOX (RECENT 3)"}) {
		t.Errorf("STATUS with both sessions open = %q", got)
	}
	// \Recent lasts as long as the session that has it.
	a.cmd("a6", "CLOSE")
	b.cmd("b4", "CLOSE")
	if got := st.cmd("s4", "STATUS INBOX (RECENT)"); !slices.Equal(got, []string{"* STATUS INBOX (RECENT 0)"}) {
		t.Errorf("STATUS once the sessions left = %q", got)
	}
	c := env.raw(t)
	c.cmd("l", "LOGIN "+alice+" "+alicePW)
	if got := c.cmd("s", "SELECT INBOX"); !slices.Contains(got, "* 0 RECENT") {
		t.Errorf("SELECT after they left = %q, want * 0 RECENT", got)
	}
}

// TestImaplibRecentKeywords: Python's imaplib (IMAP4rev1) sees \Recent
// in one session per message (SELECT, RECENT with EXISTS, SEARCH
// RECENT/NEW/OLD, FETCH FLAGS, STATUS) and new keywords announced by FLAGS
// and PERMANENTFLAGS (testdata/imaplib_recent.py).
func TestImaplibRecentKeywords(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	env := newEnv(t, 0)
	env.deliver(t, alice, "recent one")
	env.deliver(t, alice, "recent two")
	host, port, _ := net.SplitHostPort(env.tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "testdata/imaplib_recent.py", host, port, env.caFile, alice, alicePW)
	out, err := cmd.CombinedOutput()
	t.Logf("imaplib:\n%s", out)
	if err != nil {
		t.Fatalf("imaplib session: %v", err)
	}
}

// TestMbsyncTwoWayFlags: mbsync (Sync All) with flags changed on both
// sides between runs, while another IMAP session has INBOX selected and
// changes flags too: after a run every side agrees, and a further run
// changes nothing.
func TestMbsyncTwoWayFlags(t *testing.T) {
	if _, err := exec.LookPath("mbsync"); err != nil {
		t.Skip("mbsync not installed")
	}
	env := newEnv(t, 0)
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		env.deliver(t, alice, fmt.Sprint("twoway ", i))
	}
	host, port, _ := net.SplitHostPort(env.tlsAddr)
	dir := t.TempDir()
	maildir := filepath.Join(dir, "mail")
	if err := os.Mkdir(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`IMAPAccount test
Host %s
Port %s
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account test

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel inbox
Far :remote:INBOX
Near :local:INBOX
Create Near
Sync All
Expunge Both
SyncState *
`, host, port, alice, alicePW, env.caFile, maildir, maildir)
	confFile := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, "mbsync", "-V", "-c", confFile, "inbox")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		t.Logf("mbsync:\n%s", out)
		if err != nil {
			t.Fatalf("mbsync: %v", err)
		}
		return string(out)
	}
	subject := regexp.MustCompile(`(?m)^Subject: (.*)$`)
	// local returns the Maildir's messages: subject -> file.
	local := func() map[string]string {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "*", "*"))
		out := map[string]string{}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if m := subject.FindSubmatch(b); m != nil {
				out[string(m[1])] = f
			}
		}
		return out
	}
	maildirFlags := func(file string) string {
		if i := strings.LastIndex(file, ":2,"); i >= 0 {
			return file[i+3:]
		}
		return ""
	}
	// server returns the store's messages: subject -> Maildir flag letters.
	server := func() map[string]string {
		t.Helper()
		_, msgs, err := env.st.Messages(ctx, alice, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		hdrs := make([]uint32, len(msgs))
		for i, m := range msgs {
			hdrs[i] = m.UID
		}
		out := map[string]string{}
		for _, m := range msgs {
			f, err := env.st.OpenBody(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4096)
			n, _ := f.Read(b)
			f.Close()
			sub := subject.FindSubmatch(b[:n])
			if sub == nil {
				t.Fatalf("UID %d has no subject", m.UID)
			}
			letters := ""
			for _, fl := range []struct{ flag, letter string }{{`\Draft`, "D"}, {`\Flagged`, "F"}, {`\Answered`, "R"}, {`\Seen`, "S"}, {`\Deleted`, "T"}} {
				if m.HasFlag(fl.flag) {
					letters += fl.letter
				}
			}
			out[strings.TrimRight(string(sub[1]), "\r")] = letters
		}
		return out
	}
	agree := func(when string) {
		t.Helper()
		srv, loc := server(), local()
		if len(srv) != len(loc) {
			t.Fatalf("%s: server has %d messages, Maildir %d", when, len(srv), len(loc))
		}
		for sub, letters := range srv {
			f, ok := loc[sub]
			if !ok {
				t.Errorf("%s: %q not in the Maildir", when, sub)
				continue
			}
			if got := maildirFlags(f); got != letters {
				t.Errorf("%s: %q has flags %q in the Maildir, %q on the server", when, sub, got, letters)
			}
		}
	}
	// A session that stays on INBOX throughout, changing flags too.
	other := login(t, env, "INBOX")

	run()
	agree("first run")

	// Both sides change flags, on different messages and on the same one.
	setLocal := func(sub, letters string) {
		t.Helper()
		f := local()[sub]
		base := filepath.Base(f)
		if i := strings.Index(base, ":2,"); i >= 0 {
			base = base[:i]
		}
		if err := os.Rename(f, filepath.Join(maildir, "INBOX", "cur", base+":2,"+letters)); err != nil {
			t.Fatal(err)
		}
	}
	setLocal("twoway 0", "S")
	setLocal("twoway 1", "FS")
	setLocal("twoway 5", "R")
	other.cmd("o1", `STORE 3 +FLAGS (\Flagged)`)
	other.cmd("o2", `STORE 4 +FLAGS (\Seen \Answered)`)
	other.cmd("o3", `STORE 6 +FLAGS (\Seen)`) // twoway 5: both sides
	run()
	agree("after changes on both sides")
	want := map[string]string{"twoway 0": "S", "twoway 1": "FS", "twoway 2": "F", "twoway 3": "RS", "twoway 4": "", "twoway 5": "RS"}
	if got := server(); !reflectEqual(got, want) {
		t.Errorf("server flags = %v, want %v", got, want)
	}
	// The other session was told every change, once.
	got := other.cmd("o4", "FETCH 1:* (FLAGS)")
	if len(got) != 6 {
		t.Errorf("FETCH 1:* = %q", got)
	}
	if got := other.cmd("o5", "NOOP"); len(got) != 0 {
		t.Errorf("NOOP after FETCH = %q, want nothing", got)
	}

	// Removals on both sides, then a run that must change nothing more.
	setLocal("twoway 1", "S")
	other.cmd("o6", `STORE 4 -FLAGS (\Answered)`)
	run()
	agree("after removals")
	out := run()
	agree("after a run with nothing to do")
	if strings.Contains(out, "Pulling") && !strings.Contains(out, "far: +0 *0 #0 -0") && strings.Contains(out, "*1") {
		t.Errorf("second run still changed flags:\n%s", out)
	}
}

func reflectEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestNoStaleFlagsAfterOwnStore (issue 13 item 1): after a session's own
// STORE, the server never sends it an older FETCH FLAGS of the message
// (another session's change, made before, that was still to be sent).
func TestNoStaleFlagsAfterOwnStore(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "stale")
	a := login(t, env, "INBOX")
	b := login(t, env, "INBOX")
	b.cmd("b1", `STORE 1 +FLAGS (\Flagged)`)
	time.Sleep(100 * time.Millisecond) // the change reaches the shared state
	got := a.cmd("a1", `STORE 1 +FLAGS (\Seen)`)
	got = append(got, a.cmd("a2", "NOOP")...)
	sawSeen := false
	for _, l := range got {
		if !strings.HasPrefix(l, "* 1 FETCH ") {
			continue
		}
		hasSeen := strings.Contains(l, `\Seen`)
		if sawSeen && !hasSeen {
			t.Errorf("older flags after the session's own STORE: %q", got)
		}
		sawSeen = sawSeen || hasSeen
		if !strings.Contains(l, `\Flagged`) {
			t.Errorf("flags without the other session's \\Flagged: %q", l)
		}
	}
	if !sawSeen {
		t.Errorf("STORE and NOOP = %q, want FLAGS with \\Seen", got)
	}
}
