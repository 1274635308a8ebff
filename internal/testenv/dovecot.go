package testenv

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"
)

// Dovecot is a private Dovecot IMAP server (Debian dovecot-imapd) started
// for one test: its own base_dir, a passwd-file of users, Maildir storage
// (LAYOUT=fs, "/" as the hierarchy separator, Gmail's special-use folders
// declared), a plaintext listener and an implicit-TLS listener (RFC 8314)
// on 127.0.0.1 with a certificate from a fresh test CA.
type Dovecot struct {
	// Addr is the plaintext IMAP listener (no STARTTLS needed: plaintext
	// logins are allowed on loopback), TLSAddr the implicit-TLS one.
	Addr, TLSAddr string
	// CAFile is the PEM of the CA that signed the server certificate (for
	// 127.0.0.1 and localhost); CertPool holds the same CA.
	CAFile   string
	CertPool *x509.CertPool
	// Dir holds the configuration, users file, logs and mail homes.
	Dir string

	// IntrospectionURL is the OAuth2 token introspection endpoint (RFC
	// 7662) Dovecot asks, when started with DovecotOptions.OAuth2.
	IntrospectionURL string

	users    map[string]string
	uid, gid int
	location string
	extra    string

	mu             sync.Mutex
	oauth2         bool
	tokens         map[string]OAuth2Token
	introspections int
}

// DovecotUser is a user of the private Dovecot.
type DovecotUser struct{ Name, Password string }

// OAuth2Token is what the introspection endpoint of the private Dovecot
// says about an access token: the user it was issued to and whether it is
// still active (an expired or revoked token is not).
type OAuth2Token struct {
	User   string
	Active bool
}

// DovecotOptions configure StartDovecotWith.
type DovecotOptions struct {
	Users []DovecotUser
	// OAuth2 adds the SASL mechanisms XOAUTH2 (Google's) and OAUTHBEARER
	// (RFC 7628), checked by Dovecot's oauth2 passdb against a local
	// HTTP introspection endpoint (RFC 7662, token POSTed as a form)
	// that answers from Tokens (changed later with SetToken). Password
	// logins (PLAIN, LOGIN) keep using the users' passwords.
	OAuth2 bool
	Tokens map[string]OAuth2Token
	// MailLocation replaces the mail_location (default
	// maildir:~/Maildir:LAYOUT=fs:INBOX=~/Maildir/INBOX); maildir:~/Maildir
	// is Dovecot's default Maildir++ layout.
	MailLocation string
	// Extra is appended to the configuration (plugins, settings).
	Extra string
}

// StartDovecot writes a configuration for users, starts `dovecot -F` on
// two free 127.0.0.1 ports and waits until it greets. It stops the server
// and removes its files when the test ends. As root, mail processes run as
// nobody; otherwise as the current user. A missing binary fails the test:
// the CI installs the Debian package dovecot-imapd.
func StartDovecot(t testing.TB, users ...DovecotUser) *Dovecot {
	t.Helper()
	return StartDovecotWith(t, DovecotOptions{Users: users})
}

// StartDovecotWith is StartDovecot with options: see DovecotOptions.
func StartDovecotWith(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	users := opts.Users
	bin := "/usr/sbin/dovecot"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("dovecot not found (install the Debian package dovecot-imapd): %v", err)
	}
	if _, err := os.Stat("/usr/lib/dovecot/imap"); err != nil {
		t.Fatalf("dovecot imap not found (install the Debian package dovecot-imapd): %v", err)
	}
	// A short directory of its own: unix socket paths are limited to 108
	// bytes, and the mail processes (nobody) must reach the homes.
	dir, err := os.MkdirTemp("", "mailctl-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Dovecot{Dir: dir, users: map[string]string{}, uid: os.Getuid(), gid: os.Getgid(),
		oauth2: opts.OAuth2, tokens: map[string]OAuth2Token{}, location: opts.MailLocation, extra: opts.Extra}
	if d.location == "" {
		d.location = "maildir:~/Maildir:LAYOUT=fs:INBOX=~/Maildir/INBOX"
	}
	for tok, info := range opts.Tokens {
		d.tokens[tok] = info
	}
	if opts.OAuth2 {
		d.startIntrospection(t)
	}
	if d.uid == 0 {
		d.uid, d.gid = 65534, 65534
		if u, err := user.Lookup("nobody"); err == nil {
			d.uid, _ = strconv.Atoi(u.Uid)
			d.gid, _ = strconv.Atoi(u.Gid)
		}
	}
	d.writeCert(t)
	var pw strings.Builder
	for _, u := range users {
		home := d.Home(u.Name)
		if err := os.MkdirAll(filepath.Join(home, "Maildir", "INBOX", "cur"), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{"new", "tmp"} {
			os.MkdirAll(filepath.Join(home, "Maildir", "INBOX", sub), 0o700)
		}
		d.users[u.Name] = u.Password
		fmt.Fprintf(&pw, "%s:{PLAIN}%s:%d:%d::%s::\n", u.Name, u.Password, d.uid, d.gid, home)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	d.chownHomes(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p1, err := freeTCPPort()
		if err != nil {
			t.Fatal(err)
		}
		p2, err := freeTCPPort()
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = d.start(t, bin, p1, p2); lastErr == nil {
			return d
		}
	}
	t.Fatalf("start dovecot: %v", lastErr)
	return nil
}

// startIntrospection serves an OAuth2 token introspection endpoint (RFC
// 7662 section 2) on 127.0.0.1 for Dovecot's oauth2 passdb and writes its
// configuration file, dir/oauth2.conf. The endpoint takes the token as a
// POSTed form (introspection_mode = post), as a query parameter (get) or
// as a bearer token (auth), and answers {"active": false} for a token it
// does not know.
func (d *Dovecot) startIntrospection(t testing.TB) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(d.introspect))
	t.Cleanup(srv.Close)
	d.IntrospectionURL = srv.URL + "/introspect"
	conf := fmt.Sprintf(`# OAuth2 passdb of the private test instance (internal/testenv/dovecot.go)
introspection_url = %s
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
`, d.IntrospectionURL)
	if err := os.WriteFile(filepath.Join(d.Dir, "oauth2.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (d *Dovecot) introspect(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/introspect" {
		http.NotFound(w, r)
		return
	}
	token := r.FormValue("token")
	if token == "" {
		token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	d.mu.Lock()
	d.introspections++
	info, ok := d.tokens[token]
	d.mu.Unlock()
	resp := map[string]any{"active": false}
	if ok && token != "" && info.Active {
		resp = map[string]any{"active": true, "username": info.User, "token_type": "Bearer", "scope": "https://mail.google.com/"}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// SetToken adds or changes what the introspection endpoint says about a
// token (of a Dovecot started with DovecotOptions.OAuth2); Dovecot does not
// cache the answers.
func (d *Dovecot) SetToken(token string, info OAuth2Token) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tokens[token] = info
}

// Introspections is the number of requests the introspection endpoint has
// answered.
func (d *Dovecot) Introspections() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.introspections
}

// Home is the home directory of a user (its Maildir is Home/Maildir).
func (d *Dovecot) Home(name string) string {
	return filepath.Join(d.Dir, "home", strings.NewReplacer("@", "_at_", "/", "_").Replace(name))
}

// ClientTLS is a client TLS configuration trusting the server.
func (d *Dovecot) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: d.CertPool, ServerName: "127.0.0.1"}
}

// Own gives the tree at root to the user the mail processes run as (a
// Maildir put into a home after the start).
func (d *Dovecot) Own(t testing.TB, root string) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	if err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, d.uid, d.gid)
	}); err != nil {
		t.Fatalf("chown %s: %v", root, err)
	}
}

func (d *Dovecot) chownHomes(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	root := filepath.Join(d.Dir, "home")
	if err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, d.uid, d.gid)
	}); err != nil {
		t.Fatalf("chown dovecot homes: %v", err)
	}
}

func (d *Dovecot) config(p1, p2 int) string {
	login := ""
	if os.Getuid() != 0 {
		name := strconv.Itoa(os.Getuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		login = fmt.Sprintf("default_login_user = %s\ndefault_internal_user = %s\n", name, name)
	}
	mechs, oauth2 := "plain login", ""
	if d.oauth2 {
		mechs = "plain login xoauth2 oauthbearer"
		oauth2 = fmt.Sprintf(`passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = %s/oauth2.conf
}
`, d.Dir)
	}
	return fmt.Sprintf(`# private test instance (internal/testenv/dovecot.go)
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = mailctl-test-%[2]d
log_path = %[1]s/dovecot.log
%[5]slisten = 127.0.0.1
protocols = imap
ssl = yes
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
disable_plaintext_auth = no
auth_mechanisms = %[6]s
first_valid_uid = 1
mail_location = %[8]s
mail_fsync = never
maildir_very_dirty_syncs = yes
mail_max_userip_connections = 100
namespace inbox {
  inbox = yes
  separator = /
  mailbox "[Gmail]/All Mail" {
    special_use = \All
  }
  mailbox "[Gmail]/Sent Mail" {
    special_use = \Sent
  }
  mailbox "[Gmail]/Drafts" {
    special_use = \Drafts
  }
  mailbox "[Gmail]/Trash" {
    special_use = \Trash
  }
  mailbox "[Gmail]/Spam" {
    special_use = \Junk
  }
  mailbox "[Gmail]/Starred" {
    special_use = \Flagged
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[3]d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[4]d
    ssl = yes
  }
}
%[7]spassdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/users
}
`, d.Dir, p1, p1, p2, login, mechs, oauth2, d.location) + d.extra
}

func (d *Dovecot) start(t testing.TB, bin string, p1, p2 int) error {
	conf := filepath.Join(d.Dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(d.config(p1, p2)), 0o644); err != nil {
		return err
	}
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(d.Dir, sub), 0o755); err != nil {
			return err
		}
	}
	var out syncBuffer
	c, err := startChild(&out, bin, "-F", "-c", conf)
	if err != nil {
		return err
	}
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
		return out.String() + string(b)
	}
	d.Addr = fmt.Sprintf("127.0.0.1:%d", p1)
	d.TLSAddr = fmt.Sprintf("127.0.0.1:%d", p2)
	if err := c.waitReady(10*time.Second, func() bool { return greets(d.Addr) }); err != nil {
		return fmt.Errorf("dovecot on %s: %w: %s", d.Addr, err, logs())
	}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("dovecot output:\n%s", lastLines(logs(), 40))
		}
	})
	return nil
}

func greets(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "* OK")
}

// writeCert makes a CA and a server certificate for 127.0.0.1/localhost.
func (d *Dovecot) writeCert(t testing.TB) {
	t.Helper()
	ca := NewCA(t)
	d.CAFile, _, _ = ca.WriteFiles(t, d.Dir, ca.Leaf(t, "localhost", "127.0.0.1"))
	d.CertPool = ca.Pool
}

// GmailOptions shape the fixture of FillGmailLike.
type GmailOptions struct {
	// Messages is the number of distinct messages (default 1000).
	Messages int
	// Large are the sizes in bytes of messages with a big attachment,
	// placed in INBOX (and All Mail).
	Large []int
	// Seed makes the fixture reproducible (default 1).
	Seed int64
}

// FixtureMessage is one distinct message of a fixture.
type FixtureMessage struct {
	MessageID string // "<...>", or "" for a message without the header
	Subject   string
	Date      time.Time // INTERNALDATE (file mtime), whole seconds
	Flags     []string  // IMAP system flags, e.g. \Seen
	Size      int64     // RFC822.SIZE (CRLF line ends)
	Folders   []string  // the source folders holding a copy, All Mail included
}

// GmailFixture describes what FillGmailLike wrote.
type GmailFixture struct {
	Messages []*FixtureMessage
	// Folders lists the messages of each selectable source folder.
	Folders map[string][]*FixtureMessage
	// Bytes is the total size of the distinct messages.
	Bytes int64
}

// Gmail-like source folder names.
const (
	GmailAllMail   = "[Gmail]/All Mail"
	GmailSent      = "[Gmail]/Sent Mail"
	GmailDrafts    = "[Gmail]/Drafts"
	GmailTrash     = "[Gmail]/Trash"
	GmailSpam      = "[Gmail]/Spam"
	GmailStarred   = "[Gmail]/Starred"
	GmailImportant = "[Gmail]/Important"
)

// GmailLabels are the user labels of the fixture: nested, with a
// non-selectable parent (Work/Clients) and non-ASCII names.
var GmailLabels = []string{"Work", "Work/Clients/ACME", "Reçus/Été 2025", "Personal"}

// FillGmailLike writes a Gmail-like mailbox for user directly as Maildir
// files (Dovecot indexes them on first access): INBOX, the [Gmail] folders,
// labels, [Gmail]/All Mail holding a copy (a hard link) of every message
// except Trash and Spam, some messages under several labels, flags in the
// file names (Maildir ":2," info), INTERNALDATEs spread over 2018-2025 as
// file modification times, and opts.Large messages with big attachments.
func (d *Dovecot) FillGmailLike(t testing.TB, userName string, opts GmailOptions) *GmailFixture {
	t.Helper()
	if _, ok := d.users[userName]; !ok {
		t.Fatalf("FillGmailLike: unknown user %q", userName)
	}
	if opts.Messages <= 0 {
		opts.Messages = 1000
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	rng := mrand.New(mrand.NewSource(opts.Seed))
	root := filepath.Join(d.Home(userName), "Maildir")
	fx := &GmailFixture{Folders: map[string][]*FixtureMessage{}}
	made := map[string]bool{}
	folderDir := func(name string) string {
		if name == "INBOX" {
			return filepath.Join(root, "INBOX")
		}
		var parts []string
		for _, p := range strings.Split(name, "/") {
			parts = append(parts, encodeMUTF7(p))
		}
		dir := filepath.Join(append([]string{root}, parts...)...)
		if !made[name] {
			for _, sub := range []string{"cur", "new", "tmp"} {
				if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			made[name] = true
		}
		return dir
	}
	for _, f := range append([]string{"INBOX", GmailAllMail, GmailSent, GmailDrafts, GmailTrash, GmailSpam, GmailStarred, GmailImportant}, GmailLabels...) {
		folderDir(f)
		fx.Folders[f] = nil
	}
	start := time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	span := time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC).Unix() - start
	total := opts.Messages + len(opts.Large)
	for i := 0; i < total; i++ {
		m := &FixtureMessage{
			Subject: fmt.Sprintf("Message %d", i),
			Date:    time.Unix(start+rng.Int63n(span), 0).UTC(),
		}
		if rng.Intn(100) != 0 {
			m.MessageID = fmt.Sprintf("<%d.%d.fixture@example.com>", i, opts.Seed)
		}
		large := 0
		if i >= opts.Messages {
			large = opts.Large[i-opts.Messages]
		}
		var folders []string
		seen, answered, flagged, draft := rng.Intn(10) < 7, false, false, false
		r := rng.Intn(100)
		switch {
		case large > 0 || r < 40:
			folders = []string{"INBOX"}
			if rng.Intn(100) < 15 {
				folders = append(folders, GmailLabels[rng.Intn(len(GmailLabels))])
			}
			if rng.Intn(10) == 0 {
				folders = append(folders, GmailImportant)
			}
		case r < 55:
			folders, seen, answered = []string{GmailSent}, true, rng.Intn(5) == 0
		case r < 57:
			folders, draft = []string{GmailDrafts}, true
		case r < 60:
			folders = []string{GmailTrash}
		case r < 63:
			folders = []string{GmailSpam}
		case r < 85:
			a := rng.Intn(len(GmailLabels))
			folders = []string{GmailLabels[a]}
			if rng.Intn(4) == 0 {
				if b := rng.Intn(len(GmailLabels)); b != a {
					folders = append(folders, GmailLabels[b])
				}
			}
		}
		if folders == nil || (folders[0] != GmailTrash && folders[0] != GmailSpam) {
			if rng.Intn(20) == 0 {
				flagged = true
				folders = append(folders, GmailStarred)
			}
			folders = append(folders, GmailAllMail)
		}
		if answered {
			seen = true
		}
		info := ""
		for _, f := range []struct {
			on     bool
			letter string
			imap   string
		}{{draft, "D", `\Draft`}, {flagged, "F", `\Flagged`}, {answered, "R", `\Answered`}, {seen, "S", `\Seen`}} {
			if f.on {
				info += f.letter
				m.Flags = append(m.Flags, f.imap)
			}
		}
		body := fixtureBody(rng, m, userName, large)
		m.Size = int64(len(body) + strings.Count(body, "\n"))
		m.Folders = folders
		base := fmt.Sprintf("%d.M%dP1.fixture,S=%d,W=%d:2,%s", m.Date.Unix(), i, len(body), m.Size, info)
		first := ""
		for _, f := range folders {
			p := filepath.Join(folderDir(f), "cur", base)
			if first == "" {
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, m.Date, m.Date); err != nil {
					t.Fatal(err)
				}
				first = p
			} else if err := os.Link(first, p); err != nil {
				t.Fatal(err)
			}
			fx.Folders[f] = append(fx.Folders[f], m)
		}
		fx.Messages = append(fx.Messages, m)
		fx.Bytes += m.Size
	}
	d.chownHomes(t)
	return fx
}

// fixtureBody returns a message with LF line ends.
func fixtureBody(rng *mrand.Rand, m *FixtureMessage, to string, large int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Sender %d <sender%d@example.com>\nTo: <%s>\nSubject: %s\nDate: %s\n",
		rng.Intn(50), rng.Intn(50), to, m.Subject, m.Date.Format(time.RFC1123Z))
	if m.MessageID != "" {
		fmt.Fprintf(&b, "Message-ID: %s\n", m.MessageID)
	}
	b.WriteString("MIME-Version: 1.0\n")
	if large == 0 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\n\n")
		for n := 5 + rng.Intn(40); n > 0; n-- {
			fmt.Fprintf(&b, "%s line %d: the quick brown fox jumps over the lazy dog %d times.\n", m.Subject, n, rng.Intn(1000))
		}
		return b.String()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"fixture-boundary\"\n\n--fixture-boundary\nContent-Type: text/plain\n\nSee the attachment.\n--fixture-boundary\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"data.bin\"\n\n")
	raw := make([]byte, large*3/4)
	rand.Read(raw) // fast; attachment bytes need not be reproducible
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteByte('\n')
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\n--fixture-boundary--\n")
	return b.String()
}

// encodeMUTF7 encodes a mailbox name component in modified UTF-7
// (RFC 3501 section 5.1.3), as Dovecot stores names on disk.
func encodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		var u []byte
		for _, c := range utf16.Encode(run) {
			u = append(u, byte(c>>8), byte(c))
		}
		b.WriteByte('&')
		b.WriteString(strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(u), "/", ","))
		b.WriteByte('-')
		run = nil
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}
