package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/testenv"
)

// imapMsg is what an IMAP client sees of a message.
type imapMsg struct {
	UID   uint32
	Flags string
	Date  time.Time
	Body  []byte
}

// imapBox is what an IMAP client sees of a mailbox.
type imapBox struct {
	UIDValidity uint32
	Msgs        []imapMsg
}

// readAccount reads every selectable mailbox of an IMAP account: UIDs,
// flags (without \Recent), INTERNALDATE and bytes of each message.
func readAccount(t *testing.T, c *imapclient.Client) map[string]imapBox {
	t.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]imapBox{}
	sec := &goimap.FetchItemBodySection{Peek: true}
	for _, l := range list {
		if slices.Contains(l.Attrs, goimap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, goimap.MailboxAttrNonExistent) {
			continue
		}
		sel, err := c.Select(l.Mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("EXAMINE %q: %v", l.Mailbox, err)
		}
		box := imapBox{UIDValidity: sel.UIDValidity}
		if sel.NumMessages > 0 {
			bufs, err := c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{
				UID: true, Flags: true, InternalDate: true, BodySection: []*goimap.FetchItemBodySection{sec}}).Collect()
			if err != nil {
				t.Fatalf("FETCH %q: %v", l.Mailbox, err)
			}
			for _, b := range bufs {
				var fl []string
				for _, f := range b.Flags {
					if !strings.EqualFold(string(f), `\Recent`) {
						fl = append(fl, string(f))
					}
				}
				sort.Strings(fl)
				box.Msgs = append(box.Msgs, imapMsg{UID: uint32(b.UID), Flags: strings.Join(fl, " "), Date: b.InternalDate.UTC(), Body: b.FindBodySection(sec)})
			}
			sort.Slice(box.Msgs, func(i, j int) bool { return box.Msgs[i].UID < box.Msgs[j].UID })
		}
		out[l.Mailbox] = box
	}
	return out
}

// exportLab is a running lab whose alice has mail in several folders.
type exportLab struct {
	bin, dir  string
	imapsPort int
	tls       *tls.Config
}

func (l *exportLab) login(t *testing.T, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", l.imapsPort), &imapclient.Options{TLSConfig: l.tls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// exportMessages are appended to alice's mailboxes by startExportLab.
var exportMessages = []struct {
	mailbox string
	flags   []goimap.Flag
	body    string
}{
	{"INBOX", []goimap.Flag{goimap.FlagSeen, goimap.FlagAnswered, "$Label1"}, "From: a@example.net\r\nSubject: first\r\n\r\nHello\r\nFrom the start of a line\r\n>From quoted\r\n"},
	{"INBOX", nil, "From: b@example.net\r\nSubject: unread\r\nMessage-ID: <u@example.net>\r\n\r\nnot seen yet\r\n"},
	{"INBOX", []goimap.Flag{goimap.FlagFlagged, goimap.FlagDeleted, "work", "$Forwarded"}, "Subject: flagged\r\n\r\nbody\r\n\r\n"},
	{"Sent", []goimap.Flag{goimap.FlagSeen}, "From: alice@example.test\r\nTo: x@example.net\r\nSubject: sent\r\n\r\nsent body\r\n"},
	{"Drafts", []goimap.Flag{goimap.FlagDraft}, "Subject: draft\r\n\r\nunfinished\r\n"},
	{"Work/Project", []goimap.Flag{goimap.FlagSeen, "work"}, "Subject: project 1\r\n\r\nééé\r\n"},
	{"Work/Project", nil, "Subject: project 2\r\n\r\n" + strings.Repeat("a long body line\r\n", 5000)},
	{"Déjà vu.old", []goimap.Flag{goimap.FlagSeen}, "Subject: accents\r\n\r\nx\r\n"},
}

// startExportLab applies a lab on free ports and fills alice's mailboxes
// over IMAP.
func startExportLab(t *testing.T) *exportLab {
	t.Helper()
	bin := buildBinary(t)
	dir := labOnFreePorts(t)
	src, _ := os.ReadFile(filepath.Join(dir, "mail.hcl"))
	m := regexp.MustCompile(`imaps\s*=\s*(\d+)`).FindSubmatch(src)
	if m == nil {
		t.Fatalf("no imaps port in mail.hcl")
	}
	port, _ := strconv.Atoi(string(m[1]))
	// carol and dave (64 KiB quota), with bob's password, receive imports.
	hash := regexp.MustCompile(`(?s)user "bob@example.test" \{.*?password_hash = "([^"]+)"`).FindSubmatch(src)
	if hash == nil {
		t.Fatalf("no password hash of bob in mail.hcl")
	}
	for _, u := range []string{"carol", "dave"} {
		quota := ""
		if u == "dave" {
			quota = "  quota = \"64KiB\"\n"
		}
		src = append(src, fmt.Sprintf("\nuser %q {\n  password_hash = %q\n%s}\n", u+"@example.test", hash[1], quota)...)
	}
	writeFile(t, filepath.Join(dir, "mail.hcl"), string(src), 0o644)
	t.Cleanup(func() { mailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve") })
	if out, code := mailctl(t, bin, "-chdir", dir, "apply", "-auto-approve", "-verify=false"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	l := &exportLab{bin: bin, dir: dir, imapsPort: port, tls: &tls.Config{InsecureSkipVerify: true}}
	c := l.login(t, "alice@example.test", "lab-alice-password")
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, em := range exportMessages {
		if em.mailbox != "INBOX" {
			if err := c.Create(em.mailbox, nil).Wait(); err != nil && !strings.Contains(err.Error(), "ALREADYEXISTS") {
				t.Fatalf("create %q: %v", em.mailbox, err)
			}
		}
		cmd := c.Append(em.mailbox, int64(len(em.body)), &goimap.AppendOptions{Flags: em.flags, Time: date.Add(time.Duration(i) * time.Hour)})
		cmd.Write([]byte(em.body))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("append to %q: %v", em.mailbox, err)
		}
	}
	return l
}

// TestExportMaildirDovecot exports alice's mail from a running lab as a
// Maildir, has a real Dovecot serve it, and checks that an IMAP client
// sees there what it sees on the lab: the same folders, UIDVALIDITY,
// UIDs, bytes, flags, keywords and dates. The mbox export is read by
// Python's mailbox module (the flags from Status and X-Status).
func TestExportMaildirDovecot(t *testing.T) {
	l := startExportLab(t)
	lab := l.login(t, "alice@example.test", "lab-alice-password")
	if err := lab.Unsubscribe("Drafts").Wait(); err != nil {
		t.Fatal(err)
	}
	want := readAccount(t, lab)
	wantSubs := subscribed(t, lab)
	if len(wantSubs) < 5 || slices.Contains(wantSubs, "Drafts") {
		t.Fatalf("the lab's subscribed folders: %q", wantSubs)
	}
	if len(want["Work/Project"].Msgs) != 2 || len(want["INBOX"].Msgs) != 3 {
		t.Fatalf("the lab's mailboxes: %v", want)
	}

	out := filepath.Join(t.TempDir(), "alice-maildir")
	res, code := mailctl(t, l.bin, "-chdir", l.dir, "export", "-user", "alice@example.test", "-format", "maildir", "-out", out)
	if code != 0 || !strings.Contains(res, "Exported 8 messages in ") || !strings.Contains(res, "alice@example.test to "+out+" (maildir)") {
		t.Fatalf("export = %d:\n%s", code, res)
	}
	if res, code := mailctl(t, l.bin, "-chdir", l.dir, "export", "-user", "alice@example.test", "-format", "maildir", "-out", out); code != 1 || !strings.Contains(res, "is not empty") {
		t.Errorf("export into a non-empty directory = %d:\n%s", code, res)
	}

	dc := testenv.StartDovecotWith(t, testenv.DovecotOptions{Users: []testenv.DovecotUser{{Name: "alice", Password: "pw"}}, MailLocation: "maildir:~/Maildir",
		// The escapes of "." in folder names (mailfmt.MaildirFolderDir).
		Extra: "mail_plugins = $mail_plugins listescape\n"})
	md := filepath.Join(dc.Home("alice"), "Maildir")
	if err := os.RemoveAll(md); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("cp", "-a", out, md).Run(); err != nil {
		t.Fatal(err)
	}
	dc.Own(t, dc.Home("alice"))
	c, err := imapclient.DialInsecure(dc.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	got := readAccount(t, c)
	compareAccounts(t, "Dovecot serving the export", got, want, true)
	if g := subscribed(t, c); !slices.Equal(g, wantSubs) {
		t.Errorf("Dovecot's subscribed folders %q, want the lab's %q", g, wantSubs)
	}

	// mbox: one file per folder, read by Python's mailbox module.
	mb := filepath.Join(t.TempDir(), "alice-mbox")
	res, code = mailctl(t, l.bin, "-chdir", l.dir, "export", "-user", "alice@example.test", "-format", "mbox", "-out", mb)
	if code != 0 || !strings.Contains(res, "Exported 8 messages in ") {
		t.Fatalf("export -format mbox = %d:\n%s", code, res)
	}
	// One python3 for every file: its start takes seconds here.
	py := `
import mailbox, sys
for f in sys.argv[1:]:
    print("==", f)
    for m in mailbox.mbox(f, create=False):
        print(repr(m["Subject"]), "".join(sorted(m.get_flags())), len(m.get_payload()))
`
	names := keys(want)
	args := []string{"-c", py}
	for _, name := range names {
		args = append(args, mboxPath(mb, name))
	}
	b, err := exec.Command("python3", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 mailbox: %v\n%s", err, b)
	}
	read := map[string][]string{}
	var file string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f, ok := strings.CutPrefix(line, "== "); ok {
			file = f
			read[file] = []string{}
			continue
		}
		read[file] = append(read[file], line)
	}
	for _, name := range names {
		box, file := want[name], mboxPath(mb, name)
		lines, ok := read[file]
		if !ok || len(lines) != len(box.Msgs) {
			t.Errorf("%s: python reads %d messages, want %d:\n%s", file, len(lines), len(box.Msgs), b)
			continue
		}
		for i, m := range box.Msgs {
			subject := regexp.MustCompile(`Subject: (.*)\r\n`).FindSubmatch(m.Body)
			// Python's mbox flags: R seen, O old, A answered, F flagged,
			// T draft, D deleted.
			flags := "O"
			for _, p := range []struct{ flag, c string }{{`\Seen`, "R"}, {`\Answered`, "A"}, {`\Flagged`, "F"}, {`\Draft`, "T"}, {`\Deleted`, "D"}} {
				if strings.Contains(m.Flags, p.flag) {
					flags += p.c
				}
			}
			fl := []byte(flags)
			slices.Sort(fl)
			if !strings.HasPrefix(lines[i], fmt.Sprintf("'%s' %s ", subject[1], fl)) {
				t.Errorf("%s message %d: python reads %q, want subject %q flags %s", file, i+1, lines[i], subject[1], fl)
			}
		}
	}
}

// subscribed lists the subscribed mailboxes of an IMAP account.
func subscribed(t *testing.T, c *imapclient.Client) []string {
	t.Helper()
	list, err := c.List("", "*", &goimap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	sort.Strings(names)
	return names
}

// compareAccounts checks that got holds the mailboxes of want with the
// same messages (UIDs too when sameUIDs).
func compareAccounts(t *testing.T, what string, got, want map[string]imapBox, sameUIDs bool) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: no mailbox %q (has %v)", what, name, keys(got))
			continue
		}
		if sameUIDs && g.UIDValidity != w.UIDValidity {
			t.Errorf("%s: %q UIDVALIDITY %d, want %d", what, name, g.UIDValidity, w.UIDValidity)
		}
		if len(g.Msgs) != len(w.Msgs) {
			t.Errorf("%s: %q has %d messages, want %d", what, name, len(g.Msgs), len(w.Msgs))
			continue
		}
		for i := range w.Msgs {
			gm, wm := g.Msgs[i], w.Msgs[i]
			if sameUIDs && gm.UID != wm.UID {
				t.Errorf("%s: %q message %d has UID %d, want %d", what, name, i+1, gm.UID, wm.UID)
			}
			if !bytes.Equal(gm.Body, wm.Body) {
				t.Errorf("%s: %q message %d bytes differ:\n got %.200q\nwant %.200q", what, name, i+1, gm.Body, wm.Body)
			}
			if gm.Flags != wm.Flags {
				t.Errorf("%s: %q message %d flags %q, want %q", what, name, i+1, gm.Flags, wm.Flags)
			}
			if !gm.Date.Equal(wm.Date) {
				t.Errorf("%s: %q message %d date %v, want %v", what, name, i+1, gm.Date, wm.Date)
			}
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected mailbox %q", what, name)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
