package migrate_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

const (
	srcUser   = "alice@gmail.example"
	srcPass   = "alice-app-password"
	dstUser   = "alice@example.org"
	dstPass   = "alice-target-password"
	envSize   = "MAILCTL_MIGRATE_MESSAGES"
	largeSize = 25 << 20
)

// target is the bundled server (server/store + server/imap) on a loopback
// implicit-TLS port.
type target struct {
	st     *store.Store
	addr   string
	caFile string
	tls    *tls.Config
}

func startTarget(t testing.TB, users ...string) *target {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var accounts []auth.User
	cheap := auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	for _, u := range users {
		if err := st.EnsureUser(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
		h, err := auth.HashPassword(dstPass, cheap)
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, auth.User{Address: u, PasswordHash: h})
	}
	authn, err := auth.NewAuthenticator(accounts, auth.AuthenticatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t)
	cert := ca.Leaf(t, "127.0.0.1", "localhost")
	tg := &target{st: st, caFile: filepath.Join(t.TempDir(), "target-ca.pem")}
	if err := os.WriteFile(tg.caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tg.tls = &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg.addr = ln.Addr().String()
	srv := imap.New(st, authn, imap.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ImplicitTLS: true,
		Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	return tg
}

// job migrates the fixture user of d (over implicit TLS unless addr says
// otherwise) into tg.
func job(d *testenv.Dovecot, tg *target) migrate.Job {
	return migrate.Job{
		User:       dstUser,
		Source:     migrate.Endpoint{Address: d.TLSAddr, CAFile: d.CAFile},
		SourceAuth: migrate.Credentials{Username: srcUser, Password: srcPass},
		Target:     migrate.Endpoint{Address: tg.addr, CAFile: tg.caFile},
		TargetAuth: migrate.Credentials{Username: dstUser, Password: dstPass},
	}
}

// wantFolders computes, from the fixture, the dedupe keys expected in each
// target folder: each message once, in the first folder of the processing
// order (INBOX, Sent, Drafts, other folders by name, All Mail), or in every
// label's folder with duplicates.
func wantFolders(fx *testenv.GmailFixture, duplicates bool) map[string][]*testenv.FixtureMessage {
	targetOf := map[string]string{
		"INBOX": "INBOX", testenv.GmailSent: "Sent", testenv.GmailDrafts: "Drafts", testenv.GmailTrash: "Trash",
		testenv.GmailSpam: "Junk", testenv.GmailAllMail: "Archive",
	}
	rank := func(f string) int {
		switch f {
		case "INBOX":
			return 0
		case testenv.GmailSent:
			return 1
		case testenv.GmailDrafts:
			return 2
		case testenv.GmailAllMail:
			return 4
		}
		return 3
	}
	out := map[string][]*testenv.FixtureMessage{}
	for _, m := range fx.Messages {
		var fs []string
		for _, f := range m.Folders {
			if f != testenv.GmailStarred && f != testenv.GmailImportant {
				fs = append(fs, f)
			}
		}
		sort.Slice(fs, func(i, j int) bool {
			if rank(fs[i]) != rank(fs[j]) {
				return rank(fs[i]) < rank(fs[j])
			}
			return fs[i] < fs[j]
		})
		if !duplicates || len(fs) == 1 {
			fs = fs[:1]
		} else if fs[len(fs)-1] == testenv.GmailAllMail {
			fs = fs[:len(fs)-1]
		}
		for _, f := range fs {
			tf, ok := targetOf[f]
			if !ok {
				tf = f
			}
			out[tf] = append(out[tf], m)
		}
	}
	return out
}

// got is one message as read back over IMAP.
type got struct {
	id    string
	flags string
	date  time.Time
	size  int64
}

func fixtureKey(m *testenv.FixtureMessage) string {
	if m.MessageID != "" {
		return m.MessageID
	}
	return m.Subject
}

func fixtureGot(m *testenv.FixtureMessage) got {
	return got{id: fixtureKey(m), flags: flagString(m.Flags), date: m.Date, size: m.Size}
}

func flagString[F ~string](flags []F) string {
	var s []string
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			s = append(s, string(f))
		}
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// readFolders reads every selectable folder of an IMAP account: Message-ID
// (or Subject when there is none), flags, INTERNALDATE and size of each
// message.
func readFolders(t testing.TB, addr string, tc *tls.Config, user, pass string) map[string][]got {
	t.Helper()
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatalf("DialTLS %s = %v", addr, err)
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("Login %s = %v", user, err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]got{}
	hdr := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Message-ID", "Subject"}, Peek: true}
	for _, l := range list {
		if hasNoSelect(l.Attrs) {
			continue
		}
		sel, err := c.Select(l.Mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("Examine %q = %v", l.Mailbox, err)
		}
		out[l.Mailbox] = []got{}
		if sel.NumMessages == 0 {
			continue
		}
		bufs, err := c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{
			Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*goimap.FetchItemBodySection{hdr}}).Collect()
		if err != nil {
			t.Fatalf("Fetch %q = %v", l.Mailbox, err)
		}
		for _, b := range bufs {
			id, subject := headerValues(string(b.FindBodySection(hdr)))
			if id == "" {
				id = subject
			}
			out[l.Mailbox] = append(out[l.Mailbox], got{id: id, flags: flagString(b.Flags), date: b.InternalDate.UTC(), size: b.RFC822Size})
		}
	}
	return out
}

func hasNoSelect(attrs []goimap.MailboxAttr) bool {
	for _, a := range attrs {
		if a == goimap.MailboxAttrNoSelect || a == goimap.MailboxAttrNonExistent {
			return true
		}
	}
	return false
}

func headerValues(h string) (id, subject string) {
	for _, line := range strings.Split(h, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "message-id":
			id = strings.TrimSpace(v)
		case "subject":
			subject = strings.TrimSpace(v)
		}
	}
	return id, subject
}

// compare checks that folders hold exactly want (as sets of messages with
// their flags, dates and sizes).
func compare(t *testing.T, folders map[string][]got, want map[string][]*testenv.FixtureMessage) {
	t.Helper()
	for name, msgs := range want {
		gotMsgs, ok := folders[name]
		if !ok {
			t.Errorf("target folder %q missing (want %d messages)", name, len(msgs))
			continue
		}
		if len(gotMsgs) != len(msgs) {
			t.Errorf("target folder %q: %d messages, want %d", name, len(gotMsgs), len(msgs))
		}
		have := map[string]got{}
		for _, g := range gotMsgs {
			if _, dup := have[g.id]; dup {
				t.Errorf("target folder %q: %s twice", name, g.id)
			}
			have[g.id] = g
		}
		bad := 0
		for _, m := range msgs {
			w := fixtureGot(m)
			g, ok := have[w.id]
			if !ok || g != w {
				if bad++; bad <= 5 {
					t.Errorf("target folder %q: message %s = %+v, want %+v", name, w.id, g, w)
				}
			}
		}
	}
	for name, msgs := range folders {
		if _, ok := want[name]; !ok && len(msgs) > 0 {
			t.Errorf("target folder %q: %d unexpected messages", name, len(msgs))
		}
	}
}

// fixtureSize is the number of messages of the main test: 10 000 (1000
// with -short), or $MAILCTL_MIGRATE_MESSAGES.
func fixtureSize(t testing.TB) int {
	if v := os.Getenv(envSize); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number", envSize, v)
		}
		return n
	}
	if testing.Short() {
		return 1000
	}
	return 10000
}
