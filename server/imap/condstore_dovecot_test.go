package imap_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lineSession is an IMAP session that answers one command at a time.
type lineSession interface {
	cmdTagged(tag, command string) ([]string, string)
}

// dovecotSession is Dovecot's imap binary, preauthenticated, on a new
// Maildir, driven one command at a time (given a whole script, Dovecot
// runs some commands side by side). Skips the test when Dovecot cannot
// run here.
type dovecotSession struct {
	t  *testing.T
	w  io.Writer
	br *bufio.Reader
}

func startDovecot(t *testing.T) *dovecotSession {
	t.Helper()
	// Not t.TempDir: its parent is not open to the user Dovecot runs as.
	dir, err := os.MkdirTemp("", "dovecot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return startDovecotIn(t, dir, true)
}

// startDovecotIn starts a session on the Maildir of dir, made by the
// first session (create).
func startDovecotIn(t *testing.T, dir string, create bool) *dovecotSession {
	t.Helper()
	args := dovecotCommand(t, dir, create)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Skipf("Dovecot's imap does not run here: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
		cancel()
	})
	d := &dovecotSession{t: t, w: stdin, br: bufio.NewReader(stdout)}
	if l, err := d.br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* PREAUTH") {
		t.Skipf("Dovecot's imap does not run here: %q, %v", l, err)
	}
	return d
}

func (d *dovecotSession) cmdTagged(tag, command string) ([]string, string) {
	d.t.Helper()
	if _, err := fmt.Fprintf(d.w, "%s %s\r\n", tag, command); err != nil {
		d.t.Fatal(err)
	}
	var out []string
	for {
		l, err := d.br.ReadString('\n')
		if err != nil {
			d.t.Fatalf("Dovecot: %v", err)
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, tag+" ") {
			return out, l
		}
		out = append(out, l)
	}
}

var (
	fetchLineRE = regexp.MustCompile(`^\* (\d+) FETCH \((.*)\)$`)
	codeRE      = regexp.MustCompile(`^\S+ (OK|NO|BAD) (\[(?:MODIFIED|HIGHESTMODSEQ) [^]]*\])?`)
)

// fetchItems splits "K V K (V V) ..." into sorted "K=V", without UID (the
// library writes it in every FETCH response, Dovecot only where asked or
// unsolicited), flags sorted.
func fetchItems(s string) []string {
	var toks []string
	depth, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || (s[i] == ' ' && depth == 0) {
			if i > start {
				toks = append(toks, s[start:i])
			}
			start = i + 1
			continue
		}
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		}
	}
	var out []string
	for i := 0; i+1 < len(toks); i += 2 {
		k, v := toks[i], toks[i+1]
		if k == "UID" {
			continue
		}
		if k == "FLAGS" {
			f := strings.Fields(strings.Trim(v, "()"))
			slices.Sort(f)
			v = "(" + strings.Join(f, " ") + ")"
		}
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// condAnswer is the CONDSTORE part of a command's answer, comparable
// between servers: HIGHESTMODSEQ, VANISHED, FETCH items (sorted), SEARCH,
// STATUS, ENABLED, and the tagged status with [MODIFIED].
func condAnswer(untagged []string, tagged string) []string {
	var out []string
	for _, l := range untagged {
		switch {
		case fetchLineRE.MatchString(l):
			m := fetchLineRE.FindStringSubmatch(l)
			out = append(out, "FETCH "+m[1]+" "+strings.Join(fetchItems(m[2]), " "))
		case strings.Contains(l, "[HIGHESTMODSEQ "):
			out = append(out, l[:strings.IndexByte(l, ']')+1])
		case strings.HasPrefix(l, "* VANISHED"), strings.HasPrefix(l, "* SEARCH"), strings.HasPrefix(l, "* STATUS"), strings.HasPrefix(l, "* ENABLED"):
			out = append(out, l)
		}
	}
	m := codeRE.FindStringSubmatch(tagged)
	if m == nil {
		return append(out, "tagged "+tagged)
	}
	return append(out, strings.TrimSpace("tagged "+m[1]+" "+m[2]))
}

// condScript runs the same CONDSTORE and QRESYNC commands on a session
// and returns their answers (condAnswer), one entry per command.
func condScript(t *testing.T, s lineSession) [][]string {
	msg := "From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n"
	var answers [][]string
	var uidValidity, first uint64
	run := func(tag, command string) []string {
		got, tagged := s.cmdTagged(tag, command)
		for _, l := range got {
			if m := regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`).FindStringSubmatch(l); m != nil {
				uidValidity, _ = strconv.ParseUint(m[1], 10, 32)
			}
		}
		a := condAnswer(got, tagged)
		answers = append(answers, append([]string{command}, a...))
		return a
	}
	run("e", "ENABLE QRESYNC")
	for i := 0; i < 5; i++ {
		s.cmdTagged("a", fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	}
	for _, l := range run("s", "SELECT INBOX") {
		if strings.HasPrefix(l, "* OK [HIGHESTMODSEQ ") {
			first, _ = strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "* OK [HIGHESTMODSEQ "), "]"), 10, 64)
		}
	}
	if uidValidity == 0 || first == 0 {
		t.Fatalf("SELECT: no UIDVALIDITY or HIGHESTMODSEQ (%d, %d)", uidValidity, first)
	}
	run("f", "FETCH 1:* (FLAGS MODSEQ)")
	run("t", `STORE 2,4 +FLAGS (\Seen)`)
	run("t", `STORE 5 +FLAGS.SILENT (\Answered)`)
	run("u", `STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\Flagged)`)
	run("u", fmt.Sprintf(`UID STORE 1,2 (UNCHANGEDSINCE %d) +FLAGS (\Draft)`, first))
	run("d", `STORE 3 +FLAGS.SILENT (\Deleted)`)
	run("x", "EXPUNGE")
	run("g", fmt.Sprintf("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", first))
	run("v", fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", first))
	run("h", fmt.Sprintf("SEARCH MODSEQ %d", first+1))
	run("h", "UID SEARCH MODSEQ 1 SEEN")
	run("i", "STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
	run("q", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5))", uidValidity, first))
	run("q", fmt.Sprintf("EXAMINE INBOX (QRESYNC (%d %d 2:4))", uidValidity, first+1))
	run("k", "FETCH 2 (MODSEQ)")
	run("k", "FETCH 2 MODSEQ")
	run("k", "ENABLE CONDSTORE")
	run("h", fmt.Sprintf("SEARCH RETURN (COUNT MAX) MODSEQ %d", first))
	run("q", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", uidValidity, first))
	run("q", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5 (1:3 1:3)))", uidValidity, first))
	run("q", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:*))", uidValidity+1, first))
	run("q", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:*))", uidValidity, first))
	run("q", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", uidValidity+1, first))
	return answers
}

// TestCondStoreAsDovecot: the same CONDSTORE and QRESYNC commands (RFC
// 7162: SELECT HIGHESTMODSEQ, FETCH MODSEQ and CHANGEDSINCE, STORE
// .SILENT and UNCHANGEDSINCE with [MODIFIED], VANISHED, UID FETCH
// (CHANGEDSINCE VANISHED), SEARCH MODSEQ, STATUS HIGHESTMODSEQ, SELECT
// and EXAMINE (QRESYNC)) answer as Dovecot 2.3's imap does, mod-sequences
// included, once UID items (which the library writes in every FETCH) are
// set aside.
func TestCondStoreAsDovecot(t *testing.T) {
	want := condScript(t, startDovecot(t))
	env := newEnv(t, 0)
	got := condScript(t, loginRaw(t, env))
	compareAnswers(t, got, want)
}

// condScript2 runs commands of two sessions on one mailbox: a QRESYNC
// client (a) while another (b) expunges and flags, and returns a's
// answers.
func condScript2(t *testing.T, a, b lineSession) [][]string {
	msg := "From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n"
	var answers [][]string
	var uidValidity, first uint64
	run := func(s lineSession, tag, command string) []string {
		got, tagged := s.cmdTagged(tag, command)
		for _, l := range got {
			if m := regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`).FindStringSubmatch(l); m != nil {
				uidValidity, _ = strconv.ParseUint(m[1], 10, 32)
			}
		}
		ans := condAnswer(got, tagged)
		if s == a {
			answers = append(answers, append([]string{command}, ans...))
		}
		return ans
	}
	for i := 0; i < 6; i++ {
		b.cmdTagged("a", fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	}
	run(b, "s", "SELECT INBOX")
	run(a, "e", "ENABLE QRESYNC")
	for _, l := range run(a, "s", "SELECT INBOX") {
		if strings.HasPrefix(l, "* OK [HIGHESTMODSEQ ") {
			first, _ = strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "* OK [HIGHESTMODSEQ "), "]"), 10, 64)
		}
	}
	run(b, "d", `STORE 2,5 +FLAGS (\Deleted)`)
	run(b, "x", "EXPUNGE")
	run(b, "f", `STORE 2 +FLAGS (\Flagged)`)
	// (Not compared: a FETCH while expunges wait. Dovecot then sends
	// the flags of the expunged messages too, mailctl does not; both
	// send the expunges at the next NOOP.)
	a.cmdTagged("f", "FETCH 1,3 (FLAGS)")
	run(a, "n", "NOOP")
	run(b, "f", `STORE 1 +FLAGS (\Seen)`)
	run(a, "t", `STORE 1 +FLAGS (\Answered)`)
	run(a, "n", "NOOP")
	run(b, "f", `STORE 3 (UNCHANGEDSINCE 99) -FLAGS (\Flagged)`)
	run(a, "u", fmt.Sprintf(`UID STORE 1:* (UNCHANGEDSINCE %d) +FLAGS (\Draft)`, first))
	run(a, "n", "NOOP")
	run(a, "q", fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", uidValidity, first))
	return answers
}

// TestCondStoreTwoSessionsAsDovecot: what a QRESYNC session is told of
// another session's expunges and flag changes (VANISHED, FETCH with
// MODSEQ, [MODIFIED]) is what Dovecot 2.3 tells it.
func TestCondStoreTwoSessionsAsDovecot(t *testing.T) {
	dir, err := os.MkdirTemp("", "dovecot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	da := startDovecotIn(t, dir, true)
	db := startDovecotIn(t, dir, false)
	want := condScript2(t, da, db)
	env := newEnv(t, 0)
	got := condScript2(t, loginRaw(t, env), loginRaw(t, env))
	compareAnswers(t, got, want)
}

// compareAnswers compares the answers of mailctl and Dovecot command by
// command (the commands themselves differ in UIDVALIDITY).
func compareAnswers(t *testing.T, got, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d answers, Dovecot %d", len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i][1:], want[i][1:]) {
			t.Errorf("%s:\n got %q\nwant %q (Dovecot)", got[i][0], got[i][1:], want[i][1:])
		}
	}
}
