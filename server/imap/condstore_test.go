package imap_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/store"
)

// cmdTagged sends a tagged command and returns the untagged responses and
// the tagged one.
func (r *rawSession) cmdTagged(tag, command string) ([]string, string) {
	r.t.Helper()
	if _, err := fmt.Fprintf(r.c, "%s %s\r\n", tag, command); err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return out, l
		}
		out = append(out, l)
	}
}

// storeState returns the messages of alice's mailbox and its ModSeq.
func storeState(t *testing.T, env *testEnv, mailbox string) (store.Mailbox, []store.Message) {
	t.Helper()
	mb, msgs, err := env.st.Messages(context.Background(), alice, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	return mb, msgs
}

var highestRE = regexp.MustCompile(`^\* OK \[HIGHESTMODSEQ (\d+)\]`)

var modseqRE = regexp.MustCompile(`MODSEQ \((\d+)\)`)

// fetchModSeq returns the MODSEQ of a FETCH response line, or 0.
func fetchModSeq(line string) uint64 {
	m := modseqRE.FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func loginRaw(t *testing.T, env *testEnv) *rawSession {
	r := env.raw(t)
	r.cmd("l", "LOGIN "+alice+" "+alicePW)
	return r
}

// TestCondStoreSelectFetch: CONDSTORE and QRESYNC are announced; SELECT
// shows HIGHESTMODSEQ (the store's), ENABLE CONDSTORE answers ENABLED,
// FETCH MODSEQ and FETCH (CHANGEDSINCE) answer the store's MODSEQ
// (RFC 7162 sections 3.1.2, 3.1.4, 3.1.4.1), STATUS HIGHESTMODSEQ too.
func TestCondStoreSelectFetch(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 4; i++ {
		env.deliver(t, alice, fmt.Sprintf("m%d", i))
	}
	r := loginRaw(t, env)
	caps := r.cmd("c", "CAPABILITY")
	if len(caps) != 1 || !strings.Contains(caps[0], " CONDSTORE") || !strings.Contains(caps[0], " QRESYNC") {
		t.Errorf("CAPABILITY = %q, want CONDSTORE and QRESYNC", caps)
	}
	if got := r.cmd("e", "ENABLE CONDSTORE"); !hasLine(got, "* ENABLED CONDSTORE") {
		t.Errorf("ENABLE CONDSTORE = %q", got)
	}
	mb, msgs := storeState(t, env, store.Inbox)
	sel := r.cmd("s", "SELECT INBOX")
	if want := fmt.Sprintf("* OK [HIGHESTMODSEQ %d] Highest", mb.ModSeq); !hasLine(sel, want) {
		t.Errorf("SELECT = %q, want %q", sel, want)
	}
	if _, err := env.st.SetFlags(context.Background(), alice, store.Inbox, []uint32{msgs[2].UID}, store.FlagsAdd, []string{"$Important"}); err != nil {
		t.Fatal(err)
	}
	_, msgs = storeState(t, env, store.Inbox)
	got := r.cmd("f", "FETCH 1:* (FLAGS MODSEQ)")
	for i, m := range msgs {
		found := false
		for _, l := range got {
			if strings.HasPrefix(l, fmt.Sprintf("* %d FETCH ", i+1)) && strings.Contains(l, "FLAGS") {
				found = true
				if ms := fetchModSeq(l); ms != m.ModSeq {
					t.Errorf("message %d: %q: MODSEQ %d, want the store's %d", i+1, l, ms, m.ModSeq)
				}
			}
		}
		if !found {
			t.Errorf("FETCH 1:* (FLAGS MODSEQ) = %q: nothing for %d", got, i+1)
		}
	}
	// CHANGEDSINCE: only the message changed after that.
	got = r.cmd("g", fmt.Sprintf("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", mb.ModSeq))
	// (\Recent: an IMAP4rev1 session that got the new messages.)
	want := fmt.Sprintf(`* 3 FETCH (MODSEQ (%d) UID %d FLAGS ($Important \Recent))`, msgs[2].ModSeq, msgs[2].UID)
	if len(got) != 1 || got[0] != want {
		t.Errorf("FETCH (CHANGEDSINCE) = %q, want %q", got, want)
	}
	got = r.cmd("h", fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", msgs[2].ModSeq))
	if len(got) != 0 {
		t.Errorf("UID FETCH (CHANGEDSINCE highest) = %q, want nothing", got)
	}
	mb, _ = storeState(t, env, store.Inbox)
	got = r.cmd("i", "STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
	if want := fmt.Sprintf("* STATUS INBOX (MESSAGES 4 HIGHESTMODSEQ %d)", mb.ModSeq); !hasLine(got, want) {
		t.Errorf("STATUS = %q, want %q", got, want)
	}
	got = r.cmd("j", "STATUS INBOX (HIGHESTMODSEQ)")
	if want := fmt.Sprintf("* STATUS INBOX (HIGHESTMODSEQ %d)", mb.ModSeq); !hasLine(got, want) {
		t.Errorf("STATUS = %q, want %q", got, want)
	}
	// Syntax errors are BAD, not a crash of the connection.
	for i, c := range []string{"FETCH 1 (FLAGS) (CHANGEDSINCE)", "FETCH 1 (FLAGS) (CHANGEDSINCE x)", "FETCH 1 (FLAGS) (FOO 1)", "UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)"} {
		if _, tagged := r.cmdTagged(fmt.Sprintf("b%d", i), c); !strings.HasPrefix(tagged, fmt.Sprintf("b%d BAD ", i)) {
			t.Errorf("%s: %q, want BAD", c, tagged)
		}
	}
	r.cmd("n", "NOOP")
}

// TestCondStoreUnchangedSince: a conditional STORE that races with
// another session's change fails for that message only, with [MODIFIED]
// (RFC 7162 section 3.1.3 and its examples), and the store keeps the
// other session's flags; a .SILENT STORE still reports the new MODSEQ;
// UNCHANGEDSINCE 0 fails for every message; the session that lost sees
// the winner's flags with their MODSEQ at its next command.
func TestCondStoreUnchangedSince(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 9; i++ {
		env.deliver(t, alice, fmt.Sprintf("m%d", i))
	}
	a, b := loginRaw(t, env), loginRaw(t, env)
	a.cmd("e", "ENABLE CONDSTORE IMAP4rev2")
	a.cmd("s", "SELECT INBOX")
	b.cmd("s", "SELECT INBOX")
	mb, msgs := storeState(t, env, store.Inbox)
	known := mb.ModSeq
	// B changes message 7 and 9 after A read the mailbox.
	b.cmd("x", `STORE 7,9 +FLAGS (\Flagged)`)
	got, tagged := a.cmdTagged("d105", fmt.Sprintf(`STORE 7,5,9 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Deleted)`, known))
	_, after := storeState(t, env, store.Inbox)
	if want := "d105 OK [MODIFIED 7,9] Conditional STORE failed"; tagged != want {
		t.Errorf("conditional STORE: %q, want %q", tagged, want)
	}
	if want := fmt.Sprintf("* 5 FETCH (MODSEQ (%d) UID %d)", after[4].ModSeq, msgs[4].UID); len(got) != 1 || got[0] != want {
		t.Errorf("conditional STORE .SILENT = %q, want %q", got, want)
	}
	if !after[4].HasFlag(store.FlagDeleted) || after[6].HasFlag(store.FlagDeleted) || after[8].HasFlag(store.FlagDeleted) || !after[6].HasFlag(store.FlagFlagged) {
		t.Errorf("store after the conditional STORE: 5 %v, 7 %v, 9 %v", after[4].Flags, after[6].Flags, after[8].Flags)
	}
	// A's next command shows B's changes, with MODSEQ.
	got = a.cmd("n", "NOOP")
	for _, i := range []int{6, 8} {
		want := fmt.Sprintf(`* %d FETCH (MODSEQ (%d) UID %d FLAGS (\Flagged))`, i+1, after[i].ModSeq, after[i].UID)
		if !hasLine(got, want) {
			t.Errorf("NOOP = %q, want %q", got, want)
		}
	}
	// Not silent, UID STORE: the FETCH shows FLAGS and MODSEQ; MODIFIED
	// holds UIDs.
	mb, _ = storeState(t, env, store.Inbox)
	b.cmd("y", `STORE 2 +FLAGS ($Label1)`)
	got, tagged = a.cmdTagged("u", fmt.Sprintf(`UID STORE %d,%d (UNCHANGEDSINCE %d) +FLAGS (\Answered)`, msgs[0].UID, msgs[1].UID, mb.ModSeq))
	_, after = storeState(t, env, store.Inbox)
	if want := fmt.Sprintf("u OK [MODIFIED %d] Conditional STORE failed", msgs[1].UID); tagged != want {
		t.Errorf("UID STORE (UNCHANGEDSINCE): %q, want %q", tagged, want)
	}
	if want := fmt.Sprintf(`* 1 FETCH (MODSEQ (%d) UID %d FLAGS (\Answered))`, after[0].ModSeq, msgs[0].UID); !hasLine(got, want) {
		t.Errorf("UID STORE (UNCHANGEDSINCE) = %q, want %q", got, want)
	}
	// UNCHANGEDSINCE 0 fails for every message (RFC 7162 section 3.1.3).
	if _, tagged = a.cmdTagged("z", `STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\Seen)`); tagged != "z OK [MODIFIED 1:3] Conditional STORE failed" {
		t.Errorf("UNCHANGEDSINCE 0: %q", tagged)
	}
}

// TestCondStoreSearchModSeq: SEARCH MODSEQ selects the messages changed
// since, and answers their highest MODSEQ (RFC 7162 section 3.1.5).
func TestCondStoreSearchModSeq(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 5; i++ {
		env.deliver(t, alice, fmt.Sprintf("m%d", i))
	}
	r := loginRaw(t, env)
	r.cmd("s", "SELECT INBOX")
	mb, msgs := storeState(t, env, store.Inbox)
	r.cmd("a", `STORE 2,4 +FLAGS (\Draft)`)
	_, after := storeState(t, env, store.Inbox)
	got := r.cmd("b", fmt.Sprintf("SEARCH MODSEQ %d", mb.ModSeq+1))
	if want := fmt.Sprintf("* SEARCH 2 4 (MODSEQ %d)", after[3].ModSeq); len(got) != 1 || got[0] != want {
		t.Errorf("SEARCH MODSEQ = %q, want %q", got, want)
	}
	got = r.cmd("c", fmt.Sprintf(`UID SEARCH MODSEQ "/flags/\\draft" all %d UNDRAFT`, msgs[0].ModSeq))
	if want := fmt.Sprintf("* SEARCH %d %d %d (MODSEQ %d)", msgs[0].UID, msgs[2].UID, msgs[4].UID, msgs[4].ModSeq); len(got) != 1 || got[0] != want {
		t.Errorf("UID SEARCH MODSEQ entry = %q, want %q", got, want)
	}
	got = r.cmd("d", fmt.Sprintf("SEARCH MODSEQ %d", after[3].ModSeq+1))
	if len(got) != 1 || got[0] != "* SEARCH" {
		t.Errorf("SEARCH MODSEQ beyond = %q, want an empty SEARCH", got)
	}
	got = r.cmd("e", fmt.Sprintf("SEARCH RETURN (COUNT MAX) MODSEQ %d", mb.ModSeq+1))
	if want := fmt.Sprintf(`* ESEARCH (TAG "e") MAX 4 COUNT 2 MODSEQ %d`, after[3].ModSeq); len(got) != 1 || got[0] != want {
		t.Errorf("SEARCH RETURN MODSEQ = %q, want %q", got, want)
	}
	// Without MODSEQ, SEARCH is the library's as before.
	if got := r.cmd("f", `SEARCH DRAFT`); len(got) != 1 || got[0] != "* SEARCH 2 4" {
		t.Errorf("SEARCH DRAFT = %q", got)
	}
}

// vanishedOf returns the UIDs of a "* VANISHED [(EARLIER)] set" line.
func vanishedOf(t *testing.T, line string) []uint32 {
	t.Helper()
	set := strings.TrimPrefix(strings.TrimPrefix(line, "* VANISHED "), "(EARLIER) ")
	var out []uint32
	for _, part := range strings.Split(set, ",") {
		a, b, isRange := strings.Cut(part, ":")
		lo, err1 := strconv.ParseUint(a, 10, 32)
		hi := lo
		var err2 error
		if isRange {
			hi, err2 = strconv.ParseUint(b, 10, 32)
		}
		if err1 != nil || err2 != nil {
			t.Fatalf("bad VANISHED line %q", line)
		}
		for u := lo; u <= hi; u++ {
			out = append(out, uint32(u))
		}
	}
	return out
}

// TestQresyncReconnect: a client that knew the mailbox reconnects with
// SELECT (QRESYNC ...) after other sessions expunged, flagged and added
// messages: it gets exactly the expunged UIDs in VANISHED (EARLIER) and
// a FETCH (UID FLAGS MODSEQ) for each known message changed, as the
// store has them (RFC 7162 section 3.2.5); then, while selected, VANISHED
// instead of EXPUNGE, and UID FETCH (CHANGEDSINCE n VANISHED).
func TestQresyncReconnect(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 12; i++ {
		env.deliver(t, alice, fmt.Sprintf("m%d", i))
	}
	a := loginRaw(t, env)
	if got := a.cmd("e", "ENABLE QRESYNC"); !hasLine(got, "* ENABLED CONDSTORE QRESYNC") && !hasLine(got, "* ENABLED QRESYNC") {
		t.Errorf("ENABLE QRESYNC = %q", got)
	}
	a.cmd("s", "SELECT INBOX")
	mb, before := storeState(t, env, store.Inbox)
	a.cmd("o", "LOGOUT")

	// Other sessions: expunge 2, 3 and 8, flag 5 and 11, deliver one.
	b := loginRaw(t, env)
	b.cmd("s", "SELECT INBOX")
	b.cmd("d", `STORE 2,3,8 +FLAGS (\Deleted)`)
	b.cmd("x", "EXPUNGE")
	c := loginRaw(t, env)
	c.cmd("s", "SELECT INBOX")
	c.cmd("f", `UID STORE `+fmt.Sprint(before[4].UID)+","+fmt.Sprint(before[10].UID)+` +FLAGS (\Flagged $Work)`)
	env.deliver(t, alice, "new")
	_, now := storeState(t, env, store.Inbox)

	a = loginRaw(t, env)
	a.cmd("e", "ENABLE QRESYNC")
	// known-uids: the range of what the client knew.
	got := a.cmd("s", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d %d:%d))", mb.UIDValidity, mb.ModSeq, before[0].UID, before[len(before)-1].UID))
	var vanished []uint32
	fetched := map[uint32]string{}
	for _, l := range got {
		switch {
		case strings.HasPrefix(l, "* VANISHED (EARLIER) "):
			vanished = append(vanished, vanishedOf(t, l)...)
		case strings.HasPrefix(l, "* VANISHED"):
			t.Errorf("SELECT: %q without (EARLIER)", l)
		case strings.Contains(l, " FETCH "):
			m := regexp.MustCompile(`^\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)$`).FindStringSubmatch(l)
			if m == nil {
				t.Errorf("SELECT FETCH: %q", l)
				continue
			}
			uid, _ := strconv.ParseUint(m[2], 10, 32)
			fetched[uint32(uid)] = l
		}
	}
	wantGone := []uint32{before[1].UID, before[2].UID, before[7].UID}
	if fmt.Sprint(vanished) != fmt.Sprint(wantGone) {
		t.Errorf("VANISHED (EARLIER) %v, want %v (SELECT: %q)", vanished, wantGone, got)
	}
	for i, m := range now {
		// FETCH for the changes to known UIDs only, as Dovecot: the new
		// message is learnt from EXISTS and UIDNEXT.
		changed := m.ModSeq > mb.ModSeq && m.UID <= before[len(before)-1].UID
		l, ok := fetched[m.UID]
		if ok != changed {
			t.Errorf("message UID %d (ModSeq %d, client at %d): FETCH %q", m.UID, m.ModSeq, mb.ModSeq, l)
			continue
		}
		if !ok {
			continue
		}
		want := fmt.Sprintf("* %d FETCH (UID %d FLAGS (%s) MODSEQ (%d))", i+1, m.UID, strings.Join(m.Flags, " "), m.ModSeq)
		if l != want {
			t.Errorf("SELECT FETCH %q, want %q", l, want)
		}
	}
	if len(fetched) != 2 {
		t.Errorf("SELECT FETCH responses: %d, want 2 (the flagged ones)", len(fetched))
	}

	// Selected: another session's expunge comes as VANISHED.
	c.cmd("d", fmt.Sprintf(`UID STORE %d +FLAGS (\Deleted)`, now[0].UID))
	c.cmd("x", "EXPUNGE")
	got = a.cmd("n", "NOOP")
	if want := fmt.Sprintf("* VANISHED %d", now[0].UID); !hasLine(got, want) {
		t.Errorf("NOOP = %q, want %q", got, want)
	}
	for _, l := range got {
		if strings.HasSuffix(l, " EXPUNGE") {
			t.Errorf("EXPUNGE sent after ENABLE QRESYNC: %q", l)
		}
	}
	// Its own EXPUNGE too.
	a.cmd("d", `STORE 1 +FLAGS (\Deleted)`)
	got = a.cmd("x", "EXPUNGE")
	if want := fmt.Sprintf("* VANISHED %d", now[1].UID); !hasLine(got, want) {
		t.Errorf("EXPUNGE = %q, want %q", got, want)
	}
	// UID FETCH (CHANGEDSINCE VANISHED) reports what vanished in the set.
	got = a.cmd("u", fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", mb.ModSeq))
	if len(got) == 0 || !strings.HasPrefix(got[0], "* VANISHED (EARLIER) ") {
		t.Fatalf("UID FETCH (CHANGEDSINCE VANISHED) = %q", got)
	}
	want := []uint32{before[0].UID, before[1].UID, before[2].UID, before[3].UID, before[7].UID}
	if v := vanishedOf(t, got[0]); fmt.Sprint(v) != fmt.Sprint(want) {
		t.Errorf("UID FETCH VANISHED %v, want %v", v, want)
	}
	if len(got) != 4 { // VANISHED, the two flagged, the new one
		t.Errorf("UID FETCH (CHANGEDSINCE VANISHED) = %q, want VANISHED and 3 FETCH", got)
	}
	// A UIDVALIDITY that is not the mailbox's: plain SELECT.
	got = a.cmd("t", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", mb.UIDValidity+1, mb.ModSeq))
	for _, l := range got {
		if strings.Contains(l, "VANISHED") || strings.Contains(l, "FETCH") {
			t.Errorf("SELECT with another UIDVALIDITY: %q", l)
		}
	}
}

// TestQresyncNotEnabled: SELECT (QRESYNC ...) without ENABLE QRESYNC is
// BAD (RFC 7162 section 3.2.5).
func TestQresyncNotEnabled(t *testing.T) {
	env := newEnv(t, 0)
	r := loginRaw(t, env)
	if _, tagged := r.cmdTagged("s", "SELECT INBOX (QRESYNC (1 1))"); !strings.HasPrefix(tagged, "s BAD ") {
		t.Errorf("SELECT (QRESYNC) not enabled: %q", tagged)
	}
	got := r.cmd("c", "SELECT INBOX (CONDSTORE)")
	if !strings.Contains(strings.Join(got, "\n"), "[HIGHESTMODSEQ ") {
		t.Errorf("SELECT (CONDSTORE) = %q", got)
	}
}

// TestCondStoreModifierNotKept: the CONDSTORE syntax of a command does
// not apply to the next one, even one the conn does not rewrite (with a
// literal).
func TestCondStoreModifierNotKept(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "m")
	r := loginRaw(t, env)
	if got := r.cmd("a", "STATUS INBOX (HIGHESTMODSEQ)"); len(got) != 1 || !strings.Contains(got[0], "HIGHESTMODSEQ") {
		t.Fatalf("STATUS (HIGHESTMODSEQ) = %q", got)
	}
	fmt.Fprintf(r.c, "b STATUS {5}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("literal: %q", l)
	}
	fmt.Fprintf(r.c, "INBOX (MESSAGES)\r\n")
	var got []string
	for l := r.line(); !strings.HasPrefix(l, "b "); l = r.line() {
		got = append(got, l)
	}
	if len(got) != 1 || got[0] != "* STATUS INBOX (MESSAGES 1)" {
		t.Errorf("STATUS with a literal after STATUS (HIGHESTMODSEQ) = %q, want MESSAGES only", got)
	}
}

// TestQresyncDelayedExpunge: when another session's expunge cannot be
// told yet (during FETCH) and the answer shows a higher MODSEQ, the
// answer ends with a HIGHESTMODSEQ below the expunge (RFC 7162 section
// 3.2), so that a client that reconnects from it still gets VANISHED.
func TestQresyncDelayedExpunge(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 4; i++ {
		env.deliver(t, alice, fmt.Sprintf("m%d", i))
	}
	a, b := loginRaw(t, env), loginRaw(t, env)
	a.cmd("e", "ENABLE QRESYNC")
	a.cmd("s", "SELECT INBOX")
	b.cmd("s", "SELECT INBOX")
	_, msgs := storeState(t, env, store.Inbox)
	b.cmd("d", `STORE 2 +FLAGS (\Deleted)`)
	b.cmd("x", "EXPUNGE")
	b.cmd("f", `STORE 2 +FLAGS (\Flagged)`) // message 3, after the expunge
	mb, now := storeState(t, env, store.Inbox)
	// Asking for the expunged message too: NO [EXPUNGEISSUED], and still
	// the HIGHESTMODSEQ.
	got, tagged := a.cmdTagged("h", "FETCH 1:4 (FLAGS MODSEQ)")
	if !strings.HasPrefix(tagged, "h NO [EXPUNGEISSUED]") {
		t.Errorf("FETCH of an expunged message: %q", tagged)
	}
	// (mb.ModSeq-1 is the expunge's.)
	if m := highestRE.FindStringSubmatch(got[len(got)-1]); m == nil || atou(m[1]) >= mb.ModSeq-1 {
		t.Errorf("FETCH of an expunged message = %q, want a HIGHESTMODSEQ below %d last", got, mb.ModSeq-1)
	}
	got, tagged = a.cmdTagged("g", "FETCH 1,3:4 (FLAGS MODSEQ)")
	// (In the tagged OK, as Dovecot puts it.)
	got = append(got, strings.Replace(tagged, "g OK ", "* OK ", 1))
	var floor uint64
	sawFetch3 := false
	for _, l := range got {
		if strings.HasPrefix(l, "* 3 FETCH ") && fetchModSeq(l) == now[1].ModSeq {
			sawFetch3 = true
		}
		if m := highestRE.FindStringSubmatch(l); m != nil {
			floor, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if strings.Contains(l, "VANISHED") || strings.HasSuffix(l, "EXPUNGE") {
			t.Errorf("FETCH: %q during FETCH", l)
		}
	}
	if !sawFetch3 || floor == 0 || floor >= now[1].ModSeq-1 {
		t.Fatalf("FETCH during a delayed expunge = %q: want message 3 at MODSEQ %d, then HIGHESTMODSEQ below the expunge", got, now[1].ModSeq)
	}
	// A client that reconnects from that HIGHESTMODSEQ learns the expunge.
	c := loginRaw(t, env)
	c.cmd("e", "ENABLE QRESYNC")
	got = c.cmd("s", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", mb.UIDValidity, floor))
	if want := fmt.Sprintf("* VANISHED (EARLIER) %d", msgs[1].UID); !hasLine(got, want) {
		t.Errorf("SELECT (QRESYNC) from the HIGHESTMODSEQ = %q, want %q", got, want)
	}
	if got := a.cmd("n", "NOOP"); !hasLine(got, fmt.Sprintf("* VANISHED %d", msgs[1].UID)) {
		t.Errorf("NOOP = %q, want VANISHED", got)
	}
}

func atou(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// TestCondStoreOddCommandNames: a command name that is not UTF-8 (whose
// upper case is longer) gets an answer and the connection goes on; it
// used to panic in the CONDSTORE rewriting, which closed it.
func TestCondStoreOddCommandNames(t *testing.T) {
	env := newEnv(t, 0)
	r := loginRaw(t, env)
	for i, c := range []string{"\xed", "FETCH\xed 1", "SEARCH \xedMODSEQ 1", "SEARCH MODSEQ \xed"} {
		if _, tagged := r.cmdTagged(fmt.Sprint("x", i), c); !strings.HasPrefix(tagged, fmt.Sprint("x", i, " ")) {
			t.Errorf("%q: %q", c, tagged)
		}
	}
	r.cmd("n", "NOOP")
}

// TestCondStoreListStatus: LIST RETURN (STATUS (... HIGHESTMODSEQ))
// answers each mailbox's HIGHESTMODSEQ (RFC 5819 with RFC 7162).
func TestCondStoreListStatus(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "m")
	r := loginRaw(t, env)
	got := r.cmd("l", `LIST "" "*" RETURN (STATUS (MESSAGES HIGHESTMODSEQ))`)
	mbs, err := env.st.Mailboxes(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		name := strconv.Quote(mb.Name) // as the library writes names
		if mb.Name == store.Inbox {
			name = store.Inbox
		}
		want := fmt.Sprintf("* STATUS %s (MESSAGES %d HIGHESTMODSEQ %d)", name, mb.Messages, mb.ModSeq)
		if !hasLine(got, want) {
			t.Errorf("LIST-STATUS = %q, want %q", got, want)
		}
	}
	got = r.cmd("m", `LIST "" "INBOX" RETURN (STATUS (HIGHESTMODSEQ))`)
	if want := fmt.Sprintf("* STATUS INBOX (HIGHESTMODSEQ %d)", mbs[0].ModSeq); !hasLine(got, want) {
		t.Errorf("LIST-STATUS = %q, want %q", got, want)
	}
}

// TestCondStoreGoIMAPClient: go-imap's client, as a CONDSTORE client
// uses it: SELECT (CONDSTORE) gives HIGHESTMODSEQ, FETCH (CHANGEDSINCE)
// only the messages changed since with their MODSEQ, STORE
// (UNCHANGEDSINCE) changes the messages not changed since.
func TestCondStoreGoIMAPClient(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 5; i++ {
		env.deliver(t, alice, fmt.Sprint("m", i))
	}
	c := env.dialTLS(t, nil)
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	if !c.Caps().Has(goimap.CapCondStore) || !c.Caps().Has(goimap.CapQResync) {
		t.Errorf("capabilities %v lack CONDSTORE or QRESYNC", c.Caps())
	}
	sel, err := c.Select(store.Inbox, &goimap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	mb, msgs := storeState(t, env, store.Inbox)
	if sel.HighestModSeq != mb.ModSeq {
		t.Errorf("SELECT HIGHESTMODSEQ %d, the store %d", sel.HighestModSeq, mb.ModSeq)
	}
	if _, err := env.st.SetFlags(context.Background(), alice, store.Inbox, []uint32{msgs[1].UID, msgs[3].UID}, store.FlagsAdd, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	_, now := storeState(t, env, store.Inbox)
	got, err := c.Fetch(goimap.UIDSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, ChangedSince: sel.HighestModSeq}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].UID != goimap.UID(now[1].UID) || got[0].ModSeq != now[1].ModSeq || got[1].UID != goimap.UID(now[3].UID) || got[1].ModSeq != now[3].ModSeq {
		t.Errorf("FETCH (CHANGEDSINCE %d) = %+v, want UIDs %d and %d at MODSEQ %d", sel.HighestModSeq, got, now[1].UID, now[3].UID, now[1].ModSeq)
	}
	res, err := c.Store(goimap.SeqSet{{Start: 1, Stop: 3}}, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagFlagged}}, &goimap.StoreOptions{UnchangedSince: sel.HighestModSeq}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	_, after := storeState(t, env, store.Inbox)
	if len(res) != 2 || !after[0].HasFlag(store.FlagFlagged) || after[1].HasFlag(store.FlagFlagged) || !after[2].HasFlag(store.FlagFlagged) {
		t.Errorf("STORE (UNCHANGEDSINCE): %d FETCH responses; store flags %v %v %v", len(res), after[0].Flags, after[1].Flags, after[2].Flags)
	}
	for _, m := range res {
		if m.ModSeq != after[m.SeqNum-1].ModSeq {
			t.Errorf("STORE answer for %d: MODSEQ %d, the store %d", m.SeqNum, m.ModSeq, after[m.SeqNum-1].ModSeq)
		}
	}
	st, err := c.Status("Trash", &goimap.StatusOptions{HighestModSeq: true, NumMessages: true}).Wait()
	if err != nil || st.HighestModSeq == 0 {
		t.Errorf("STATUS HIGHESTMODSEQ = %+v, %v", st, err)
	}
}

// TestCondStoreEnableSelected: ENABLE CONDSTORE alone, or with another
// capability, answers ENABLED with each; with a mailbox selected, the
// client learns its HIGHESTMODSEQ (RFC 7162 section 3.1).
func TestCondStoreEnableSelected(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "m")
	r := loginRaw(t, env)
	r.cmd("s", "SELECT INBOX")
	mb, _ := storeState(t, env, store.Inbox)
	got := r.cmd("e", "ENABLE CONDSTORE")
	if !hasLine(got, "* ENABLED CONDSTORE") || !hasLine(got, fmt.Sprintf("* OK [HIGHESTMODSEQ %d] Highest", mb.ModSeq)) {
		t.Errorf("ENABLE CONDSTORE while selected = %q", got)
	}
	got = r.cmd("f", "ENABLE CONDSTORE QRESYNC IMAP4rev2")
	if len(got) != 1 || got[0] != "* ENABLED IMAP4rev2 QRESYNC" {
		t.Errorf("ENABLE again = %q, want IMAP4rev2 and QRESYNC (CONDSTORE was on)", got)
	}
}

// TestQresyncIdle: in IDLE, another session's expunge comes as VANISHED,
// then the new HIGHESTMODSEQ (untagged: no tagged response until DONE).
func TestQresyncIdle(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 3; i++ {
		env.deliver(t, alice, fmt.Sprint("m", i))
	}
	a, b := loginRaw(t, env), loginRaw(t, env)
	a.cmd("e", "ENABLE QRESYNC")
	a.cmd("s", "SELECT INBOX")
	b.cmd("s", "SELECT INBOX")
	fmt.Fprintf(a.c, "i IDLE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	b.cmd("d", `STORE 2 +FLAGS (\Deleted)`)
	b.cmd("x", "EXPUNGE")
	mb, _ := storeState(t, env, store.Inbox)
	var got []string
	for len(got) < 4 && (len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "* OK [HIGHESTMODSEQ")) {
		got = append(got, a.line())
	}
	// (The \Deleted flag update may come first.)
	if n := len(got); n < 2 || got[n-2] != "* VANISHED 2" || got[n-1] != fmt.Sprintf("* OK [HIGHESTMODSEQ %d] Highest", mb.ModSeq) {
		t.Errorf("IDLE = %q, want VANISHED 2 then HIGHESTMODSEQ %d", got, mb.ModSeq)
	}
	fmt.Fprintf(a.c, "DONE\r\n")
	if l := a.line(); l != "i OK IDLE completed" {
		t.Errorf("DONE: %q", l)
	}
}
