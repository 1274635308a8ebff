package mailfmt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var sample = []Message{
	{Flags: []string{FlagSeen, FlagAnswered, "$Label1"}, Date: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Body: []byte("Return-Path: <alice@example.org>\r\nFrom: alice@example.org\r\nSubject: one\r\n\r\nHello\r\nFrom the start of a line\r\n>From quoted\r\n\r\nFrom again after a blank line\r\n")},
	{Flags: nil, Date: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC),
		Body: []byte("From: bob@example.org\r\nStatus: RO\r\nSubject: two\r\n\r\n\r\n\r\n")},
	{Flags: []string{FlagFlagged, FlagDraft, FlagDeleted, FlagForwarded, "work", "later"}, Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		Body: []byte("Subject: three\r\n\r\nlast line without newline")},
}

func sameFlags(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestMboxRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewMboxWriter(&buf)
	for _, m := range sample {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"From alice@example.org Wed Mar  4 05:06:07 2026\n",
		"\n>From the start of a line\n>>From quoted\n\n>From again after a blank line\n",
		"From MAILER-DAEMON Wed Dec 31 23:59:59 2025\n",
		"Status: RO\nX-Status: A\nX-Keywords: $Label1\n\nHello\n",
		"Status: O\nX-Status: FTD\nX-Keywords: work later $Forwarded\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("mbox lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\r") {
		t.Errorf("mbox has CR line ends")
	}
	r := NewMboxReader(strings.NewReader(out))
	for i, want := range sample {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		wantBody := want.Body
		if i == 1 {
			// The Status field of the original is the flags' field.
			wantBody = []byte("From: bob@example.org\r\nSubject: two\r\n\r\n\r\n\r\n")
		}
		if i == 2 {
			wantBody = append(slices.Clone(wantBody), "\r\n"...)
		}
		if !bytes.Equal(got.Body, wantBody) {
			t.Errorf("message %d body\n got %q\nwant %q", i+1, got.Body, wantBody)
		}
		if !got.Date.Equal(want.Date) {
			t.Errorf("message %d date %v, want %v", i+1, got.Date, want.Date)
		}
		if !sameFlags(got.Flags, want.Flags) {
			t.Errorf("message %d flags %q, want %q", i+1, got.Flags, want.Flags)
		}
		if got.Key != string(rune('1'+i)) {
			t.Errorf("message %d key %q", i+1, got.Key)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last message: %v, want EOF", err)
	}
}

func TestMboxTakeout(t *testing.T) {
	// As Google Takeout writes them: a From_ line with a numeric sender
	// and a zone, X-Gmail-Labels, LF line ends.
	in := "From 1789012345678901234@xxx Sat Jan 03 10:20:30 +0000 2026\n" +
		"X-GM-THRID: 1789012345678901234\n" +
		"X-Gmail-Labels: Inbox,Important,Opened,\"Work, 2026\",Category Updates\n" +
		"From: a@example.org\nSubject: s\nDate: Sat, 3 Jan 2026 10:20:00 +0000\n\nbody\n>From here\n\n" +
		"From 1789012345678901235@xxx Sun Jan 04 10:20:30 +0000 2026\n" +
		"X-Gmail-Labels: Sent\nSubject: t\n\nbody 2\n"
	r := NewMboxReader(strings.NewReader(in))
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Inbox", "Important", "Opened", "Work, 2026", "Category Updates"}; !slices.Equal(m.Labels, want) {
		t.Errorf("labels %q, want %q", m.Labels, want)
	}
	if !m.Date.Equal(time.Date(2026, 1, 3, 10, 20, 30, 0, time.UTC)) {
		t.Errorf("date %v", m.Date)
	}
	if !bytes.HasSuffix(m.Body, []byte("\r\n\r\nbody\r\nFrom here\r\n")) || !bytes.Contains(m.Body, []byte("X-Gmail-Labels: ")) {
		t.Errorf("body %q", m.Body)
	}
	m, err = r.Next()
	if err != nil || !slices.Equal(m.Labels, []string{"Sent"}) || string(m.Body) != "X-Gmail-Labels: Sent\r\nSubject: t\r\n\r\nbody 2\r\n" {
		t.Errorf("second message %q %q %v", m.Labels, m.Body, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("end: %v", err)
	}
}

func TestMboxNotMbox(t *testing.T) {
	for _, in := range []string{"Subject: x\n\nbody\n", "\n\nhello"} {
		if _, err := NewMboxReader(strings.NewReader(in)).Next(); !errors.Is(err, ErrNotMbox) {
			t.Errorf("%q: %v, want ErrNotMbox", in, err)
		}
	}
	if _, err := NewMboxReader(strings.NewReader("")).Next(); err != io.EOF {
		t.Errorf("empty file: %v, want EOF", err)
	}
}

func FuzzMboxReader(f *testing.F) {
	f.Add([]byte("From a Mon Jan  1 00:00:00 2024\nSubject: x\nStatus: RO\n\n>From b\n\nFrom c Mon Jan  1 00:00:00 2024\n\n"))
	f.Add([]byte("From x\n"))
	f.Add([]byte("From 1@xxx Sat Jan 03 10:20:30 +0000 2026\nX-Gmail-Labels: \"a,b\",c\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewMboxReader(bytes.NewReader(in))
		var msgs []Message
		for i := 0; ; i++ {
			m, err := r.Next()
			if err != nil {
				break
			}
			if i > len(in) {
				t.Fatalf("more messages than bytes")
			}
			msgs = append(msgs, m)
		}
		// What was read writes back and reads again the same.
		var buf bytes.Buffer
		w := NewMboxWriter(&buf)
		for _, m := range msgs {
			if err := w.Write(m); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		r2 := NewMboxReader(&buf)
		for i, m := range msgs {
			got, err := r2.Next()
			if err != nil {
				t.Fatalf("reread message %d: %v", i+1, err)
			}
			if !sameFlags(dedupe(got.Flags), dedupe(m.Flags)) {
				t.Fatalf("message %d flags %q, then %q", i+1, m.Flags, got.Flags)
			}
		}
		if _, err := r2.Next(); err != io.EOF {
			t.Fatalf("reread: %d messages written, then %v", len(msgs), err)
		}
	})
}

func dedupe(f []string) []string {
	var out []string
	for _, x := range f {
		if !HasFlag(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func TestMaildirRoundTrip(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	w, err := NewMaildirWriter(root)
	if err != nil {
		t.Fatal(err)
	}
	folders := []string{"INBOX", "Work/Déjà vu", "a.b"}
	for fi, name := range folders {
		if err := w.Folder(name, 1000+uint32(fi), 0); err != nil {
			t.Fatal(err)
		}
		for i, m := range sample {
			if err := w.Add(m, uint32(10*i+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".Work.D&AOk-j&AOA- vu", "cur")); err != nil {
		t.Errorf("folder directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, `.a\2eb`, "cur")); err != nil {
		t.Errorf("folder directory: %v", err)
	}
	uidlist, _ := os.ReadFile(filepath.Join(root, "dovecot-uidlist"))
	if !strings.HasPrefix(string(uidlist), "3 V1000 N22\n1 :") {
		t.Errorf("dovecot-uidlist %q", uidlist)
	}
	kw, _ := os.ReadFile(filepath.Join(root, "dovecot-keywords"))
	if string(kw) != "0 $Label1\n1 work\n2 later\n3 $Forwarded\n" {
		t.Errorf("dovecot-keywords %q", kw)
	}
	got, err := MaildirFolders(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range got {
		names = append(names, f.Name)
	}
	if want := []string{"INBOX", "Work/Déjà vu", "a.b"}; !slices.Equal(names, want) {
		t.Fatalf("folders %q, want %q", names, want)
	}
	for _, f := range got {
		ents, err := ReadMaildir(f.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != len(sample) {
			t.Fatalf("%s: %d messages", f.Name, len(ents))
		}
		for i, e := range ents {
			m, err := e.Load()
			if err != nil {
				t.Fatal(err)
			}
			want := sample[i]
			if !bytes.Equal(m.Body, want.Body) || !m.Date.Equal(want.Date) || !sameFlags(m.Flags, want.Flags) {
				t.Errorf("%s message %d: %q %v %q, want %q %v %q", f.Name, i, m.Body, m.Date, m.Flags, want.Body, want.Date, want.Flags)
			}
			if !strings.Contains(e.Path, ",S=") {
				t.Errorf("file name %s", e.Path)
			}
		}
	}
	if _, err := NewMaildirWriter(root); err == nil {
		t.Error("a second export into the same directory was accepted")
	}
}

func TestMUTF7(t *testing.T) {
	for _, s := range []string{"plain", "Déjà vu", "a&b", "日本語", "😀 smile"} {
		e := encodeMUTF7(s)
		d, ok := decodeMUTF7(e)
		if !ok || d != s {
			t.Errorf("%q -> %q -> %q %v", s, e, d, ok)
		}
	}
	if e := encodeMUTF7("Entwürfe"); e != "Entw&APw-rfe" {
		t.Errorf("Entwürfe = %q", e)
	}
}

func TestStreamRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	w.Mailbox(Record{Mailbox: "INBOX", UIDValidity: 7, UIDNext: 3})
	for i, m := range sample {
		if err := w.Message(Record{Mailbox: "INBOX", UID: uint32(i + 1), Flags: m.Flags, Date: m.Date, Size: int64(len(m.Body))}, bytes.NewReader(m.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	r := NewStreamReader(bytes.NewReader(full))
	rec, _, err := r.Next()
	if err != nil || rec.Kind != KindMailbox || rec.UIDValidity != 7 {
		t.Fatalf("first record %+v %v", rec, err)
	}
	for i := range sample {
		rec, body, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		// Every other message is skipped unread: Next discards it.
		if i%2 == 1 {
			continue
		}
		b, _ := io.ReadAll(body)
		if !bytes.Equal(b, sample[i].Body) || rec.UID != uint32(i+1) {
			t.Errorf("message %d: %q", i, b)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	// A body cut short is an error to its reader, not a shorter message.
	cutBody := NewStreamReader(bytes.NewReader(full[:bytes.Index(full, []byte("Hello"))+3]))
	cutBody.Next()
	if _, body, err := cutBody.Next(); err != nil {
		t.Fatal(err)
	} else if b, err := io.ReadAll(body); err != io.ErrUnexpectedEOF {
		t.Errorf("a cut body reads %q, %v; want io.ErrUnexpectedEOF", b, err)
	}
	// Cut anywhere, the stream is reported truncated, never complete.
	for cut := 0; cut < len(full)-1; cut += 7 {
		r := NewStreamReader(bytes.NewReader(full[:cut]))
		var err error
		for err == nil {
			_, _, err = r.Next()
		}
		if err == io.EOF {
			t.Fatalf("stream cut at %d of %d read as complete", cut, len(full))
		}
	}
}

// TestMaildirFlagsInNew reads the flags of a file in new/, where Dovecot
// leaves a message whose flags changed before a client saw it.
func TestMaildirFlagsInNew(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.Mkdir(filepath.Join(dir, sub), 0o700)
	}
	os.WriteFile(filepath.Join(dir, "dovecot-keywords"), []byte("0 $Label1\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "new", "1796643749.M1P2.vm,S=3,W=4:2,Sa"), []byte("x\n\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "new", "1796643750.M1P2.vm,S=3,W=4"), []byte("y\n\n"), 0o600)
	ents, err := ReadMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 || !sameFlags(ents[0].Flags, []string{FlagSeen, "$Label1"}) || len(ents[1].Flags) != 0 {
		t.Fatalf("entries %+v", ents)
	}
}
