package spam_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailctl/mailctl/server/smtp"
	"github.com/mailctl/mailctl/server/spam"
	"github.com/mailctl/mailctl/server/spam/spamtest"
	"github.com/mailctl/mailctl/server/store"
)

var (
	rspamdOnce sync.Once
	rspamd     *spamtest.Rspamd
	rspamdErr  error
	rspamdDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if rspamd != nil {
		rspamd.Stop()
	}
	if rspamdDir != "" {
		os.RemoveAll(rspamdDir)
	}
	os.Exit(code)
}

// realRspamd is the package's rspamd, started by the first test that needs it.
func realRspamd(t *testing.T) *spamtest.Rspamd {
	t.Helper()
	rspamdOnce.Do(func() {
		rspamdDir, rspamdErr = os.MkdirTemp("", "mailctl-rspamd-")
		if rspamdErr == nil {
			rspamd, rspamdErr = spamtest.Start(context.Background(), rspamdDir)
		}
	})
	if rspamdErr != nil {
		t.Fatal(rspamdErr)
	}
	return rspamd
}

func message(subject, body string) []byte {
	return []byte("From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@example.org>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n" + body + "\r\n")
}

const hamBody = "Hi Bob, shall we have lunch tomorrow at the usual place near the office?\r\n" +
	"The new menu has a soup of the day and I would like to try it. Let me know what time suits you.\r\n"

var env = smtp.Envelope{RemoteIP: net.ParseIP("192.0.2.10"), Helo: "mx.example.org", From: "alice@example.org", Rcpts: []string{"bob@example.com"}}

func check(t *testing.T, f *spam.Filter, msg []byte) (smtp.Verdict, error) {
	t.Helper()
	return f.CheckMessage(context.Background(), env, bytes.NewReader(msg), int64(len(msg)))
}

func newFilter(t *testing.T, opts spam.Options) *spam.Filter {
	r := realRspamd(t)
	if opts.Client == nil {
		opts.Client = &spam.Client{URL: r.URL, ControllerURL: r.ControllerURL}
	}
	return spam.NewFilter(opts)
}

// TestGTUBERejected: rspamd's reject action is 550 5.7.1 at DATA.
func TestGTUBERejected(t *testing.T) {
	f := newFilter(t, spam.Options{})
	_, err := check(t, f, message("hello", "This is a test.\r\n"+spamtest.GTUBE))
	var serr *gosmtp.SMTPError
	if !errors.As(err, &serr) || serr.Code != 550 || serr.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("GTUBE: got %v, want 550 5.7.1", err)
	}
	if !strings.Contains(serr.Message, "spam") {
		t.Errorf("reply %q does not say spam", serr.Message)
	}
	if st := f.Status(); st.Rejected != 1 || st.Scanned != 1 {
		t.Errorf("status %+v, want 1 scanned, 1 rejected", st)
	}
}

// TestHamAccepted: ordinary mail goes to INBOX with rspamd's result fields.
func TestHamAccepted(t *testing.T) {
	f := newFilter(t, spam.Options{})
	v, err := check(t, f, message("lunch tomorrow", hamBody))
	if err != nil {
		t.Fatal(err)
	}
	if v.Junk {
		t.Errorf("ham filed into Junk: %s", v.Header)
	}
	for _, want := range []string{"X-Spam-Score: ", "X-Spamd-Result: default: False [", "MIME_GOOD("} {
		if !strings.Contains(v.Header, want) {
			t.Errorf("header lacks %q:\n%s", want, v.Header)
		}
	}
	if strings.Contains(v.Header, "X-Spam: Yes") {
		t.Errorf("ham marked as spam:\n%s", v.Header)
	}
	checkFields(t, v.Header)
}

// TestSpamToJunk: the "add header" action files into Junk with X-Spam: Yes.
func TestSpamToJunk(t *testing.T) {
	f := newFilter(t, spam.Options{})
	v, err := check(t, f, message("cheap "+spamtest.SpamSubject, hamBody))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Junk || !strings.Contains(v.Header, "X-Spam: Yes\r\n") || !strings.Contains(v.Header, "MAILCTL_TEST_SPAM(20.00)") {
		t.Errorf("spam: junk=%v header:\n%s", v.Junk, v.Header)
	}
	checkFields(t, v.Header)
}

// TestScoresOverrideActions: reject_score and junk_score decide instead
// of rspamd's actions.
func TestScoresOverrideActions(t *testing.T) {
	// The spam message scores about 20: junk by the action, refused by a
	// reject score of 15.
	f := newFilter(t, spam.Options{RejectScore: 15})
	_, err := check(t, f, message("cheap "+spamtest.SpamSubject, hamBody))
	var serr *gosmtp.SMTPError
	if !errors.As(err, &serr) || serr.Code != 550 {
		t.Fatalf("score 20 with reject_score 15: got %v, want 550", err)
	}
	// With a junk score of 30 it stays in INBOX.
	f = newFilter(t, spam.Options{JunkScore: 30})
	v, err := check(t, f, message("cheap "+spamtest.SpamSubject, hamBody))
	if err != nil || v.Junk {
		t.Fatalf("score 20 with junk_score 30: junk=%v err=%v", v.Junk, err)
	}
}

// checkFields makes sure every line of h is a field or a continuation
// ending in CRLF.
func checkFields(t *testing.T, h string) {
	t.Helper()
	if !strings.HasSuffix(h, "\r\n") {
		t.Fatalf("header does not end in CRLF: %q", h)
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n") {
		if strings.ContainsAny(l, "\r\n") || (l[0] != '\t' && !strings.Contains(l, ": ")) {
			t.Errorf("bad header line %q", l)
		}
	}
}

// TestForgedFieldsRemoved: a sender cannot bring its own X-Spam fields.
func TestForgedFieldsRemoved(t *testing.T) {
	f := newFilter(t, spam.Options{})
	msg := []byte("X-Spam: No\r\nFrom: alice@example.org\r\nx-spamd-result: default: False\r\n [0.00 / 15.00]\r\nSubject: lunch\r\n\r\n" + hamBody + "X-Spam: body\r\n")
	v, err := check(t, f, msg)
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	var off int64
	for _, r := range v.Remove {
		kept = append(kept, msg[off:r[0]]...)
		off = r[1]
	}
	kept = append(kept, msg[off:]...)
	want := "From: alice@example.org\r\nSubject: lunch\r\n\r\n" + hamBody + "X-Spam: body\r\n"
	if string(kept) != want {
		t.Errorf("after removal:\n%q\nwant\n%q", kept, want)
	}
}

// TestUnreachableAccepted: with rspamd down, mail is accepted, marked, and
// the status says since when.
func TestUnreachableAccepted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	client := &spam.Client{URL: dead, Timeout: 2 * time.Second}
	f := spam.NewFilter(spam.Options{Client: client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	before := time.Now()
	v, err := check(t, f, message("hello", spamtest.GTUBE))
	if err != nil {
		t.Fatalf("rspamd down: got %v, want the message accepted", err)
	}
	if v.Junk || !strings.Contains(v.Header, "X-Spam-Scanned: no") {
		t.Errorf("unscanned message: junk=%v header %q", v.Junk, v.Header)
	}
	st := f.Status()
	if st.Unscanned != 1 || st.UnreachableSince == nil || st.UnreachableSince.Before(before) || st.LastError == "" {
		t.Fatalf("status %+v, want unreachable since the check", st)
	}

	// A server that accepts and never answers: the timeout applies.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	client.URL = "http://" + ln.Addr().String()
	client.Timeout = 300 * time.Millisecond
	start := time.Now()
	if _, err := check(t, f, message("hello", hamBody)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hung rspamd held the message %v", d)
	}

	// Back up: the status clears.
	client.URL, client.Timeout = realRspamd(t).URL, 0
	if _, err := check(t, f, message("lunch", hamBody)); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.UnreachableSince != nil || st.Unscanned != 2 || st.Scanned != 1 {
		t.Errorf("status after recovery %+v", st)
	}
}

// nextFails is an smtp.Inbound whose verdicts the filter must keep.
type nextFails struct{ err error }

func (n nextFails) CheckClient(context.Context, smtp.Envelope) error { return nil }
func (n nextFails) CheckRecipient(context.Context, smtp.Envelope, string) error {
	return nil
}
func (n nextFails) CheckMessage(context.Context, smtp.Envelope, io.ReaderAt, int64) (smtp.Verdict, error) {
	return smtp.Verdict{Header: "Authentication-Results: x; none\r\n", Remove: [][2]int64{{0, 3}}}, n.err
}

// TestNextFirst: the inbound checks run first and their header and
// removals are kept; their refusal is final.
func TestNextFirst(t *testing.T) {
	refuse := &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "DMARC"}
	f := newFilter(t, spam.Options{Next: nextFails{err: refuse}})
	if _, err := check(t, f, message("lunch", hamBody)); err != refuse {
		t.Fatalf("got %v, want the inbound refusal", err)
	}
	f = newFilter(t, spam.Options{Next: nextFails{}})
	v, err := check(t, f, message("lunch", hamBody))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.Header, "Authentication-Results: x; none\r\nX-Spam-Score") || len(v.Remove) == 0 || v.Remove[0] != [2]int64{0, 3} {
		t.Errorf("verdict %+v", v)
	}
	if f.Status().Scanned != 1 {
		t.Errorf("not scanned after the inbound checks")
	}
}

// TestLearnerMoves: moving into Junk learns spam, out of it ham, into
// Trash nothing; the counts are rspamd's own.
func TestLearnerMoves(t *testing.T) {
	r := realRspamd(t)
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, "bob", 0); err != nil {
		t.Fatal(err)
	}
	l := spam.NewLearner(&spam.Client{URL: r.URL, ControllerURL: r.ControllerURL}, st, nil)
	defer l.Close()
	spam0, ham0, err := r.Learned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	body := message("offer of the week", "Dear friend, this week only we sell our finest watches, perfumes and "+
		"handbags at a tenth of their price. Order now and pay later, delivery is free to every country. "+
		"Your personal code is "+fmt.Sprint(time.Now().UnixNano())+".") // rspamd refuses to learn the same text twice
	uid, err := st.Deliver(ctx, "bob", "INBOX", bytes.NewReader(body), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Move(ctx, "bob", "INBOX", []uint32{uid}, "Junk")
	if err != nil {
		t.Fatal(err)
	}
	l.Transferred("bob", "INBOX", "Junk", res.DestUIDs)
	waitLearned(t, r, l, spam0+1, ham0, 1)

	// Into Trash: nothing learned.
	res2, err := st.Copy(ctx, "bob", "Junk", res.DestUIDs, "Trash")
	if err != nil {
		t.Fatal(err)
	}
	l.Transferred("bob", "Junk", "Trash", res2.DestUIDs)
	// Back to INBOX: ham (rspamd moves it from one class to the other).
	res3, err := st.Move(ctx, "bob", "Junk", res.DestUIDs, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	l.Transferred("bob", "Junk", "INBOX", res3.DestUIDs)
	waitLearned(t, r, l, spam0, ham0+1, 2)
	if learned, failed := l.Counts(); learned != 2 || failed != 0 {
		t.Errorf("learner counts %d learned, %d failed; want 2, 0", learned, failed)
	}
}

// waitLearned waits for rspamd's counts and the learner's (which counts
// once rspamd answered).
func waitLearned(t *testing.T, r *spamtest.Rspamd, l *spam.Learner, spamN, hamN int, learnedN int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, h, err := r.Learned(context.Background())
		learned, _ := l.Counts()
		if err == nil && s == spamN && h == hamN && learned == learnedN {
			return
		}
		if time.Now().After(deadline) {
			_, failed := l.Counts()
			t.Fatalf("rspamd learned spam %d ham %d (err %v), want %d %d; learner: %d learned, %d failed\nrspamd log:\n%s",
				s, h, err, spamN, hamN, learned, failed, r.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
