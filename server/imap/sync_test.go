package imap_test

import (
	"context"
	"fmt"
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
	b.cmd("b4", "LOGOUT")
	if got := st.cmd("s4", "STATUS INBOX (RECENT)"); !slices.Equal(got, []string{"* STATUS INBOX (RECENT 0)"}) {
		t.Errorf("STATUS once the sessions left = %q", got)
	}
	c := env.raw(t)
	c.cmd("l", "LOGIN "+alice+" "+alicePW)
	if got := c.cmd("s", "SELECT INBOX"); !slices.Contains(got, "* 0 RECENT") {
		t.Errorf("SELECT after they left = %q, want * 0 RECENT", got)
	}
}
