package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

type stored struct {
	user, mailbox string
	flags         []string
	body          string
}

type fakeStore struct {
	mu    sync.Mutex
	boxes map[string]bool
	got   []stored
}

func (s *fakeStore) Deliver(_ context.Context, user, mailbox string, body io.Reader, flags []string, _ time.Time) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mailbox != "INBOX" && !s.boxes[mailbox] {
		return 0, fmt.Errorf("deliver to %q: %w", mailbox, store.ErrNoSuchMailbox)
	}
	b, _ := io.ReadAll(body)
	s.got = append(s.got, stored{user, mailbox, flags, string(b)})
	return uint32(len(s.got)), nil
}

type sent struct {
	from string
	to   []string
	body string
}

type fakeQueue struct{ sent []sent }

func (q *fakeQueue) Enqueue(_ context.Context, from string, to []string, body io.Reader) error {
	b, _ := io.ReadAll(body)
	q.sent = append(q.sent, sent{from, to, string(b)})
	return nil
}

type fixture struct {
	f   *Filter
	st  *fakeStore
	q   *fakeQueue
	now time.Time
	dir string
}

func newFixture(t *testing.T, script string) *fixture {
	t.Helper()
	fx := &fixture{st: &fakeStore{boxes: map[string]bool{"Work": true}}, q: &fakeQueue{},
		now: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC), dir: t.TempDir()}
	fx.open(t, script)
	return fx
}

func (fx *fixture) open(t *testing.T, script string) {
	t.Helper()
	f, err := New(Options{Next: fx.st, Hostname: "mx.example.org", DataDir: fx.dir, Now: func() time.Time { return fx.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.SetQueue(fx.q)
	if err := f.SetUsers([]User{{Address: "alice@example.org", Sieve: script}, {Address: "bob@example.org"}}); err != nil {
		t.Fatal(err)
	}
	fx.f = f
}

func (fx *fixture) deliver(t *testing.T, env Envelope, user, msg string) error {
	t.Helper()
	_, err := fx.f.Deliver(WithEnvelope(context.Background(), env), user, "INBOX", strings.NewReader(msg), nil, fx.now)
	return err
}

const plain = "From: carol@other.example\r\nTo: alice@example.org\r\nSubject: lunch\r\nMessage-ID: <m1@other.example>\r\n\r\nhi\r\n"

func TestFilterActions(t *testing.T) {
	script := `require ["fileinto", "imap4flags", "reject", "copy"];
if header :contains "subject" "work" { fileinto :flags "\\Flagged" "Work"; }
elsif header :contains "subject" "missing" { fileinto "Nowhere"; }
elsif header :contains "subject" "spam" { discard; }
elsif header :contains "subject" "fwd" { redirect "bob@elsewhere.example"; }
elsif header :contains "subject" "copy" { redirect :copy "bob@elsewhere.example"; }
elsif header :contains "subject" "go away" { reject "not interested"; }`
	msg := func(subject string) string { return strings.Replace(plain, "lunch", subject, 1) }
	env := Envelope{From: "carol@other.example"}

	t.Run("no script", func(t *testing.T) {
		fx := newFixture(t, script)
		if err := fx.deliver(t, env, "bob@example.org", msg("work")); err != nil {
			t.Fatal(err)
		}
		if len(fx.st.got) != 1 || fx.st.got[0].mailbox != "INBOX" {
			t.Errorf("stored %+v, want INBOX", fx.st.got)
		}
	})
	t.Run("fileinto with flag", func(t *testing.T) {
		fx := newFixture(t, script)
		if err := fx.deliver(t, env, "alice@example.org", msg("work")); err != nil {
			t.Fatal(err)
		}
		if len(fx.st.got) != 1 || fx.st.got[0].mailbox != "Work" || fmt.Sprint(fx.st.got[0].flags) != `[\Flagged]` {
			t.Errorf("stored %+v, want Work with \\Flagged", fx.st.got)
		}
	})
	t.Run("missing mailbox keeps", func(t *testing.T) {
		fx := newFixture(t, script)
		if err := fx.deliver(t, env, "alice@example.org", msg("missing")); err != nil {
			t.Fatal(err)
		}
		if len(fx.st.got) != 1 || fx.st.got[0].mailbox != "INBOX" {
			t.Errorf("stored %+v, want INBOX", fx.st.got)
		}
	})
	t.Run("discard", func(t *testing.T) {
		fx := newFixture(t, script)
		if err := fx.deliver(t, env, "alice@example.org", msg("spam")); err != nil {
			t.Fatal(err)
		}
		if len(fx.st.got) != 0 || len(fx.q.sent) != 0 {
			t.Errorf("stored %+v, sent %+v, want nothing", fx.st.got, fx.q.sent)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		fx := newFixture(t, script)
		if err := fx.deliver(t, env, "alice@example.org", msg("fwd")); err != nil {
			t.Fatal(err)
		}
		if len(fx.st.got) != 0 || len(fx.q.sent) != 1 {
			t.Fatalf("stored %+v, sent %+v, want one redirect", fx.st.got, fx.q.sent)
		}
		s := fx.q.sent[0]
		if s.from != "carol@other.example" || s.to[0] != "bob@elsewhere.example" ||
			!strings.HasPrefix(s.body, "Delivered-To: alice@example.org\r\nFrom: carol") {
			t.Errorf("redirect = %+v", s)
		}
		// The redirected copy coming back is kept, not sent again.
		if err := fx.deliver(t, env, "alice@example.org", s.body); err != nil {
			t.Fatal(err)
		}
		if len(fx.q.sent) != 1 || len(fx.st.got) != 1 {
			t.Errorf("loop: sent %d, stored %d; want 1 and 1", len(fx.q.sent), len(fx.st.got))
		}
	})
	t.Run("redirect copy", func(t *testing.T) {
		fx := newFixture(t, script)
		if err := fx.deliver(t, env, "alice@example.org", msg("copy")); err != nil {
			t.Fatal(err)
		}
		if len(fx.st.got) != 1 || len(fx.q.sent) != 1 {
			t.Errorf("stored %d, sent %d; want 1 and 1", len(fx.st.got), len(fx.q.sent))
		}
	})
	t.Run("reject at SMTP", func(t *testing.T) {
		fx := newFixture(t, script)
		err := fx.deliver(t, Envelope{From: "carol@other.example", CanReject: true}, "alice@example.org", msg("go away"))
		var rej *RejectError
		if !errors.As(err, &rej) || rej.Reason != "not interested" {
			t.Fatalf("err = %v, want a RejectError", err)
		}
		if len(fx.st.got) != 0 || len(fx.q.sent) != 0 {
			t.Errorf("stored %d, sent %d; want nothing", len(fx.st.got), len(fx.q.sent))
		}
	})
	t.Run("reject notice", func(t *testing.T) {
		fx := newFixture(t, script)
		if err := fx.deliver(t, env, "alice@example.org", msg("go away")); err != nil {
			t.Fatal(err)
		}
		if len(fx.st.got) != 0 || len(fx.q.sent) != 1 {
			t.Fatalf("stored %d, sent %d; want a notice only", len(fx.st.got), len(fx.q.sent))
		}
		s := fx.q.sent[0]
		if s.from != "" || s.to[0] != "carol@other.example" || !strings.Contains(s.body, "not interested") {
			t.Errorf("notice = %+v", s)
		}
		// No notice to the null sender.
		if err := fx.deliver(t, Envelope{}, "alice@example.org", msg("go away")); err != nil || len(fx.q.sent) != 1 {
			t.Errorf("null sender: err %v, sent %d", err, len(fx.q.sent))
		}
	})
}

func TestFilterFailingScriptKeeps(t *testing.T) {
	fx := newFixture(t, `require "reject"; keep; reject "no";`)
	if err := fx.deliver(t, Envelope{From: "carol@other.example", CanReject: true}, "alice@example.org", plain); err != nil {
		t.Fatal(err)
	}
	if len(fx.st.got) != 1 || fx.st.got[0].mailbox != "INBOX" {
		t.Errorf("stored %+v, want the message kept", fx.st.got)
	}
}

func TestVacationOncePerPeriodDurable(t *testing.T) {
	fx := newFixture(t, `require "vacation"; vacation :days 3 :subject "Away" "Back soon.";`)
	env := Envelope{From: "carol@other.example"}
	replies := func() int { return len(fx.q.sent) }
	if err := fx.deliver(t, env, "alice@example.org", plain); err != nil {
		t.Fatal(err)
	}
	if replies() != 1 {
		t.Fatalf("%d replies, want 1", replies())
	}
	r := fx.q.sent[0]
	if r.from != "" || r.to[0] != "carol@other.example" || !strings.Contains(r.body, "In-Reply-To: <m1@other.example>") {
		t.Errorf("reply = %+v", r)
	}
	// Reopened (a restart): the record is on disk.
	fx.f.Close()
	fx.open(t, `require "vacation"; vacation :days 3 :subject "Away" "Back soon.";`)
	fx.now = fx.now.Add(71 * time.Hour)
	fx.deliver(t, env, "alice@example.org", plain)
	if replies() != 1 {
		t.Fatalf("%d replies within 3 days, want 1", replies())
	}
	fx.now = fx.now.Add(2 * time.Hour)
	fx.deliver(t, env, "alice@example.org", plain)
	if replies() != 2 {
		t.Fatalf("%d replies after 3 days, want 2", replies())
	}
	// Mail not addressed to the user (a Bcc, a list) gets no reply.
	fx.deliver(t, Envelope{From: "dave@other.example"}, "alice@example.org", strings.Replace(plain, "To: alice@example.org", "To: team@other.example", 1))
	if replies() != 2 {
		t.Errorf("reply to mail not addressed to the user")
	}
	if len(fx.st.got) != 4 {
		t.Errorf("%d messages stored, want every one kept", len(fx.st.got))
	}
	if !bytes.Contains([]byte(fx.q.sent[1].body), []byte("Subject: Away")) {
		t.Errorf("second reply = %s", fx.q.sent[1].body)
	}
}

func TestVacationFromOnlyOwnAddresses(t *testing.T) {
	fx := newFixture(t, `require "vacation"; vacation :from "boss@example.org" "Away.";`)
	fx.deliver(t, Envelope{From: "carol@other.example"}, "alice@example.org", plain)
	if len(fx.q.sent) != 1 || !strings.Contains(fx.q.sent[0].body, "From: alice@example.org\r\n") {
		t.Fatalf("reply = %+v, want it from alice", fx.q.sent)
	}
	fx = newFixture(t, `require "vacation"; vacation :from "Alice <ALICE@example.org>" "Away.";`)
	fx.deliver(t, Envelope{From: "carol@other.example"}, "alice@example.org", plain)
	if len(fx.q.sent) != 1 || !strings.Contains(fx.q.sent[0].body, "From: Alice <ALICE@example.org>\r\n") {
		t.Fatalf("reply = %+v, want the given From", fx.q.sent)
	}
}

func TestFilterMissingJunkKeepsInInbox(t *testing.T) {
	fx := newFixture(t, `require "copy"; redirect :copy "bob@elsewhere.example";`)
	_, err := fx.f.Deliver(WithEnvelope(context.Background(), Envelope{From: "carol@other.example"}),
		"alice@example.org", "Junk", strings.NewReader(plain), nil, fx.now)
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.st.got) != 1 || fx.st.got[0].mailbox != "INBOX" || len(fx.q.sent) != 1 {
		t.Errorf("stored %+v, sent %d; want INBOX and one redirect", fx.st.got, len(fx.q.sent))
	}
}

type failingQueue struct{ calls int }

func (q *failingQueue) Enqueue(context.Context, string, []string, io.Reader) error {
	q.calls++
	return errors.New("queue: disk full")
}

// TestFilterNoRetryAfterEffect: an action that fails after another took
// effect does not make the delivery fail (the sender's retry would store
// the message twice): the message is kept in INBOX. A failure before any
// effect is still a temporary error.
func TestFilterNoRetryAfterEffect(t *testing.T) {
	fx := newFixture(t, `require ["fileinto"]; fileinto "Work"; redirect "bob@elsewhere.example";`)
	q := &failingQueue{}
	fx.f.SetQueue(q)
	if err := fx.deliver(t, Envelope{From: "carol@other.example"}, "alice@example.org", plain); err != nil {
		t.Fatalf("delivery failed after fileinto took effect (a retry would duplicate it): %v", err)
	}
	var boxes []string
	for _, g := range fx.st.got {
		boxes = append(boxes, g.mailbox)
	}
	if strings.Join(boxes, ",") != "Work,INBOX" || q.calls != 1 {
		t.Errorf("stored in %v, %d redirect tries; want Work then INBOX (kept), 1 try", boxes, q.calls)
	}

	fx = newFixture(t, `redirect "bob@elsewhere.example"; keep;`)
	fx.f.SetQueue(&failingQueue{})
	if err := fx.deliver(t, Envelope{From: "carol@other.example"}, "alice@example.org", plain); err == nil {
		t.Errorf("a redirect failing before anything took effect: no error, want a temporary failure")
	}
	if len(fx.st.got) != 0 {
		t.Errorf("stored %+v after the first action failed", fx.st.got)
	}
}
