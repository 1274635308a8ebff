package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/mailfmt"
	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/remote"
)

// TestImportExported exports alice's mail from a lab and imports it for
// other users: the Maildir for bob, the mbox files for carol. Each then
// sees alice's folders with the same bytes, flags, keywords and dates, in
// the same UID order; a second import copies nothing.
func TestImportExported(t *testing.T) {
	l := startExportLab(t)
	lab := l.login(t, "alice@example.test", "lab-alice-password")
	if err := lab.Unsubscribe("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	want, wantSubs := readAccount(t, lab), subscribed(t, lab)
	tmp := t.TempDir()
	md, mb := filepath.Join(tmp, "maildir"), filepath.Join(tmp, "mbox")
	for _, c := range [][]string{{"maildir", md}, {"mbox", mb}} {
		if out, code := mailctl(t, l.bin, "-chdir", l.dir, "export", "-user", "alice@example.test", "-format", c[0], "-out", c[1]); code != 0 {
			t.Fatalf("export -format %s = %d:\n%s", c[0], code, out)
		}
	}
	for _, c := range []struct{ user, src string }{{"bob", md}, {"carol", mb}} {
		addr := c.user + "@example.test"
		out, code := mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", addr, c.src)
		if code != 0 || !strings.Contains(out, "Imported 8 messages (") || !strings.Contains(out, "0 already there") || !strings.Contains(out, "  Work/Project: 2\n") {
			t.Fatalf("import of %s for %s = %d:\n%s", c.src, addr, code, out)
		}
		cl := l.login(t, addr, "lab-bob-password")
		got := readAccount(t, cl)
		compareAccounts(t, "import of "+filepath.Base(c.src)+" for "+addr, got, want, false)
		// The Maildir keeps the subscriptions; mbox files have none.
		if subs := subscribed(t, cl); c.user == "bob" && !slices.Equal(subs, wantSubs) || c.user == "carol" && !slices.Contains(subs, "Work") {
			t.Errorf("%s's subscribed folders %q (alice's: %q)", addr, subs, wantSubs)
		}

		out, code = mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", addr, c.src)
		if code != 0 || !strings.Contains(out, "Imported 0 messages (0 B) into the mailboxes of "+addr+", 8 already there") {
			t.Errorf("second import of %s for %s = %d, want nothing copied:\n%s", c.src, addr, code, out)
		}
		again := readAccount(t, l.login(t, addr, "lab-bob-password"))
		compareAccounts(t, "second import for "+addr, again, got, true)
	}

	// A target set up again from nothing: the state's UIDVALIDITYs no
	// longer match, and everything is copied again.
	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "destroy", "-auto-approve", "-purge-data"); code != 0 {
		t.Fatalf("destroy -purge-data = %d:\n%s", code, out)
	}
	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "apply", "-auto-approve", "-verify=false"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(l.dir, ".mailctl", "import", "bob@example.test.db")); err != nil {
		t.Fatalf("the import state did not outlive destroy: %v", err)
	}
	out, code := mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "bob@example.test", md)
	if code != 0 || !strings.Contains(out, "Imported 8 messages (") {
		t.Errorf("import into the wiped target = %d, want 8 copied again:\n%s", code, out)
	}
	compareAccounts(t, "import into the wiped target", readAccount(t, l.login(t, "bob@example.test", "lab-bob-password")), want, false)

	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "nobody@example.test", md); code != 1 || !strings.Contains(out, `no user "nobody@example.test" in the configuration`) {
		t.Errorf("import for an unknown user = %d:\n%s", code, out)
	}
	notMbox := filepath.Join(tmp, "notes.txt")
	writeFile(t, notMbox, "Subject: not an mbox\n\nhello\n", 0o644)
	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "bob@example.test", notMbox); code != 1 || !strings.Contains(out, "not an mbox file") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		t.Errorf("import of a text file = %d, want a one-line error:\n%s", code, out)
	}
}

// TestImportTakeout imports a Google Takeout mbox: the X-Gmail-Labels of
// each message choose its one folder as migrate maps Gmail's labels, and
// Unread and Starred its flags.
func TestImportTakeout(t *testing.T) {
	l := startExportLab(t)
	type tm struct{ labels, subject, folder, flags string }
	msgs := []tm{
		{"Inbox,Important,Opened,Category Updates", "in inbox", "INBOX", `\Seen`},
		{"Sent,Opened", "sent one", "Sent", `\Seen`},
		{"Work/Project,Unread,Starred", "labelled", "Work/Project", `\Flagged`},
		{"Archived,Opened", "archived", "Archive", `\Seen`},
		{"Opened,Category Promotions", "no folder label", "Archive", `\Seen`},
		{"Spam,Unread", "spam", "Junk", ""},
		{"Trash,Opened", "trash", "Trash", `\Seen`},
		{"Work/Project,Inbox,Opened", "two labels", "INBOX", `\Seen`},
		{`"Clients, 2026",Opened`, "comma label", "Clients, 2026", `\Seen`},
		{"Drafts,Opened", "a draft", "Drafts", `\Draft \Seen`},
	}
	var b bytes.Buffer
	for i, m := range msgs {
		fmt.Fprintf(&b, "From 17890123456789%05d@xxx Sat Jan 03 10:%02d:30 +0000 2026\n", i, i)
		fmt.Fprintf(&b, "X-GM-THRID: 17890123456789%05d\nX-Gmail-Labels: %s\n", i, m.labels)
		fmt.Fprintf(&b, "From: someone@example.net\nSubject: %s\nMessage-ID: <%d@example.net>\n\nbody %d\nFrom here on\n\n", m.subject, i, i)
	}
	file := filepath.Join(t.TempDir(), "All mail Including Spam and Trash.mbox")
	writeFile(t, file, b.String(), 0o644)
	out, code := mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "dave@example.test", file)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("Imported %d messages", len(msgs))) {
		t.Fatalf("import = %d:\n%s", code, out)
	}
	got := readAccount(t, l.login(t, "dave@example.test", "lab-bob-password"))
	if _, ok := got["All mail Including Spam and Trash"]; ok {
		t.Errorf("the file's name became a folder")
	}
	for i, m := range msgs {
		box := got[m.folder]
		found := 0
		for _, g := range box.Msgs {
			if bytes.Contains(g.Body, []byte("Subject: "+m.subject+"\r\n")) {
				found++
				if g.Flags != m.flags {
					t.Errorf("%q in %s: flags %q, want %q", m.subject, m.folder, g.Flags, m.flags)
				}
				if want := time.Date(2026, 1, 3, 10, i, 30, 0, time.UTC); !g.Date.Equal(want) {
					t.Errorf("%q: date %v, want %v", m.subject, g.Date, want)
				}
				if !bytes.HasSuffix(g.Body, []byte(fmt.Sprintf("\r\n\r\nbody %d\r\nFrom here on\r\n", i))) {
					t.Errorf("%q: body %q", m.subject, g.Body)
				}
			}
		}
		if found != 1 {
			t.Errorf("%q is %d times in %q, want once (folders: %v)", m.subject, found, m.folder, keys(got))
		}
	}
	total := 0
	for _, box := range got {
		total += len(box.Msgs)
	}
	if total != len(msgs) {
		t.Errorf("dave has %d messages, want %d (each once)", total, len(msgs))
	}

	// Over dave's 64 KiB quota: a one-line error, exit 1, and what was
	// appended before is recorded (a second run does not append it again).
	b.Reset()
	for i := range 100 {
		fmt.Fprintf(&b, "From x@example.net Sat Jan  3 10:20:30 2026\nSubject: filler %d\n\n%s\n\n", i, strings.Repeat("y", 2000))
	}
	big := filepath.Join(t.TempDir(), "filler.mbox")
	writeFile(t, big, b.String(), 0o644)
	out, code = mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "dave@example.test", big)
	first := regexp.MustCompile(`Imported (\d+) messages`).FindStringSubmatch(out)
	if code != 1 || first == nil || first[1] == "0" || !strings.Contains(out, "Error: import of "+big+" stopped: ") || !strings.Contains(out, "dave@example.test is over quota") {
		t.Fatalf("import over quota = %d, want 1, some imported and an over quota error:\n%s", code, out)
	}
	out, code = mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "dave@example.test", big)
	if code != 1 || !strings.Contains(out, "Imported 0 messages (0 B) into the mailboxes of dave@example.test, "+first[1]+" already there") {
		t.Errorf("second import over quota = %d, want %s already there:\n%s", code, first[1], out)
	}
}

// TestImportKilledResumes kills mailctl import (SIGKILL) while it appends
// a large mbox, then runs it again: every message is in the folder exactly
// once.
func TestImportKilledResumes(t *testing.T) {
	l := startExportLab(t)
	const n = 4000
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "From x@example.net Sat Jan  3 10:20:30 2026\nSubject: big %d\n\n%s\n\n", i, strings.Repeat("x", 2000))
	}
	file := filepath.Join(t.TempDir(), "big.mbox")
	writeFile(t, file, b.String(), 0o644)
	c := l.login(t, "bob@example.test", "lab-bob-password")
	count := func() int {
		st, err := c.Status("big", &goimap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			return 0
		}
		return int(*st.NumMessages)
	}
	cmd := exec.Command(l.bin, "-chdir", l.dir, "import", "-user", "bob@example.test", file)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for count() < 500 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	at := count()
	if at < 500 || at >= n {
		t.Fatalf("killed with %d of %d messages in the folder: not midway\n%s", at, n, out.String())
	}
	// The server side of the killed run sees its input end and stops.
	time.Sleep(500 * time.Millisecond)
	res, code := mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "bob@example.test", file)
	if code != 0 {
		t.Fatalf("import after the kill = %d:\n%s", code, res)
	}
	box := readAccount(t, c)["big"]
	seen := map[string]int{}
	for _, m := range box.Msgs {
		i := bytes.Index(m.Body, []byte("Subject: "))
		seen[string(m.Body[i:bytes.IndexByte(m.Body[i:], '\r')+i])]++
	}
	for i := range n {
		if k := fmt.Sprintf("Subject: big %d", i); seen[k] != 1 {
			t.Errorf("%q is %d times in the folder, want once", k, seen[k])
		}
	}
	if len(box.Msgs) != n {
		t.Errorf("the folder has %d messages, want %d (killed at %d)\n%s", len(box.Msgs), n, at, res)
	}
	t.Logf("killed at %d of %d; the second run: %s", at, n, strings.TrimSpace(res))
	if out, err := os.ReadFile(filepath.Join(l.dir, ".mailctl", "mailctl.log")); err == nil && bytes.Contains(out, []byte(`"level":"ERROR"`)) {
		t.Logf("server errors: %s", lastLines(string(out), 5))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestImportDovecotMaildir imports a Maildir that Dovecot itself wrote
// (messages saved with doveadm save, flags and keywords set with doveadm
// flags): the lab's user then sees what Dovecot's IMAP serves, folder by
// folder, in the same order, with the same bytes, flags and dates.
func TestImportDovecotMaildir(t *testing.T) {
	l := startExportLab(t)
	dc := testenv.StartDovecotWith(t, testenv.DovecotOptions{Users: []testenv.DovecotUser{{Name: "src", Password: "pw"}}, MailLocation: "maildir:~/Maildir"})
	conf := filepath.Join(dc.Dir, "dovecot.conf")
	doveadm := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command("doveadm", append([]string{"-c", conf}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("doveadm %v: %v\n%s", args, err, out)
		}
	}
	doveadm("", "mailbox", "create", "-u", "src", "Sent", "Lists/Go")
	for i, m := range []struct{ box, flags string }{
		{"INBOX", `\Seen $Label1`}, {"INBOX", ""}, {"INBOX", `\Answered \Flagged work`},
		{"Sent", `\Seen`}, {"Lists/Go", `\Seen \Deleted`}, {"Lists/Go", "$Forwarded"},
	} {
		msg := fmt.Sprintf("From: list%d@example.net\nTo: src@example.net\nSubject: dovecot %d\nDate: Sat, 3 Jan 2026 10:%02d:00 +0000\n\nbody %d\n", i, i, i, i)
		doveadm(msg, "save", "-u", "src", "-m", m.box)
		if m.flags != "" {
			doveadm("", "flags", "add", "-u", "src", m.flags, "mailbox", m.box, "subject", fmt.Sprintf("dovecot %d", i))
		}
	}
	c, err := imapclient.DialInsecure(dc.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("src", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	want := readAccount(t, c)
	if len(want["INBOX"].Msgs) != 3 || len(want["Lists/Go"].Msgs) != 2 {
		t.Fatalf("Dovecot's mailboxes: %v", keys(want))
	}
	out, code := mailctl(t, l.bin, "-chdir", l.dir, "import", "-user", "dave@example.test", filepath.Join(dc.Home("src"), "Maildir"))
	if code != 0 || !strings.Contains(out, "Imported 6 messages") {
		t.Fatalf("import = %d:\n%s", code, out)
	}
	got := readAccount(t, l.login(t, "dave@example.test", "lab-bob-password"))
	for name := range got {
		if _, ok := want[name]; !ok && len(got[name].Msgs) == 0 {
			delete(got, name) // the lab's own empty folders (Drafts, Junk...)
		}
	}
	compareAccounts(t, "import of Dovecot's Maildir", got, want, false)
	if t.Failed() {
		ls, _ := exec.Command("find", filepath.Join(dc.Home("src"), "Maildir")).CombinedOutput()
		t.Logf("%s", ls)
	}
}

// TestExportImportOverSSH runs the export and the import through a real
// sshd, as for a VPS: the server's own binary (the lab's, reached over
// SSH as root) streams alice's mail out and carol's in.
func TestExportImportOverSSH(t *testing.T) {
	l := startExportLab(t)
	want := readAccount(t, l.login(t, "alice@example.test", "lab-alice-password"))
	sshd := testenv.StartSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := remote.DialSSH(ctx, remote.SSHConfig{Address: sshd.Addr, Identity: sshd.ClientKeyFile, HostKey: sshd.HostKeyLine(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tr := &transfer{server: "ssh", pipe: conn, layout: remote.Lab{Dir: filepath.Join(l.dir, ".mailctl")}.Layout(), close: func() {}}
	e := &env{Stdout: io.Discard, Stderr: io.Discard}

	dir := filepath.Join(t.TempDir(), "maildir")
	w, err := mailfmt.NewMaildirWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, folders, _, err := tr.export(ctx, "alice@example.test", &maildirSink{w: w}, newProgress(e, "export"))
	if err == nil {
		err = w.Close()
	}
	if err != nil || n != len(exportMessages) || folders != len(want) {
		t.Fatalf("export over SSH: %d messages, %d folders, %v; want %d, %d", n, folders, err, len(exportMessages), len(want))
	}
	sources, err := importSources(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := openImportState(filepath.Join(t.TempDir(), "state.db"), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	im := &importer{tr: tr, user: "carol@example.test", state: st, sources: sources, prog: newProgress(e, "import"), folders: map[string]int{}, sizes: map[string]int64{}}
	if err := im.run(ctx); err != nil || im.copied != len(exportMessages) {
		t.Fatalf("import over SSH: %d copied, %v", im.copied, err)
	}
	compareAccounts(t, "export and import over SSH", readAccount(t, l.login(t, "carol@example.test", "lab-bob-password")), want, false)

	// A server whose release has no export says what to do.
	old := remote.Layout{Base: t.TempDir(), ConfigFile: "/nonexistent.json"}
	os.MkdirAll(filepath.Join(old.Base, "current"), 0o755)
	writeFile(t, filepath.Join(old.Base, "current", "mailctl"), "#!/bin/sh\necho 'Error: serve: unexpected argument \"export\"' >&2\nexit 1\n", 0o755)
	tr.layout = old
	_, _, _, err = tr.export(ctx, "alice@example.test", &maildirSink{w: w}, newProgress(e, "export"))
	if err == nil || !strings.Contains(err.Error(), "the server's release has no export and import (run mailctl apply") {
		t.Errorf("export from an old release: %v", err)
	}
}
