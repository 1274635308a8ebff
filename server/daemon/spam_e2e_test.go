package daemon_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/spam/spamtest"
)

func spamMessage(subject, body string) []byte {
	return []byte(fmt.Sprintf("From: Sender <sender@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: %s\r\n"+
		"Message-ID: <%d@elsewhere.test>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n%s\r\n", subject, time.Now().UnixNano(), body))
}

const lunch = "Hi Alice, shall we have lunch tomorrow at the usual place near the office?\r\n" +
	"The new menu has a soup of the day and I would like to try it. Let me know what time suits you."

// TestServeSpam runs the real binary with Debian's rspamd: over SMTP on
// port 25 GTUBE is refused at DATA and stored nowhere, ham lands in INBOX
// and a spam-scored message in Junk, both with rspamd's fields; IMAP MOVE
// into and out of Junk teaches rspamd; with rspamd stopped mail is still
// accepted, marked, and the status says since when.
func TestServeSpam(t *testing.T) {
	rdir := t.TempDir()
	r, err := spamtest.Start(context.Background(), rdir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	cfg.Spam = &config.Spam{Rspamd: true, URL: r.URL, ControllerURL: r.ControllerURL, Timeout: config.Duration(10 * time.Second)}
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	pool := roots(t, cfg.DataDir)
	mx, imaps := srv.addr("smtp"), srv.addr("imaps")

	// GTUBE: 550 5.7.1 at DATA.
	err = sendOne(mx, spamMessage("hello", "Test.\r\n"+spamtest.GTUBE))
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "5.7.1") {
		t.Fatalf("GTUBE: got %v, want 550 5.7.1", err)
	}
	// Ham to INBOX, spam to Junk.
	if err := sendOne(mx, spamMessage("lunch tomorrow", lunch)); err != nil {
		t.Fatalf("ham: %v", err)
	}
	if err := sendOne(mx, spamMessage("cheap "+spamtest.SpamSubject, lunch)); err != nil {
		t.Fatalf("spam: %v", err)
	}
	inbox := fetchBodies(t, imaps, pool, "alice@example.test", "alice-pw", "INBOX")
	junk := fetchBodies(t, imaps, pool, "alice@example.test", "alice-pw", "Junk")
	if len(inbox) != 1 || len(junk) != 1 {
		t.Fatalf("INBOX has %d messages, Junk %d; want 1 and 1 (GTUBE stored nowhere)", len(inbox), len(junk))
	}
	if headerValue(inbox[0], "Subject") != "lunch tomorrow" || !strings.HasPrefix(headerValue(inbox[0], "X-Spamd-Result"), "default: False [") ||
		headerValue(inbox[0], "X-Spam") != "" {
		t.Errorf("INBOX message:\n%s", inbox[0])
	}
	if !strings.Contains(headerValue(junk[0], "Subject"), spamtest.SpamSubject) || headerValue(junk[0], "X-Spam") != "Yes" ||
		!strings.HasPrefix(headerValue(junk[0], "X-Spamd-Result"), "default: True [") {
		t.Errorf("Junk message:\n%s", junk[0])
	}

	// IMAP MOVE out of Junk: ham learned; into Junk: spam learned.
	ctx := context.Background()
	spam0, ham0, err := r.Learned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := dialIMAPS(t, imaps, pool, nil)
	if err := c.Login("alice@example.test", "alice-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Junk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(goimap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Fatalf("MOVE Junk -> INBOX: %v", err)
	}
	waitRspamdLearned(t, r, spam0, ham0+1)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(goimap.SeqSetNum(1), "Junk").Wait(); err != nil {
		t.Fatalf("MOVE INBOX -> Junk: %v", err)
	}
	waitRspamdLearned(t, r, spam0+1, ham0+1)

	// The learner counts once rspamd answered, just after rspamd counts.
	st := serverStatus(t, srv)
	for deadline := time.Now().Add(5 * time.Second); st.Spam != nil && st.Spam.Learned < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		st = serverStatus(t, srv)
	}
	if s := st.Spam; s == nil || s.Scanned != 3 || s.Rejected != 1 || s.Junk != 1 || s.Unscanned != 0 || s.UnreachableSince != nil || s.Learned != 2 {
		t.Errorf("status spam = %+v", st.Spam)
	}

	// rspamd down: accepted, marked, counted.
	r.Stop()
	before := time.Now()
	if err := sendOne(mx, spamMessage("while rspamd is down", lunch)); err != nil {
		t.Fatalf("rspamd down: %v, want the message accepted", err)
	}
	inbox = fetchBodies(t, imaps, pool, "alice@example.test", "alice-pw", "INBOX")
	last := inbox[len(inbox)-1]
	if headerValue(last, "Subject") != "while rspamd is down" || !strings.HasPrefix(headerValue(last, "X-Spam-Scanned"), "no") {
		t.Errorf("message accepted while rspamd is down:\n%s", last)
	}
	st = serverStatus(t, srv)
	if s := st.Spam; s == nil || s.Unscanned != 1 || s.UnreachableSince == nil || s.UnreachableSince.Before(before.Add(-time.Second)) || s.LastError == "" {
		t.Errorf("status spam while rspamd is down = %+v", st.Spam)
	}
}

func serverStatus(t *testing.T, srv *server) *daemon.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := daemon.QueryStatus(ctx, srv.socket)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func waitRspamdLearned(t *testing.T, r *spamtest.Rspamd, spamN, hamN int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, h, err := r.Learned(context.Background())
		if err == nil && s == spamN && h == hamN {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rspamd learned spam %d, ham %d (err %v); want %d, %d", s, h, err, spamN, hamN)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
