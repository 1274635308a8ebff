package imap_test

import (
	"context"
	"fmt"
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
