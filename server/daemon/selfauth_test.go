package daemon

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/store"
)

// TestSubmissionDirectory resolves recipients as the submission servers
// see them, with a real store holding a full mailbox.
func TestSubmissionDirectory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const fill = "Subject: x\r\n\r\nfills the quota exactly\r\n"
	for u, quota := range map[string]int64{"alice@example.test": 0, "full@example.test": int64(len(fill))} {
		if err := st.EnsureUser(ctx, u, quota); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Deliver(ctx, "full@example.test", "INBOX", strings.NewReader(fill), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	dir, err := auth.NewDirectory([]string{"example.test"},
		[]auth.User{{Address: "alice@example.test", PasswordHash: "x"}, {Address: "full@example.test", PasswordHash: "x"}},
		[]auth.Alias{{Address: "team@example.test", To: []string{"alice@example.test", "someone@example.net"}}})
	if err != nil {
		t.Fatal(err)
	}
	sd := submissionDirectory{dir, st}
	cases := []struct {
		addr          string
		users, remote []string
		err           error
	}{
		{addr: "alice@example.test", remote: []string{"alice@example.test"}},
		{addr: "team@example.test", remote: []string{"someone@example.net", "alice@example.test"}},
		{addr: "full@example.test", users: []string{"full@example.test"}},
		{addr: "nobody@example.test", err: auth.ErrUnknownRecipient},
		{addr: "someone@example.net", err: auth.ErrNotLocal},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			res, err := sd.Resolve(tc.addr)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Resolve(%s) error = %v, want %v", tc.addr, err, tc.err)
			}
			if err != nil {
				return
			}
			slices.Sort(res.Remote)
			slices.Sort(tc.remote)
			if !slices.Equal(res.Users, tc.users) || !slices.Equal(res.Remote, tc.remote) {
				t.Errorf("Resolve(%s) = users %v remote %v, want users %v remote %v", tc.addr, res.Users, res.Remote, tc.users, tc.remote)
			}
		})
	}
}
