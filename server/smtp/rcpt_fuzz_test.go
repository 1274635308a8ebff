package smtp

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
)

type nopStore struct{}

func (nopStore) Deliver(ctx context.Context, user, mailbox string, body io.Reader, flags []string, date time.Time) (uint32, error) {
	return 1, nil
}

type nopQueue struct{}

func (nopQueue) Enqueue(ctx context.Context, from string, to []string, body io.Reader) error {
	return nil
}

// FuzzRcpt checks the relay rule on any recipient string that go-smtp could
// hand over: an unauthenticated session never gets a remote recipient, and
// whatever it accepts resolves to local users only.
func FuzzRcpt(f *testing.F) {
	dir, err := auth.NewDirectory([]string{"example.test"}, []auth.User{{Address: "alice@example.test"}},
		[]auth.Alias{{Address: "postmaster@example.test", To: []string{"alice@example.test"}}})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(Options{Hostname: "mx.example.test", Store: nopStore{}, Directory: dir, Queue: nopQueue{},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"alice@example.test", "victim@remote.example", "a%b@example.test", "a@example.test@b.c",
		"x!y@example.test", "a@[1.2.3.4]", "ALICE@EXAMPLE.TEST", "postmaster@example.test.", "alice+x@example.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rcpt string) {
		se := &session{s: srv, log: srv.log}
		se.Reset()
		if err := se.Rcpt(rcpt, nil); err != nil {
			if len(se.rcpts) != 0 || len(se.users) != 0 {
				t.Fatalf("Rcpt(%q) refused but recorded recipients", rcpt)
			}
			return
		}
		if len(se.outbound) != 0 {
			t.Fatalf("Rcpt(%q) relayed to %v", rcpt, se.outbound)
		}
		if !se.users["alice@example.test"] || len(se.users) != 1 {
			t.Fatalf("Rcpt(%q) accepted with users %v", rcpt, se.users)
		}
		if !strings.HasSuffix(strings.ToLower(rcpt), "@example.test") {
			t.Fatalf("Rcpt(%q) accepted an address outside example.test", rcpt)
		}
	})
}
