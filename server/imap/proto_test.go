package imap_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/imap"
)

// deliverRaw stores a message as given.
func (env *testEnv) deliverRaw(t testing.TB, user, msg string) {
	t.Helper()
	if _, err := env.st.Deliver(context.Background(), user, "", strings.NewReader(msg), nil, time.Time{}); err != nil {
		t.Fatalf("Deliver = %v", err)
	}
}

// TestEnvelopeGroups: address groups come out of FETCH ENVELOPE with the
// RFC 9051 group markers (a start marker with the group's name as mailbox
// and NIL host, an end marker all NIL), with or without the library
// writing the response; an empty group is its two markers, not NIL.
func TestEnvelopeGroups(t *testing.T) {
	env := newEnv(t, 0)
	env.deliverRaw(t, alice, "From: bob@example.test\r\nTo: undisclosed-recipients:;\r\nSubject: one\r\n\r\nbody\r\n")
	env.deliverRaw(t, alice, "From: bob@example.test\r\nTo: a@example.test, Team: c@example.test, \"D\" <d@example.test>;, e@example.test\r\nSubject: two\r\n\r\nbody\r\n")
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	want := []string{
		`((NIL NIL "undisclosed-recipients" NIL) (NIL NIL NIL NIL))`,
		`((NIL NIL "a" "example.test") (NIL NIL "Team" NIL) (NIL NIL "c" "example.test") ("D" NIL "d" "example.test") (NIL NIL NIL NIL) (NIL NIL "e" "example.test"))`,
	}
	defer imap.SetRawFetch(true)
	for _, raw := range []bool{true, false} {
		imap.SetRawFetch(raw)
		got := r.cmd("c", "FETCH 1:2 (ENVELOPE)")
		if len(got) != 2 {
			t.Fatalf("FETCH ENVELOPE: %q", got)
		}
		for i, line := range got {
			// From, Sender, Reply-To are bob; To follows.
			bob := `((NIL NIL "bob" "example.test"))`
			k := strings.Index(line, strings.Repeat(bob+" ", 3))
			if k < 0 || !strings.HasPrefix(line[k+3*(len(bob)+1):], want[i]+" NIL NIL NIL NIL)") {
				t.Errorf("raw %v: message %d: %s\nwant To %s", raw, i+1, line, want[i])
			}
		}
	}
}

// TestSearchAddressComments: SEARCH FROM/TO/CC find addresses written with
// comments and blanks inside them (RFC 5322 CFWS), as well as plain ones.
func TestSearchAddressComments(t *testing.T) {
	env := newEnv(t, 0)
	env.deliverRaw(t, alice, "From: user (c)@ (c) domain.org\r\nTo: x@example.test\r\nSubject: one\r\n\r\nbody\r\n")
	env.deliverRaw(t, alice, "From: other@domain.org\r\nTo: \"Z\" (work) <zed (c) @example.test>\r\nCc: Bob <bob (home)@example.test>, c@example.test\r\nSubject: two\r\n\r\nbody\r\n")
	env.deliverRaw(t, alice, "From: nobody@example.test\r\nSubject: three\r\n\r\nbody\r\n")
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	for i, c := range []struct{ query, want string }{
		{`FROM "user@domain.org"`, "* SEARCH 1"},
		{`FROM "domain.org"`, "* SEARCH 1 2"},
		{`TO "zed@example.test"`, "* SEARCH 2"},
		{`CC "bob@example.test"`, "* SEARCH 2"},
		{`CC "Bob <bob@"`, "* SEARCH 2"},
		{`FROM "(c)"`, "* SEARCH 1"}, // the field's text still matches
		{`TO "nobody"`, "* SEARCH"},
	} {
		got := r.cmd(fmt.Sprintf("s%d", i), "SEARCH "+c.query)
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("SEARCH %s = %q, want %q", c.query, got, c.want)
		}
	}
}

// TestMoveToSelf: MOVE (and COPY) into the selected mailbox succeed, as
// in Dovecot: the message comes back under a new UID, the old one is
// expunged; the EXISTS of the copy comes with COPY's answer.
func TestMoveToSelf(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "one")
	env.deliver(t, alice, "two")
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	got := strings.Join(r.cmd("c", "MOVE 1 INBOX"), "\n")
	for _, want := range []string{"[COPYUID ", " 1 3]", "* 1 EXPUNGE", "* 2 EXISTS"} {
		if !strings.Contains(got, want) {
			t.Errorf("MOVE 1 INBOX: %q lacks %q", got, want)
		}
	}
	if got := r.cmd("d", "UID FETCH 1:* (UID)"); !slices.Equal(got, []string{"* 1 FETCH (UID 2)", "* 2 FETCH (UID 3)"}) {
		t.Errorf("after MOVE: %q", got)
	}
	// The copy is announced in COPY's own answer; this IMAP4rev1
	// session is the one that sees it as \Recent.
	if got := r.cmd("e", "COPY 2 INBOX"); !slices.Equal(got, []string{"* 3 EXISTS", "* 3 RECENT"}) {
		t.Errorf("COPY 2 INBOX: %q, want * 3 EXISTS and * 3 RECENT", got)
	}
	if got := r.cmd("g", "FETCH 3 (UID)"); !slices.Equal(got, []string{"* 3 FETCH (UID 4)"}) {
		t.Errorf("after COPY 2 INBOX: %q", got)
	}
	mb, _ := env.st.Mailbox(context.Background(), alice, "INBOX")
	if mb.Messages != 3 {
		t.Errorf("INBOX has %d messages, want 3", mb.Messages)
	}
}

// TestListBadUTF7: LIST and LSUB with a reference or pattern that is not
// valid modified UTF-7 answer OK with no mailbox (no name can match),
// never NO [SERVERBUG]; valid ones still list.
func TestListBadUTF7(t *testing.T) {
	env := newEnv(t, 0)
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "CREATE &AOk-t&AOk-")
	for i, c := range []string{
		`LIST "" "!#$$&'+,-.0123456789:;<=>?@^_` + "`" + `|[}%*"`,
		`LIST "" "&"`,
		`LIST "" &Jjo`,
		`LIST "&AGE-" "*"`,
		`LSUB "" "a&-&Jjo-&Jjo-"`,
		`LIST "" ("INBOX" "&")`,
	} {
		if got := r.cmd(fmt.Sprintf("c%d", i), c); len(got) != 0 {
			t.Errorf("%s: %q", c, got)
		}
	}
	if got := r.cmd("d", `LIST "" "&AOk-*"`); len(got) != 1 || got[0] != `* LIST () "/" "&AOk-t&AOk-"` {
		t.Errorf("LIST of a valid pattern: %q", got)
	}
}

// has reports whether lines holds want.
func has(lines []string, want string) bool { return slices.Contains(lines, want) }

// TestSubscriptions: CREATE subscribes the mailbox and the parents it
// creates; a deleted mailbox stays subscribed (RFC 9051 section 6.3.7)
// and LIST (SUBSCRIBED) shows it \NonExistent; UNSUBSCRIBE of it, or of
// a name that never existed, answers OK (Thunderbird unsubscribes after
// DELETE); RECURSIVEMATCH gives CHILDINFO; LSUB gives \Noselect for a
// parent that only its subscribed child puts there (RFC 3501 section
// 6.3.9); CREATE of a gone name makes it an ordinary mailbox again.
func TestSubscriptions(t *testing.T) {
	env := newEnv(t, 0)
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "CREATE x/y/z")
	got := r.cmd("c", `LSUB "" "x*"`)
	if !slices.Equal(got, []string{`* LSUB () "/" "x"`, `* LSUB () "/" "x/y"`, `* LSUB () "/" "x/y/z"`}) {
		t.Errorf("LSUB after CREATE x/y/z: %q", got)
	}
	r.cmd("d", "DELETE x/y/z")
	got = r.cmd("e", `LIST (SUBSCRIBED) "" "x/*"`)
	if !slices.Equal(got, []string{`* LIST (\Subscribed) "/" "x/y"`, `* LIST (\Subscribed \NonExistent) "/" "x/y/z"`}) {
		t.Errorf("LIST (SUBSCRIBED) after DELETE: %q", got)
	}
	if got := r.cmd("f", `LIST "" "x/*"`); !slices.Equal(got, []string{`* LIST () "/" "x/y"`}) {
		t.Errorf("LIST after DELETE: %q", got)
	}
	r.cmd("g", "UNSUBSCRIBE x/y/z")
	r.cmd("h", "UNSUBSCRIBE never/was")
	if got := r.cmd("i", `LIST (SUBSCRIBED) "" "x/*"`); !slices.Equal(got, []string{`* LIST (\Subscribed) "/" "x/y"`}) {
		t.Errorf("LIST (SUBSCRIBED) after UNSUBSCRIBE: %q", got)
	}
	r.cmd("j", "UNSUBSCRIBE x")
	got = r.cmd("k", `LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"`)
	if !has(got, `* LIST () "/" "x" (CHILDINFO ("SUBSCRIBED"))`) || !has(got, `* LIST (\Subscribed) "/" INBOX`) {
		t.Errorf("LIST (SUBSCRIBED RECURSIVEMATCH): %q", got)
	}
	if got := r.cmd("l", `LIST (SUBSCRIBED) "" "%"`); has(got, `* LIST () "/" "x"`) || len(got) == 0 {
		t.Errorf("LIST (SUBSCRIBED) %%: %q", got)
	}
	got = r.cmd("m", `LSUB "" "%"`)
	if !has(got, `* LSUB (\Noselect) "/" "x"`) || !has(got, `* LSUB () "/" INBOX`) {
		t.Errorf("LSUB %%: %q", got)
	}
	if got := r.cmd("n", `LSUB "" "x*"`); !slices.Equal(got, []string{`* LSUB () "/" "x/y"`}) {
		t.Errorf("LSUB x*: %q", got)
	}
	// A gone subscription, then the mailbox again.
	r.cmd("o", "CREATE q")
	r.cmd("p", "DELETE q")
	r.cmd("q", "CREATE q")
	if got := r.cmd("r", `LIST (SUBSCRIBED) "" "q"`); !slices.Equal(got, []string{`* LIST (\Subscribed) "/" "q"`}) {
		t.Errorf("LIST (SUBSCRIBED) after DELETE and CREATE: %q", got)
	}
}

// cmdBytes sends a tagged command and returns its whole answer, literals
// included, up to the tagged response, which must be OK.
func (r *rawSession) cmdBytes(tag, command string) string {
	r.t.Helper()
	if _, err := fmt.Fprintf(r.c, "%s %s\r\n", tag, command); err != nil {
		r.t.Fatal(err)
	}
	var out strings.Builder
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				r.t.Fatalf("%s: %s", command, l)
			}
			return out.String()
		}
		out.WriteString(l + "\r\n")
		for strings.HasSuffix(l, "}") {
			n, err := strconv.Atoi(l[strings.LastIndexByte(l, '{')+1 : len(l)-1])
			if err != nil {
				r.t.Fatalf("literal in %q: %v", l, err)
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r.br, buf); err != nil {
				r.t.Fatal(err)
			}
			out.Write(buf)
			l = r.line()
			out.WriteString(l + "\r\n")
		}
	}
}

// TestBinary: a message APPENDed in a literal8 with NUL bytes is stored
// with those parts in base64, as Dovecot stores it (its answers below are
// Dovecot 2.3's for the same APPEND): BODY[] carries no NUL, BINARY[]
// decodes the part back. A message stored with NUL by another way (SMTP)
// comes out of BODY sections with each NUL as 0x80 (a literal must not
// hold NUL, RFC 9051 section 4.3; Dovecot does the same) and of BINARY as
// stored, in a literal8. A partial BINARY fetch answers with its origin
// (RFC 9051: BINARY[1]<2>).
func TestBinary(t *testing.T) {
	env := newEnv(t, 0)
	body := "ab\x00cd\x00ef\r\n"
	msg := "Subject: bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body
	env.deliverRaw(t, alice, msg) // UID 1: stored as it came
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	fmt.Fprintf(r.c, "b APPEND INBOX ~{%d}\r\n", len(msg))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND literal8: %q", l)
	}
	fmt.Fprintf(r.c, "%s\r\n", msg)
	if l := r.line(); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("APPEND: %q", l)
	}
	r.cmd("c", "SELECT INBOX")
	stored := "Subject: bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nYWIAY2QAZWYNCg=="
	for _, c := range []struct{ command, want string }{
		{"FETCH 2 (RFC822.SIZE BODY.PEEK[])", fmt.Sprintf("* 2 FETCH (UID 2 RFC822.SIZE 107 BODY[] {107}\r\n%s)\r\n", stored)},
		{"FETCH 2 (BINARY.SIZE[1] BODY.PEEK[1]<1.3>)", "* 2 FETCH (UID 2 BODY[1]<1> {3}\r\nWIA BINARY.SIZE[1] 10)\r\n"},
		{"FETCH 2 (BINARY.PEEK[1])", "* 2 FETCH (UID 2 BINARY[1] ~{10}\r\n" + body + ")\r\n"},
		{"FETCH 1 (BODY.PEEK[])", fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}\r\n%s)\r\n", len(msg), strings.ReplaceAll(msg, "\x00", "\x80"))},
		{"FETCH 1 (BODY.PEEK[TEXT])", "* 1 FETCH (UID 1 BODY[TEXT] {10}\r\nab\x80cd\x80ef\r\n)\r\n"},
		{"FETCH 1 (BINARY.PEEK[1])", "* 1 FETCH (UID 1 BINARY[1] ~{10}\r\n" + body + ")\r\n"},
		{"FETCH 1:2 (BINARY.PEEK[1]<0.7>)", "* 1 FETCH (UID 1 BINARY[1]<0> ~{7}\r\nab\x00cd\x00e)\r\n* 2 FETCH (UID 2 BINARY[1]<0> ~{7}\r\nab\x00cd\x00e)\r\n"},
	} {
		if got := r.cmdBytes("d", c.command); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.command, got, c.want)
		}
	}
	got := r.cmdBytes("h", "FETCH 1 (BINARY.PEEK[1]<2.3> BINARY.PEEK[] UID)")
	if !strings.Contains(got, "BINARY[1]<2> ~{3}\r\n\x00cd") || !strings.Contains(got, fmt.Sprintf("BINARY[] ~{%d}\r\n", len(msg))) {
		t.Errorf("two BINARY sections: %q", got)
	}
}

// TestRecursiveMatch: CHILDINFO only for a parent whose subscribed
// descendant is not listed too (RFC 5258 section 3.5), a gone
// subscription counting; LSUB shows a gone subscribed name as Dovecot
// does, without \Noselect.
func TestRecursiveMatch(t *testing.T) {
	env := newEnv(t, 0)
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "CREATE x/y/z")
	r.cmd("c", "UNSUBSCRIBE x")
	r.cmd("d", "UNSUBSCRIBE x/y")
	if got := r.cmd("e", `LIST (SUBSCRIBED RECURSIVEMATCH) "" "x*"`); !slices.Equal(got, []string{`* LIST (\Subscribed) "/" "x/y/z"`}) {
		t.Errorf("RECURSIVEMATCH x*: %q", got)
	}
	if got := r.cmd("f", `LIST (SUBSCRIBED RECURSIVEMATCH) "" "x/%"`); !slices.Equal(got, []string{`* LIST () "/" "x/y" (CHILDINFO ("SUBSCRIBED"))`}) {
		t.Errorf("RECURSIVEMATCH x/%%: %q", got)
	}
	r.cmd("g", "DELETE x/y/z")
	if got := r.cmd("h", `LIST (SUBSCRIBED RECURSIVEMATCH) "" "x"`); !slices.Equal(got, []string{`* LIST () "/" "x" (CHILDINFO ("SUBSCRIBED"))`}) {
		t.Errorf("RECURSIVEMATCH x after DELETE: %q", got)
	}
	if got := r.cmd("i", `LSUB "" "x*"`); !slices.Equal(got, []string{`* LSUB () "/" "x/y/z"`}) {
		t.Errorf("LSUB x* after DELETE: %q", got)
	}
}
