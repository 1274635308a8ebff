package imap_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

const (
	alice    = "alice@example.test"
	alicePW  = "lab-alice-password"
	bob      = "bob@example.test"
	bobPW    = "lab-bob-password"
	testMail = "From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\nSubject: %s\r\nDate: Mon, 23 Nov 2026 16:00:00 +0000\r\nMessage-ID: <%s@example.test>\r\n\r\nHello Alice, %s.\r\n"
)

func mail(subject string) string {
	return fmt.Sprintf(testMail, subject, strings.ReplaceAll(subject, " ", "-"), subject)
}

// passwords is an Authenticator that holds users and passwords, and the
// remote addresses it was called with.
type passwords struct {
	mu      sync.Mutex
	users   map[string]string
	remotes []net.Addr
}

func (p *passwords) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.remotes = append(p.remotes, remote)
	if pw, ok := p.users[username]; ok && pw == password {
		return username, nil
	}
	return "", errors.New("bad credentials")
}

type testEnv struct {
	st        *store.Store
	auth      *passwords
	plainAddr string // STARTTLS (143)
	farAddr   string // STARTTLS (143), where clients appear to come from 192.0.2.10
	tlsAddr   string // implicit TLS (993)
	clientTLS *tls.Config
	caFile    string // PEM of the server certificate
}

// selfSigned returns a server certificate for 127.0.0.1 and localhost.
func selfSigned(t testing.TB) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost", "127.0.0.1"}, // mbsync matches names only
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func newEnv(t testing.TB, quota int64) *testEnv {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{alice, bob} {
		if err := st.EnsureUser(ctx, u, quota); err != nil {
			t.Fatal(err)
		}
	}
	cert, certPEM := selfSigned(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{
		st:        st,
		auth:      &passwords{users: map[string]string{alice: alicePW, bob: bobPW}},
		clientTLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		caFile:    caFile,
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, kind := range []string{"plain", "far", "tls"} {
		implicit := kind == "tls"
		var ln net.Listener
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		if kind == "far" {
			ln = farListener{ln}
		}
		srv := imap.New(st, env.auth, imap.Options{TLSConfig: serverTLS, ImplicitTLS: implicit, Logger: logger})
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		t.Cleanup(func() {
			srv.Shutdown(context.Background())
			if err := <-done; err != nil {
				t.Errorf("Serve = %v", err)
			}
		})
		switch kind {
		case "plain":
			env.plainAddr = addr
		case "far":
			env.farAddr = addr
		case "tls":
			env.tlsAddr = addr
		}
	}
	return env
}

// farListener makes its connections look as if they came from a client
// on the network (192.0.2.10, RFC 5737), not from loopback.
type farListener struct{ net.Listener }

func (l farListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return farConn{c}, nil
}

type farConn struct{ net.Conn }

func (farConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 40000}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (env *testEnv) deliver(t testing.TB, user, subject string) uint32 {
	t.Helper()
	uid, err := env.st.Deliver(context.Background(), user, "", strings.NewReader(mail(subject)), nil, time.Time{})
	if err != nil {
		t.Fatalf("Deliver = %v", err)
	}
	return uid
}

func (env *testEnv) dialTLS(t testing.TB, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = env.clientTLS
	c, err := imapclient.DialTLS(env.tlsAddr, opts)
	if err != nil {
		t.Fatalf("DialTLS = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLoginDisabledBeforeSTARTTLS: on the plaintext port, to a client that
// is not on loopback, the server announces LOGINDISABLED and STARTTLS,
// offers no AUTH= mechanism and refuses a password; after STARTTLS login
// works.
func TestLoginDisabledBeforeSTARTTLS(t *testing.T) {
	env := newEnv(t, 0)
	raw, err := net.Dial("tcp", env.farAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(raw, nil)
	defer c.Close()
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []goimap.Cap{goimap.CapLoginDisabled, goimap.CapStartTLS, goimap.CapIMAP4rev2, "ID"} {
		if !caps.Has(want) {
			t.Errorf("plaintext capabilities %v lack %s", caps, want)
		}
	}
	for cp := range caps {
		if strings.HasPrefix(string(cp), "AUTH=") {
			t.Errorf("plaintext capabilities offer %s", cp)
		}
	}
	err = c.Login(alice, alicePW).Wait()
	var ie *goimap.Error
	if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodePrivacyRequired {
		t.Errorf("LOGIN in plaintext = %v, want NO [PRIVACYREQUIRED]", err)
	}
	if n := len(env.auth.remotes); n != 0 {
		t.Errorf("the authenticator saw %d plaintext passwords", n)
	}
	c.Close()

	c, err = imapclient.DialStartTLS(env.farAddr, &imapclient.Options{TLSConfig: env.clientTLS})
	if err != nil {
		t.Fatalf("DialStartTLS = %v", err)
	}
	defer c.Close()
	caps, err = c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if caps.Has(goimap.CapLoginDisabled) || caps.Has(goimap.CapStartTLS) || !caps.Has("AUTH=PLAIN") {
		t.Errorf("capabilities after STARTTLS = %v", caps)
	}
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS = %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	env.auth.mu.Lock()
	defer env.auth.mu.Unlock()
	if len(env.auth.remotes) != 1 || !strings.HasPrefix(env.auth.remotes[0].String(), "192.0.2.10:") {
		t.Errorf("authenticator remotes = %v", env.auth.remotes)
	}
}

// TestLoginPlaintextFromLoopback: a client on a loopback address
// (127.0.0.1, 127.0.0.2) may log in without TLS, as with Dovecot: no
// LOGINDISABLED, AUTH=PLAIN offered, STARTTLS still offered, and LOGIN
// and AUTHENTICATE PLAIN work.
func TestLoginPlaintextFromLoopback(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "over loopback")
	for _, local := range []string{"127.0.0.1", "127.0.0.2"} {
		t.Run(local, func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
			for _, auth := range []string{"LOGIN", "AUTHENTICATE"} {
				raw, err := d.Dial("tcp", env.plainAddr)
				if err != nil {
					t.Fatal(err)
				}
				c := imapclient.New(raw, nil)
				defer c.Close()
				caps, err := c.Capability().Wait()
				if err != nil {
					t.Fatal(err)
				}
				if caps.Has(goimap.CapLoginDisabled) || !caps.Has(goimap.CapStartTLS) || !caps.Has("AUTH=PLAIN") {
					t.Errorf("plaintext capabilities from %s = %v", local, caps)
				}
				if auth == "LOGIN" {
					err = c.Login(alice, alicePW).Wait()
				} else {
					err = c.Authenticate(sasl.NewPlainClient("", alice, alicePW))
				}
				if err != nil {
					t.Fatalf("%s in plaintext from %s = %v", auth, local, err)
				}
				data, err := c.Select("INBOX", nil).Wait()
				if err != nil || data.NumMessages != 1 {
					t.Errorf("SELECT INBOX = %+v, %v", data, err)
				}
				c.Close()
			}
		})
	}
	env.auth.mu.Lock()
	defer env.auth.mu.Unlock()
	var got []string
	for _, r := range env.auth.remotes {
		host, _, _ := net.SplitHostPort(r.String())
		got = append(got, host)
	}
	if want := []string{"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"}; !slices.Equal(got, want) {
		t.Errorf("authenticator remotes = %v, want %v", got, want)
	}
}

// TestID checks RFC 2971 ID, before login (where the library would hang
// up on an unknown command) and after, with the go-imap client.
func TestID(t *testing.T) {
	env := newEnv(t, 0)
	c := env.dialTLS(t, nil)
	for _, stage := range []string{"before login", "after login"} {
		data, err := c.ID(&goimap.IDData{Name: "mailctl-test", Version: "1"}).Wait()
		if err != nil {
			t.Fatalf("ID %s = %v", stage, err)
		}
		if data == nil || data.Name != "mailctl" {
			t.Errorf("ID %s = %+v", stage, data)
		}
		if stage == "before login" {
			if err := c.Login(alice, alicePW).Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !c.Caps().Has("ID") {
		t.Errorf("capabilities %v lack ID", c.Caps())
	}
	if _, err := c.List("", "*", nil).Collect(); err != nil {
		t.Errorf("LIST after ID = %v", err)
	}
}

// TestIdle: a delivery reaches an idling client within a second.
func TestIdle(t *testing.T) {
	env := newEnv(t, 0)
	type fetch struct {
		seq   uint32
		flags []goimap.Flag
	}
	exists := make(chan uint32, 10)
	expunges := make(chan uint32, 10)
	fetches := make(chan fetch, 10)
	c := env.dialTLS(t, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if data.NumMessages != nil {
				exists <- *data.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunges <- seq },
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err == nil {
				fetches <- fetch{msg.SeqNum, buf.Flags}
			}
		},
	}})
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	env.deliver(t, alice, "before")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let IDLE start on the server
	for i := 2; i <= 4; i++ {
		start := time.Now()
		env.deliver(t, alice, fmt.Sprint("idle ", i))
		select {
		case n := <-exists:
			if d := time.Since(start); d > time.Second {
				t.Errorf("EXISTS after %v, want < 1s", d)
			} else {
				t.Logf("EXISTS %d %v after Deliver", n, d)
			}
			if n != uint32(i) {
				t.Errorf("EXISTS %d, want %d", n, i)
			}
		case <-time.After(time.Second):
			t.Fatalf("no EXISTS within 1s of delivery %d", i)
		}
	}
	// Flag changes and expunges by another session arrive too.
	c2 := env.dialTLS(t, nil)
	if err := c2.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c2.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-fetches:
		if f.seq != 2 || !slices.Contains(f.flags, goimap.FlagDeleted) {
			t.Errorf("FETCH %d %v, want 2 with \\Deleted", f.seq, f.flags)
		}
	case <-time.After(time.Second):
		t.Fatal("no FETCH FLAGS within 1s of STORE by another session")
	}
	if err := c2.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunges:
		if seq != 2 {
			t.Errorf("EXPUNGE %d, want 2", seq)
		}
	case <-time.After(time.Second):
		t.Fatal("no EXPUNGE within 1s")
	}
	t.Logf("flag change and expunge seen after %v", time.Since(start))
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestAppendQuota: APPEND beyond the quota fails with OVERQUOTA and
// stores nothing.
func TestAppendQuota(t *testing.T) {
	env := newEnv(t, 2000)
	c := env.dialTLS(t, nil)
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg := func(body string) error {
		cmd := c.Append("INBOX", int64(len(body)), nil)
		if _, err := cmd.Write([]byte(body)); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		_, err := cmd.Wait()
		return err
	}
	if err := appendMsg(mail("fits")); err != nil {
		t.Fatalf("APPEND within quota = %v", err)
	}
	err := appendMsg(mail("too big") + strings.Repeat("x", 2000))
	var ie *goimap.Error
	if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeOverQuota {
		t.Errorf("APPEND beyond quota = %v, want NO [OVERQUOTA]", err)
	}
	// A delivery refused the same way.
	if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(strings.Repeat("y", 2000)), nil, time.Time{}); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Errorf("Deliver beyond quota = %v", err)
	}
	used, n, _ := env.st.Usage(context.Background(), alice)
	if n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
	// Fill the quota exactly: then nothing more fits.
	if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(strings.Repeat("z", int(2000-used))), nil, time.Time{}); err != nil {
		t.Fatalf("Deliver up to the quota = %v", err)
	}
	if err := appendMsg("x\r\n"); !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeOverQuota {
		t.Errorf("APPEND with the quota full = %v, want NO [OVERQUOTA]", err)
	}
	cmd := c.Append("NoSuchBox", 3, nil)
	cmd.Write([]byte("x\r\n"))
	cmd.Close()
	if _, err := cmd.Wait(); !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeTryCreate {
		t.Errorf("APPEND to missing mailbox = %v, want NO [TRYCREATE]", err)
	}
}

// TestImaplib drives the server with Python's imaplib over implicit TLS:
// ID, LOGIN, LIST with special use and LIST-STATUS, SELECT, APPEND, FETCH,
// STORE, SEARCH, UID MOVE, EXPUNGE, CREATE, RENAME.
func TestImaplib(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "delivered one")
	env.deliver(t, alice, "delivered two")
	host, port, _ := net.SplitHostPort(env.tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "testdata/imaplib_session.py", host, port, env.caFile, alice, alicePW)
	out, err := cmd.CombinedOutput()
	t.Logf("imaplib:\n%s", out)
	if err != nil {
		t.Fatalf("imaplib session: %v", err)
	}
	ctxb := context.Background()
	_, inbox, _ := env.st.Messages(ctxb, alice, "INBOX")
	_, archive, _ := env.st.Messages(ctxb, alice, "Archive")
	if len(inbox) != 3 || len(archive) != 1 {
		t.Errorf("after the session: INBOX %d, Archive %d messages, want 3 and 1", len(inbox), len(archive))
	}
}

// TestMbsync syncs alice's mailboxes to a local Maildir with mbsync
// (Debian isync), over implicit TLS and over STARTTLS, twice: the second
// run must bring a new message and drop an expunged one.
func TestMbsync(t *testing.T) {
	xtuid := regexp.MustCompile(`(?m)^X-TUID: \S+\n`)
	for _, mode := range []string{"IMAPS", "STARTTLS"} {
		t.Run(mode, func(t *testing.T) {
			env := newEnv(t, 0)
			ctx := context.Background()
			for i := 0; i < 5; i++ {
				env.deliver(t, alice, fmt.Sprint("mbsync ", i))
			}
			if _, err := env.st.Deliver(ctx, alice, "Sent", strings.NewReader(mail("sent one")), []string{`\Seen`}, time.Time{}); err != nil {
				t.Fatal(err)
			}
			addr := env.tlsAddr
			if mode == "STARTTLS" {
				addr = env.plainAddr
			}
			host, port, _ := net.SplitHostPort(addr)
			dir := t.TempDir()
			maildir := filepath.Join(dir, "mail")
			if err := os.Mkdir(maildir, 0o700); err != nil {
				t.Fatal(err)
			}
			conf := fmt.Sprintf(`IMAPAccount test
Host %s
Port %s
User %s
Pass %s
SSLType %s
CertificateFile %s

IMAPStore remote
Account test

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
Expunge Near
SyncState *
`, host, port, alice, alicePW, mode, env.caFile, maildir, maildir)
			confFile := filepath.Join(dir, "mbsyncrc")
			if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			run := func() {
				t.Helper()
				cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				cmd := exec.CommandContext(cctx, "mbsync", "-c", confFile, "-a")
				cmd.Env = append(os.Environ(), "HOME="+dir)
				out, err := cmd.CombinedOutput()
				t.Logf("mbsync:\n%s", out)
				if err != nil {
					t.Fatalf("mbsync: %v", err)
				}
			}
			check := func(mailbox string) {
				t.Helper()
				_, msgs, err := env.st.Messages(ctx, alice, mailbox)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]bool{}
				for _, m := range msgs {
					f, err := env.st.OpenBody(ctx, m)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(f)
					f.Close()
					// Maildir files have native (LF) line ends.
					want[strings.ReplaceAll(string(b), "\r\n", "\n")] = true
				}
				files, _ := filepath.Glob(filepath.Join(maildir, mailbox, "*", "*"))
				got := map[string]bool{}
				for _, f := range files {
					if strings.Contains(f, ".mbsyncstate") || strings.HasSuffix(f, ".uidvalidity") {
						continue
					}
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					// mbsync adds its transaction id to the header.
					got[xtuid.ReplaceAllString(string(b), "")] = true
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Maildir %s holds %d messages, store %d (contents differ: %v)", mailbox, len(got), len(want), len(got) == len(want))
				}
			}
			run()
			check("INBOX")
			check("Sent")
			for _, d := range []string{"Drafts", "Trash", "Junk", "Archive"} {
				if _, err := os.Stat(filepath.Join(maildir, d, "cur")); err != nil {
					t.Errorf("mailbox %s not synced: %v", d, err)
				}
			}
			// Changes on the server reach the Maildir on the next run.
			env.deliver(t, alice, "mbsync late")
			if _, err := env.st.SetFlags(ctx, alice, "INBOX", []uint32{2}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
				t.Fatal(err)
			}
			if _, err := env.st.Expunge(ctx, alice, "INBOX", nil); err != nil {
				t.Fatal(err)
			}
			run()
			check("INBOX")

			// Local changes go up with Sync All: a message marked seen
			// (UID STORE) and a new draft (APPEND with flags).
			files, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "new", "*"))
			if len(files) == 0 {
				t.Fatal("no new message in the Maildir INBOX")
			}
			seenFile := files[0]
			if err := os.Rename(seenFile, filepath.Join(maildir, "INBOX", "cur", filepath.Base(seenFile))+"S"); err != nil {
				t.Fatal(err)
			}
			draft := "From: alice@example.test\nSubject: draft from mbsync\n\nnot sent yet\n"
			if err := os.WriteFile(filepath.Join(maildir, "Drafts", "cur", "1700000000.1.local:2,D"), []byte(draft), 0o600); err != nil {
				t.Fatal(err)
			}
			conf = strings.Replace(conf, "Sync Pull", "Sync All", 1)
			if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			run()
			_, inbox, _ := env.st.Messages(ctx, alice, "INBOX")
			seen := 0
			for _, m := range inbox {
				if m.HasFlag(store.FlagSeen) {
					seen++
				}
			}
			if seen != 1 {
				t.Errorf("%d messages \\Seen on the server after pushing a flag, want 1", seen)
			}
			_, drafts, _ := env.st.Messages(ctx, alice, "Drafts")
			if len(drafts) != 1 || !drafts[0].HasFlag(store.FlagDraft) {
				t.Fatalf("Drafts on the server = %+v, want the pushed draft", drafts)
			}
			f, err := env.st.OpenBody(ctx, drafts[0])
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if !strings.Contains(string(b), "Subject: draft from mbsync\r\n") {
				t.Errorf("pushed draft = %q", b)
			}
		})
	}
}

// TestSTARTTLSInjection: commands pipelined after STARTTLS in plaintext
// must not run inside the TLS session (CVE-2011-0411 class).
func TestSTARTTLSInjection(t *testing.T) {
	env := newEnv(t, 0)
	raw, err := net.Dial("tcp", env.plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(raw)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("greeting %q", line)
	}
	if _, err := raw.Write([]byte("a STARTTLS\r\nb CAPABILITY\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "a OK") {
		t.Fatalf("STARTTLS answer %q", line)
	}
	if br.Buffered() != 0 {
		t.Fatalf("plaintext after STARTTLS OK")
	}
	tc := tls.Client(raw, env.clientTLS)
	if _, err := tc.Write([]byte("c ID NIL\r\nd NOOP\r\n")); err != nil {
		t.Fatal(err)
	}
	tbr := bufio.NewReader(tc)
	var got []string
	for {
		line, err := tbr.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, line)
		if strings.HasPrefix(line, "d ") {
			break
		}
	}
	want := []string{"* ID (\"name\" \"mailctl\" \"vendor\" \"mailctl\")\r\n", "c OK ID completed\r\n", "d OK NOOP completed\r\n"}
	if !slices.Equal(got, want) {
		t.Errorf("inside TLS got %q, want %q (nothing for the injected b)", got, want)
	}
}

// TestLiteralsUntouched: message contents that look like commands or
// capability lists pass through APPEND and FETCH unchanged.
func TestLiteralsUntouched(t *testing.T) {
	env := newEnv(t, 0)
	c, err := imapclient.DialStartTLS(env.plainAddr, &imapclient.Options{TLSConfig: env.clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	body := "Subject: tricky\r\n\r\na1 ID NIL\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nx OK [CAPABILITY IMAP4rev1] hi\r\nz STARTTLS\r\n{5}\r\n"
	cmd := c.Append("INBOX", int64(len(body)), nil)
	cmd.Write([]byte(body))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &goimap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || string(msgs[0].FindBodySection(section)) != body {
		t.Errorf("FETCH BODY[] = %q, want %q", msgs[0].FindBodySection(section), body)
	}
}

// TestConcurrentSessions runs deliveries and several sessions that flag,
// fetch, search and expunge the same mailbox at once (run with -race).
// Every session must end with the same view as the store.
func TestConcurrentSessions(t *testing.T) {
	env := newEnv(t, 0)
	for i := 0; i < 20; i++ {
		env.deliver(t, alice, fmt.Sprint("start ", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 30; i++ {
			if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(mail(fmt.Sprint("live ", i))), nil, time.Time{}); err != nil {
				errs <- err
				return
			}
		}
	}()
	clients := make([]*imapclient.Client, 3)
	for w := range clients {
		c := env.dialTLS(t, nil)
		clients[w] = c
		if err := c.Login(alice, alicePW).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				uid := goimap.UID(w*5 + i%5 + 1)
				if err := c.Store(goimap.UIDSetNum(uid), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
					errs <- err
					return
				}
				if _, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect(); err != nil && !isExpungeIssued(err) {
					errs <- err
					return
				}
				if _, err := c.UIDSearch(&goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagDeleted}}, nil).Wait(); err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					if err := c.Expunge().Close(); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, msgs, err := env.st.Messages(context.Background(), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	// Updates reach the sessions asynchronously: each view must converge
	// to the store's.
	for w, c := range clients {
		var got []*imapclient.FetchMessageBuffer
		for try := 0; try < 20; try++ {
			if err := c.Noop().Wait(); err != nil {
				t.Fatal(err)
			}
			got, err = c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == len(msgs) && c.Mailbox().NumMessages == uint32(len(msgs)) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(got) != len(msgs) || c.Mailbox().NumMessages != uint32(len(msgs)) {
			t.Errorf("client %d sees %d messages (EXISTS %d), store has %d", w, len(got), c.Mailbox().NumMessages, len(msgs))
			continue
		}
		for i, m := range got {
			if uint32(m.UID) != msgs[i].UID {
				t.Errorf("client %d: message %d has UID %d, store %d", w, i+1, m.UID, msgs[i].UID)
				break
			}
		}
	}
}

// BenchmarkMailbox10k measures, on one mailbox of 10 000 messages like
// those of bench/anchors (distinct subjects), what a client does when it
// opens a big mailbox (UID, FLAGS, size, date; envelopes), downloads it
// (BODY.PEEK[] by 1000), and searches it (SUBJECT, UNSEEN, BODY; and the
// three with 4 clients at once, SearchPhase4). The client logs in over
// plaintext loopback, as the shared bench does, and only counts the bytes
// of the answers (no parsing), so that the figures are the server's.
func BenchmarkMailbox10k(b *testing.B) {
	env := newEnv(b, 0)
	const n = 10000
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 10 {
				subject := fmt.Sprintf("bench message %d", i)
				body := mail(subject) + strings.Repeat("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod\r\n", 130)
				if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(body), nil, time.Time{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	bc := dialBench(b, env)
	run := bc.run
	for _, bm := range []struct{ name, command string }{
		{"FetchMeta", "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)"},
		{"FetchEnvelope", "FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)"},
		{"SearchSubject", `SEARCH SUBJECT "bench message 4242"`},
		{"SearchUnseen", "SEARCH UNSEEN"},
		{"SearchBody", `SEARCH BODY "needle4242"`},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				size, _ := run(b, bm.command)
				b.SetBytes(size)
			}
		})
	}
	b.Run("StoreFlagged", func(b *testing.B) {
		for b.Loop() {
			run(b, `STORE 1:* +FLAGS.SILENT (\Flagged)`)
			run(b, `STORE 1:* -FLAGS.SILENT (\Flagged)`)
		}
	})
	b.Run("FetchBodies", func(b *testing.B) {
		for b.Loop() {
			var total int64
			for lo := 1; lo <= n; lo += 1000 {
				size, lines := run(b, fmt.Sprintf("FETCH %d:%d (BODY.PEEK[])", lo, lo+999))
				if lines < 1000 {
					b.Fatalf("FETCH: %d lines", lines)
				}
				total += size
			}
			b.SetBytes(total)
		}
	})
	// The store and search phases of the shared bench with 4 clients:
	// together, each runs the phase's commands in turn. In the search
	// phase, SUBJECT, UNSEEN, then BODY (a scan of every body), so that
	// one client's UNSEEN runs beside the others' scans. Reported: the
	// median time of each command over clients and iterations.
	var cs []*benchClient // opened after the benchmarks of one client
	clients := func() []*benchClient {
		for len(cs) < 4 {
			cs = append(cs, dialBench(b, env))
		}
		return cs
	}
	b.Run("StorePhase4", func(b *testing.B) {
		runPhase(b, clients(), []benchCommand{
			{"store", `STORE 1:* +FLAGS.SILENT (\Flagged)`},
			{"unstore", `STORE 1:* -FLAGS.SILENT (\Flagged)`},
		})
	})
	b.Run("SearchPhase4", func(b *testing.B) {
		runPhase(b, clients(), []benchCommand{
			{"subject", `SEARCH SUBJECT "bench message 4242"`},
			{"unseen", "SEARCH UNSEEN"},
			{"body", `SEARCH BODY "needle4242"`},
		})
	})
}

type benchCommand struct{ name, command string }

// runPhase runs commands on every client at once, each client in turn,
// and reports the median time of each command, in ms.
func runPhase(b *testing.B, cs []*benchClient, commands []benchCommand) {
	times := make([][]time.Duration, len(commands))
	for b.Loop() {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i, cmd := range commands {
					t0 := time.Now()
					c.run(b, cmd.command)
					d := time.Since(t0)
					mu.Lock()
					times[i] = append(times[i], d)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	for i, cmd := range commands {
		slices.Sort(times[i])
		b.ReportMetric(float64(times[i][len(times[i])/2])/1e6, cmd.name+"-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// benchClient is a plaintext loopback IMAP client, logged in as alice
// with INBOX selected, that only counts the bytes of the answers.
type benchClient struct {
	c    net.Conn
	br   *bufio.Reader
	tagN int
}

func dialBench(b testing.TB, env *testEnv) *benchClient {
	c, err := net.Dial("tcp", env.plainAddr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	bc := &benchClient{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	bc.br.ReadString('\n')
	bc.run(b, "LOGIN "+alice+" "+alicePW)
	bc.run(b, "SELECT INBOX")
	return bc
}

// run sends a command and reads its answer up to the tagged OK, skipping
// literals; it returns the bytes read and the answer's lines. Errors are
// reported with b.Error (it may run on other goroutines).
func (bc *benchClient) run(b testing.TB, command string) (int64, int) {
	bc.tagN++
	tag := fmt.Sprintf("t%d", bc.tagN)
	fmt.Fprintf(bc.c, "%s %s\r\n", tag, command)
	var total int64
	lines := 0
	for {
		line, err := bc.br.ReadSlice('\n')
		if err != nil {
			b.Errorf("%s: %v", command, err)
			return total, lines
		}
		total += int64(len(line))
		lines++
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			if !bytes.HasPrefix(line, []byte(tag+" OK")) {
				b.Errorf("%s: %s", command, line)
			}
			return total, lines
		}
		if m := literalEnd.FindSubmatch(line); m != nil {
			size, _ := strconv.ParseInt(string(m[1]), 10, 64)
			if _, err := bc.br.Discard(int(size)); err != nil {
				b.Errorf("%s: %v", command, err)
				return total, lines
			}
			total += size
		}
	}
}

var literalEnd = regexp.MustCompile(`\{(\d+)\}\r\n$`)

// TestExamineReadOnly: EXAMINE neither changes flags nor sets \Seen.
func TestExamineReadOnly(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "read only")
	c := env.dialTLS(t, nil)
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &goimap.FetchItemBodySection{}
	if _, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{section}}).Collect(); err != nil {
		t.Fatal(err)
	}
	err := c.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close()
	if err == nil {
		t.Error("STORE in an EXAMINEd mailbox succeeded")
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Errorf("CLOSE = %v", err)
	}
	_, msgs, _ := env.st.Messages(context.Background(), alice, "INBOX")
	if len(msgs) != 1 || len(msgs[0].Flags) != 0 {
		t.Errorf("messages after EXAMINE = %+v, want one without flags", msgs)
	}
	// SELECT (read-write): FETCH BODY[] sets \Seen and reports it.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(got) != 1 || !slices.Contains(got[0].Flags, goimap.FlagSeen) {
		t.Errorf("FETCH BODY[] = %+v, %v; want FLAGS with \\Seen", got, err)
	}
}

// rawSession is a line-level IMAP client over TLS, to check exact
// response order.
type rawSession struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (env *testEnv) raw(t *testing.T) *rawSession {
	t.Helper()
	c, err := tls.Dial("tcp", env.tlsAddr, env.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := &rawSession{t: t, c: c, br: bufio.NewReader(c)}
	r.line() // greeting
	return r
}

func (r *rawSession) line() string {
	r.t.Helper()
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a tagged command and returns the untagged responses.
func (r *rawSession) cmd(tag, command string) []string {
	r.t.Helper()
	if _, err := fmt.Fprintf(r.c, "%s %s\r\n", tag, command); err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				r.t.Fatalf("%s: %s", command, l)
			}
			return out
		}
		out = append(out, l)
	}
}

// TestNoFetchBeyondExists: messages delivered while a client is busy are
// never mentioned in FETCH responses before their EXISTS.
func TestNoFetchBeyondExists(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "one")
	env.deliver(t, alice, "two")
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	for i := 0; i < 3; i++ {
		env.deliver(t, alice, fmt.Sprint("late ", i))
	}
	time.Sleep(100 * time.Millisecond) // the background refresh queues EXISTS
	got := r.cmd("c", "FETCH 1:* (UID)")
	// This session is the first to see the new messages: \Recent is its.
	want := []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 5 EXISTS", "* 5 RECENT"}
	if !slices.Equal(got, want) {
		t.Errorf("FETCH 1:* = %q, want %q", got, want)
	}
	got = r.cmd("d", "UID FETCH 4:* (FLAGS)")
	want = []string{`* 4 FETCH (UID 4 FLAGS (\Recent))`, `* 5 FETCH (UID 5 FLAGS (\Recent))`}
	if !slices.Equal(got, want) {
		t.Errorf("UID FETCH 4:* = %q, want %q", got, want)
	}
}

// TestRenameSelected: a session keeps working on its selected mailbox
// after another session renames it.
func TestRenameSelected(t *testing.T) {
	env := newEnv(t, 0)
	ctx := context.Background()
	if err := env.st.CreateMailbox(ctx, alice, "Work", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := env.st.Deliver(ctx, alice, "Work", strings.NewReader(mail("work")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT Work")
	if err := env.st.RenameMailbox(ctx, alice, "Work", "Job"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	got := r.cmd("c", "STORE 1 +FLAGS (\\Flagged)")
	if want := []string{`* 1 FETCH (UID 1 FLAGS (\Flagged \Recent))`}; !slices.Equal(got, want) {
		t.Errorf("STORE after rename = %q, want %q", got, want)
	}
	_, msgs, err := env.st.Messages(ctx, alice, "Job")
	if err != nil || len(msgs) != 1 || !msgs[0].HasFlag(`\Flagged`) {
		t.Errorf("Job = %+v, %v", msgs, err)
	}
}

// TestAuthenticateBeforeTLS: AUTHENTICATE PLAIN in plaintext is refused
// like LOGIN, without reaching the authenticator.
func TestAuthenticateBeforeTLS(t *testing.T) {
	env := newEnv(t, 0)
	c, err := net.Dial("tcp", env.farAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	br.ReadString('\n')
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + alicePW))
	fmt.Fprintf(c, "a AUTHENTICATE PLAIN %s\r\n", creds)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "a NO") {
		t.Errorf("AUTHENTICATE in plaintext: %q, want a NO", line)
	}
	env.auth.mu.Lock()
	defer env.auth.mu.Unlock()
	if len(env.auth.remotes) != 0 {
		t.Errorf("the authenticator saw a plaintext password")
	}
}

// TestCopyMoveNothing: COPY and MOVE of messages that do not exist
// succeed without a COPYUID (RFC 4315 has no syntax for empty sets).
func TestCopyMoveNothing(t *testing.T) {
	env := newEnv(t, 0)
	env.deliver(t, alice, "only")
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	if got := r.cmd("c", "UID COPY 7:9 Trash"); len(got) != 0 {
		t.Errorf("UID COPY of nothing: %q", got)
	}
	if got := r.cmd("d", "UID MOVE 7:9 Trash"); len(got) != 0 {
		t.Errorf("UID MOVE of nothing: %q", got)
	}
	got := r.cmd("e", "UID MOVE 1 Trash")
	if len(got) != 2 || !strings.HasPrefix(got[0], "* OK [COPYUID ") || got[1] != "* 1 EXPUNGE" {
		t.Errorf("UID MOVE 1 = %q", got)
	}
}

// TestAuthenticatePlain: SASL PLAIN with an initial response (RFC 4959),
// as Apple Mail and Thunderbird log in, goes through the Authenticator.
func TestAuthenticatePlain(t *testing.T) {
	env := newEnv(t, 0)
	r := env.raw(t)
	bad := base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00wrong"))
	fmt.Fprintf(r.c, "a AUTHENTICATE PLAIN %s\r\n", bad)
	if l := r.line(); !strings.HasPrefix(l, "a NO") {
		t.Errorf("wrong password: %q", l)
	}
	good := base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + alicePW))
	r.cmd("b", "AUTHENTICATE PLAIN "+good)
	if got := r.cmd("c", "SELECT INBOX"); !slices.Contains(got, "* 0 EXISTS") {
		t.Errorf("SELECT after AUTHENTICATE = %q", got)
	}
}

// TestQuotaCommands: GETQUOTAROOT and GETQUOTA (RFC 9208) report the
// user's storage in KiB once logged in; before login they are unknown.
func TestQuotaCommands(t *testing.T) {
	env := newEnv(t, 10240)
	env.deliver(t, alice, "quota")
	r := env.raw(t)
	fmt.Fprintf(r.c, "a GETQUOTAROOT INBOX\r\n")
	if l := r.line(); !strings.HasPrefix(l, "a BAD") {
		t.Errorf("GETQUOTAROOT before login: %q, want a BAD", l)
	}
	r = env.raw(t)
	r.cmd("b", "LOGIN "+alice+" "+alicePW)
	got := r.cmd("c", "GETQUOTAROOT INBOX")
	want := []string{`* QUOTAROOT INBOX ""`, `* QUOTA "" (STORAGE 1 10)`}
	if !slices.Equal(got, want) {
		t.Errorf("GETQUOTAROOT = %q, want %q", got, want)
	}
	if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(strings.Repeat("x", 4096)), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got = r.cmd("d", `GETQUOTA ""`)
	if want := []string{`* QUOTA "" (STORAGE 5 10)`}; !slices.Equal(got, want) {
		t.Errorf("GETQUOTA = %q, want %q", got, want)
	}
	fmt.Fprintf(r.c, "e SETQUOTA \"\" (STORAGE 1)\r\n")
	if l := r.line(); !strings.HasPrefix(l, "e NO") {
		t.Errorf("SETQUOTA: %q, want e NO", l)
	}
	r.cmd("f", "NOOP") // still in sync
}

// TestFetchHeaderCache: FETCH ENVELOPE, BODY[HEADER] and
// BODY[HEADER.FIELDS] answer the same from the envelope made at delivery,
// from the header cached in the index (a message delivered without the
// envelope), and from the file (a header too long to cache); SEARCH finds
// by header in every case.
func TestFetchHeaderCache(t *testing.T) {
	env := newEnv(t, 0)
	long := "X-Long: " + strings.Repeat("y", store.MaxCachedHeader) + "\r\n"
	cached := mail("cache hit")
	uncached := long + mail("cache hit")
	bodies := []string{cached, uncached, cached}
	for i, body := range bodies {
		if i == 2 {
			env.st.SetHeaderSummary(nil) // as in stores of older versions
		}
		if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(body), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	c := env.dialTLS(t, nil)
	if err := c.Login(alice, alicePW).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	header := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, Peek: true}
	fields := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject", "Date"}, Peek: true}
	for _, opts := range []*goimap.FetchOptions{
		{Envelope: true, BodySection: []*goimap.FetchItemBodySection{header, fields}},
		{Envelope: true},
	} {
		msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 3}}, opts).Collect()
		if err != nil || len(msgs) != 3 {
			t.Fatalf("FETCH = %v, %v", msgs, err)
		}
		checkFetchedHeaders(t, msgs, bodies, len(opts.BodySection) > 0, header, fields)
	}
	data, err := c.Search(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "CACHE HIT"}}}, nil).Wait()
	if err != nil || !slices.Equal(data.AllSeqNums(), []uint32{1, 2, 3}) {
		t.Errorf("SEARCH SUBJECT = %v, %v", data.AllSeqNums(), err)
	}
	data, err = c.Search(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "miss"}}}, nil).Wait()
	if err != nil || len(data.AllSeqNums()) != 0 {
		t.Errorf("SEARCH SUBJECT miss = %v, %v", data.AllSeqNums(), err)
	}
}

func checkFetchedHeaders(t *testing.T, msgs []*imapclient.FetchMessageBuffer, bodies []string, sections bool, header, fields *goimap.FetchItemBodySection) {
	t.Helper()
	wantEnv := &goimap.Envelope{
		Date:      time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC),
		Subject:   "cache hit",
		From:      []goimap.Address{{Name: "Bob", Mailbox: "bob", Host: "example.test"}},
		To:        []goimap.Address{{Name: "Alice", Mailbox: "alice", Host: "example.test"}},
		MessageID: "cache-hit@example.test",
	}
	// Sender and Reply-To default to From (RFC 9051 section 7.5.2).
	wantEnv.Sender, wantEnv.ReplyTo = wantEnv.From, wantEnv.From
	wantFields := "Subject: cache hit\r\nDate: Mon, 23 Nov 2026 16:00:00 +0000\r\n\r\n"
	for i, body := range bodies {
		m := msgs[i]
		env := *m.Envelope
		if !env.Date.Equal(wantEnv.Date) {
			t.Errorf("message %d: envelope date %v", i+1, env.Date)
		}
		env.Date = wantEnv.Date
		if !reflect.DeepEqual(&env, wantEnv) {
			t.Errorf("message %d: envelope %+v, want %+v", i+1, &env, wantEnv)
		}
		if !sections {
			continue
		}
		if got, want := string(m.FindBodySection(header)), body[:strings.Index(body, "\r\n\r\n")+4]; got != want {
			t.Errorf("message %d: BODY[HEADER] = %.100q, want %.100q", i+1, got, want)
		}
		if got := string(m.FindBodySection(fields)); got != wantFields {
			t.Errorf("message %d: BODY[HEADER.FIELDS] = %q, want %q", i+1, got, wantFields)
		}
	}
}

// TestSeqNumsWithPendingUpdates: while another session's EXPUNGE or a new
// message is not yet announced to a session, its SEARCH and FETCH keep
// numbering messages as its client knows them; once announced (NOOP),
// the new numbering applies. Flag changes made meanwhile by the other
// session change no number.
func TestSeqNumsWithPendingUpdates(t *testing.T) {
	env := newEnv(t, 0)
	for i := 1; i <= 5; i++ {
		env.deliver(t, alice, fmt.Sprint("seq ", i))
	}
	a, b := env.raw(t), env.raw(t)
	for _, r := range []*rawSession{a, b} {
		r.cmd("l", "LOGIN "+alice+" "+alicePW)
		r.cmd("s", "SELECT INBOX")
	}
	search := func(tag string) string {
		got := a.cmd(tag, "SEARCH ALL")
		for _, l := range got {
			if strings.HasPrefix(l, "* SEARCH") {
				return l
			}
		}
		t.Fatalf("SEARCH = %q", got)
		return ""
	}
	b.cmd("b1", `STORE 1:* +FLAGS.SILENT (\Flagged)`)
	if got := search("a1"); got != "* SEARCH 1 2 3 4 5" {
		t.Errorf("after flag changes: %q", got)
	}
	a.cmd("a2", "NOOP")
	b.cmd("b2", `STORE 2 +FLAGS.SILENT (\Deleted)`)
	b.cmd("b3", "EXPUNGE")
	if got := search("a3"); got != "* SEARCH 1 3 4 5" {
		t.Errorf("with an EXPUNGE pending: %q, want the client's numbers", got)
	}
	if got := a.cmd("a4", "FETCH 5 (UID)"); !slices.Contains(got, "* 5 FETCH (UID 5)") {
		t.Errorf("FETCH 5 with an EXPUNGE pending = %q", got)
	}
	if got := a.cmd("a5", "NOOP"); !slices.Contains(got, "* 2 EXPUNGE") {
		t.Errorf("NOOP = %q, want * 2 EXPUNGE", got)
	}
	if got := search("a6"); got != "* SEARCH 1 2 3 4" {
		t.Errorf("after the EXPUNGE: %q", got)
	}
	env.deliver(t, alice, "seq 6")
	b.cmd("b4", "NOOP")
	time.Sleep(100 * time.Millisecond) // the delivery reaches the shared mailbox
	// The answer is computed before the EXISTS that follows it.
	// b, which polled first, has the new message's \Recent.
	if got := a.cmd("a7", "SEARCH ALL"); !slices.Equal(got, []string{"* SEARCH 1 2 3 4", "* 5 EXISTS", "* 4 RECENT"}) {
		t.Errorf("SEARCH with a new message not yet announced = %q", got)
	}
	if got := search("a9"); got != "* SEARCH 1 2 3 4 5" {
		t.Errorf("after the EXISTS: %q", got)
	}
}

// TestFetchLinesAsLibrary: the FETCH responses made without the library
// (UID, FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE) are those the library
// makes, byte for byte, for messages of every kind of header.
func TestFetchLinesAsLibrary(t *testing.T) {
	env := newEnv(t, 0)
	long := strings.Repeat("x", 5000)
	for _, hdr := range []string{
		"From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 16:00:00 +0000\r\nMessage-ID: <a@example.test>\r\n",
		"From: \"Bo\\\\b \\\"the\\\" B\" <bob@example.test>\r\nSubject: say \"hi\" \\ there\r\nDate: 1 Jan 2024 00:00 +0530\r\n",
		"From: =?utf-8?q?Jos=C3=A9?= <jose@example.test>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n",
		"From: jos\xc3\xa9@example.test\r\nSubject: utf8 mailbox\r\n",
		"From: a@example.test, \"B\" <b@example.test>\r\nSender: s@example.test\r\nReply-To: r@example.test\r\nTo: team: c@example.test, d@example.test;\r\nCc: e@example.test\r\nBcc: f@example.test\r\nIn-Reply-To: <x@y> <z@w>\r\n",
		"X-Nothing: at all\r\n",
		"Subject: tab\there\r\nFrom: <nobody@example.test>\r\n",
		"Subject: " + long + "\r\n",
		"Date: Tue, 24 Nov 2026 01:02:03 -0930\r\nMessage-ID: <\"q\\\\\"@example.test>\r\n",
	} {
		if _, err := env.st.Deliver(context.Background(), alice, "", strings.NewReader(hdr+"\r\nbody\r\n"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	r := env.raw(t)
	r.cmd("a", "LOGIN "+alice+" "+alicePW)
	r.cmd("b", "SELECT INBOX")
	r.cmd("c", `STORE 1 +FLAGS (\Seen \Flagged $Label1)`)
	r.cmd("d", `STORE 2 +FLAGS (\Answered)`)
	r.cmd("e", `STORE 3 +FLAGS (foo!bar)`)
	defer imap.SetRawFetch(true)
	for i, command := range []string{
		"FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)",
		"FETCH 1:* ALL",
		"FETCH 1:* FAST",
		"UID FETCH 1:* (FLAGS)",
		"FETCH 2:4 (ENVELOPE INTERNALDATE)",
		"FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (Subject)])",
	} {
		imap.SetRawFetch(false)
		want := r.cmd(fmt.Sprintf("l%d", i), command)
		imap.SetRawFetch(true)
		got := r.cmd(fmt.Sprintf("r%d", i), command)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s:\ngot  %q\nwant %q", command, got, want)
		}
	}
}

// isExpungeIssued reports whether err is the NO [EXPUNGEISSUED] that
// answers a FETCH of messages another session expunged.
func isExpungeIssued(err error) bool {
	var ie *goimap.Error
	return errors.As(err, &ie) && ie.Type == goimap.StatusResponseTypeNo && ie.Code == "EXPUNGEISSUED"
}
