package queue_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/queue"
	"github.com/mailctl/mailctl/server/store"
)

// TestStampingDeliverer delivers into a real store through the deliverer
// the daemon uses for submitted local mail.
func TestStampingDeliverer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.EnsureUser(ctx, "alice@example.test", 0); err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureUser(ctx, "full@example.test", 10); err != nil {
		t.Fatal(err)
	}
	dir, err := auth.NewDirectory([]string{"example.test"},
		[]auth.User{{Address: "alice@example.test", PasswordHash: "x"}, {Address: "full@example.test", PasswordHash: "x"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const forged = "Authentication-Results: mx.example.test; dkim=pass\r\n"
	msg := "From: alice@example.test\r\n" + forged + "Subject: s\r\n\r\nbody\r\n"
	var stamped []string
	stamp := func(ctx context.Context, from string, m []byte) (string, [][2]int64, error) {
		stamped = append(stamped, from)
		i := int64(strings.Index(string(m), forged))
		return "Authentication-Results: mx.example.test; spf=pass\r\n", [][2]int64{{i, i + int64(len(forged))}}, nil
	}
	deliver := queue.StampingDeliverer(dir, st, stamp)

	cases := []struct {
		name, from, rcpt string
		want             string // the stored message; "" when refused
		permanent        bool
	}{
		{"submitted", "alice@example.test", "alice@example.test",
			"Authentication-Results: mx.example.test; spf=pass\r\nFrom: alice@example.test\r\nSubject: s\r\n\r\nbody\r\n", false},
		{"DSN not stamped", "", "alice@example.test", msg, false},
		{"unknown recipient", "alice@example.test", "nobody@example.test", "", true},
		{"over quota fails for good", "alice@example.test", "full@example.test", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stamped = nil
			_, before, _ := st.Usage(ctx, "alice@example.test")
			err := deliver(ctx, tc.from, tc.rcpt, strings.NewReader(msg))
			var pe *queue.PermanentError
			if tc.want == "" {
				if err == nil || errors.As(err, &pe) != tc.permanent {
					t.Fatalf("deliver = %v, want an error (permanent %v)", err, tc.permanent)
				}
				return
			}
			if err != nil {
				t.Fatalf("deliver: %v", err)
			}
			if wantStamp := tc.from != ""; (len(stamped) == 1) != wantStamp {
				t.Errorf("stamper called for %q, want called %v", stamped, wantStamp)
			}
			_, msgs, err := st.Messages(ctx, "alice@example.test", "INBOX")
			if err != nil || len(msgs) != before+1 {
				t.Fatalf("Messages = %d, %v; want %d", len(msgs), err, before+1)
			}
			f, err := st.OpenBody(ctx, msgs[len(msgs)-1])
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b, _ := io.ReadAll(f)
			if string(b) != tc.want {
				t.Errorf("stored message:\n%q\nwant\n%q", b, tc.want)
			}
		})
	}
}
