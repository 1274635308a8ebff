package imap_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/smtp"
)

const utf8Mail = "From: Δοκιμή <δοκιμή@παράδειγμα.δοκιμή>\r\n" +
	"To: Anna <anna@bücher.example>\r\n" +
	"Subject: Καλημέρα, ünïcödé\r\n" +
	"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@παράδειγμα.δοκιμή>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8; name=\"Grüße.txt\"\r\n" +
	"Content-Disposition: attachment; filename=\"Grüße.txt\"\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Γειά σου κόσμε.\r\n"

// TestUTF8Accept: once a client enables UTF8=ACCEPT (RFC 9755), mailbox
// names and the header fields in ENVELOPE and BODYSTRUCTURE are UTF-8 in
// quoted strings, neither modified UTF-7 nor RFC 2047 encoded words; a
// client that did not enable it gets those encodings, as before.
func TestUTF8Accept(t *testing.T) {
	env := newEnv(t, 0)
	if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(utf8Mail), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	joined := func(lines []string) string { return strings.Join(lines, "\n") }
	r := env.raw(t)
	r.cmd("a1", "LOGIN "+alice+" "+alicePW)
	if caps := joined(r.cmd("a2", "CAPABILITY")); !strings.Contains(caps, " UTF8=ACCEPT") {
		t.Fatalf("CAPABILITY lacks UTF8=ACCEPT: %s", caps)
	}
	if got := joined(r.cmd("a3", "ENABLE UTF8=ACCEPT")); got != "* ENABLED UTF8=ACCEPT" {
		t.Fatalf("ENABLE UTF8=ACCEPT -> %q", got)
	}
	r.cmd("a4", `CREATE "Entwürfe"`)
	if got := joined(r.cmd("a5", `LIST "" "Entw*"`)); got != `* LIST () "/" "Entwürfe"` {
		t.Errorf("LIST -> %q, want the UTF-8 name quoted", got)
	}
	r.cmd("a6", "SELECT INBOX")
	got := joined(r.cmd("a7", "FETCH 1 (ENVELOPE)"))
	for _, want := range []string{`"Καλημέρα, ünïcödé"`, `(("Δοκιμή" NIL "δοκιμή" "παράδειγμα.δοκιμή"))`, `(("Anna" NIL "anna" "bücher.example"))`, `"<1@παράδειγμα.δοκιμή>"`} {
		if !strings.Contains(got, want) {
			t.Errorf("ENVELOPE lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "=?utf-8?") || strings.Contains(got, "{") {
		t.Errorf("ENVELOPE has encoded words or literals:\n%s", got)
	}
	if got := joined(r.cmd("s1", `SEARCH SUBJECT "καλημέρα"`)); got != "* SEARCH 1" {
		t.Errorf("SEARCH SUBJECT with a UTF-8 quoted string -> %q, want * SEARCH 1", got)
	}
	if got := joined(r.cmd("s2", `SEARCH FROM "δοκιμή@παράδειγμα"`)); got != "* SEARCH 1" {
		t.Errorf("SEARCH FROM with a UTF-8 address -> %q, want * SEARCH 1", got)
	}
	got = joined(r.cmd("a8", "FETCH 1 (BODYSTRUCTURE)"))
	if !strings.Contains(got, `("charset" "utf-8" "name" "Grüße.txt")`) || !strings.Contains(got, `("attachment" ("filename" "Grüße.txt"))`) {
		t.Errorf("BODYSTRUCTURE lacks the UTF-8 parameters quoted:\n%s", got)
	}
	// APPEND with the UTF8 data extension (RFC 9755 section 4).
	msg := strings.Replace(utf8Mail, "Subject: Καλημέρα", "Subject: Entwurf", 1)
	if _, err := fmt.Fprintf(r.c, "a9 APPEND \"Entwürfe\" UTF8 (~{%d+}\r\n%s)\r\n", len(msg), msg); err != nil {
		t.Fatal(err)
	}
	if l := r.line(); !strings.HasPrefix(l, "a9 OK") {
		t.Fatalf("APPEND UTF8 -> %s", l)
	}
	r.cmd("b1", `SELECT "Entwürfe"`)
	if got := joined(r.cmd("b2", "FETCH 1 (ENVELOPE)")); !strings.Contains(got, `"Entwurf, ünïcödé"`) {
		t.Errorf("appended message ENVELOPE:\n%s", got)
	}

	// Without ENABLE: modified UTF-7 and encoded words.
	r2 := env.raw(t)
	r2.cmd("c1", "LOGIN "+alice+" "+alicePW)
	if got := joined(r2.cmd("c2", `LIST "" "Entw*"`)); got != `* LIST () "/" "Entw&APw-rfe"` {
		t.Errorf("LIST without UTF8=ACCEPT -> %q, want modified UTF-7", got)
	}
	r2.cmd("c3", "SELECT INBOX")
	if got := joined(r2.cmd("c4", "FETCH 1 (ENVELOPE)")); !strings.Contains(got, `"=?utf-8?q?`) || strings.Contains(got, "Καλημέρα") {
		t.Errorf("ENVELOPE without UTF8=ACCEPT is not RFC 2047 encoded:\n%s", got)
	}
}

// TestUTF8AcceptImaplib drives the same with Python's imaplib, which
// enables UTF8=ACCEPT itself and then sends and reads UTF-8 names.
func TestUTF8AcceptImaplib(t *testing.T) {
	env := newEnv(t, 0)
	if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(utf8Mail), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	script := `
import imaplib, ssl, sys
host, port, cafile, user, pw = sys.argv[1:6]
M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ssl.create_default_context(cafile=cafile))
M.login(user, pw)
# imaplib reads the capabilities once, before login; ENABLE and
# UTF8=ACCEPT are listed only after it.
M._get_capabilities()
assert "UTF8=ACCEPT" in M.capabilities, M.capabilities
typ, data = M.enable("UTF8=ACCEPT")
assert typ == "OK", (typ, data)
typ, data = M.create('"Αρχείο"')
assert typ == "OK", (typ, data)
typ, data = M.list('""', '"Αρχ*"')
assert typ == "OK" and data == ['() "/" "Αρχείο"'.encode()], data
typ, data = M.select("INBOX")
assert typ == "OK", (typ, data)
typ, data = M.fetch("1", "(ENVELOPE)")
env = data[0].decode("utf-8")
assert '"Καλημέρα, ünïcödé"' in env and '"δοκιμή" "παράδειγμα.δοκιμή"' in env, env
print("ok")
`
	host, port, _ := strings.Cut(env.tlsAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c", script, host, port, env.caFile, alice, alicePW).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}

// TestSMTPUTF8ToIMAP: a message from an international sender, received on
// the MX with SMTPUTF8 (net/textproto), is read back intact over IMAP by a
// client that enabled UTF8=ACCEPT.
func TestSMTPUTF8ToIMAP(t *testing.T) {
	env := newEnv(t, 0)
	dir, err := auth.NewDirectory([]string{"example.test"}, []auth.User{{Address: alice}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mx, err := smtp.New(smtp.Options{Mode: smtp.ModeMX, Hostname: "mx.example.test", Store: env.st, Directory: dir,
		Logger: slog.New(slog.DiscardHandler), SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go mx.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mx.Shutdown(ctx)
	})

	c, err := textproto.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	step := func(cmd string, code int) {
		t.Helper()
		if cmd != "" {
			if err := c.PrintfLine("%s", cmd); err != nil {
				t.Fatal(err)
			}
		}
		if _, msg, err := c.ReadResponse(code); err != nil {
			t.Fatalf("%s -> %v %s", cmd, err, msg)
		}
	}
	step("", 220)
	step("EHLO client.παράδειγμα.δοκιμή", 250)
	step("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8", 250)
	step("RCPT TO:<Alice@example.test>", 250)
	step("DATA", 354)
	w := c.DotWriter()
	io.WriteString(w, utf8Mail)
	w.Close()
	step("", 250)
	step("QUIT", 221)

	r := env.raw(t)
	r.cmd("a1", "LOGIN "+alice+" "+alicePW)
	r.cmd("a2", "ENABLE UTF8=ACCEPT")
	r.cmd("a3", "SELECT INBOX")
	got := strings.Join(r.cmd("a4", "FETCH 1 (ENVELOPE)"), "\n")
	if !strings.Contains(got, `"Καλημέρα, ünïcödé" (("Δοκιμή" NIL "δοκιμή" "παράδειγμα.δοκιμή"))`) {
		t.Errorf("ENVELOPE of the received message:\n%s", got)
	}
	lines := r.cmd("a5", "FETCH 1 (BODY.PEEK[])")
	body := strings.Join(lines[1:], "\r\n") // after "* 1 FETCH (... {n}"
	if !strings.Contains(body, "with UTF8SMTP id") || !strings.Contains(body, strings.TrimSuffix(utf8Mail, "\r\n")) {
		t.Errorf("stored message not intact:\n%s", strings.Join(lines, "\n"))
	}
}
