package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// headers returns the cached headers of uids in mailbox, as strings ("-"
// for none).
func headers(t *testing.T, st *store.Store, mailbox string, uids ...uint32) []string {
	t.Helper()
	ctx := context.Background()
	mb, err := st.Mailbox(ctx, alice, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := st.Headers(ctx, alice, mb.ID, uids)
	if err != nil {
		t.Fatalf("Headers = %v", err)
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = "-"
		if h != nil {
			out[i] = string(h)
		}
	}
	return out
}

// oneByte delivers a body one byte per Read, so that the end of the
// header falls across writes.
type oneByte struct{ s string }

func (r *oneByte) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

// TestHeaderCaptured: the header cached at delivery is the message up to
// and including the empty line that ends it, whatever the line endings
// and however the body arrives; no header is cached when it is longer
// than MaxCachedHeader.
func TestHeaderCaptured(t *testing.T) {
	long := "X-Long: " + strings.Repeat("a", store.MaxCachedHeader) + "\r\n\r\nbody\r\n"
	tests := []struct {
		name, body, want string
		slow             bool
	}{
		{name: "CRLF", body: "Subject: a\r\nFrom: b@example.test\r\n\r\nbody\r\n\r\nmore\r\n", want: "Subject: a\r\nFrom: b@example.test\r\n\r\n"},
		{name: "CRLF byte by byte", body: "Subject: a\r\n\r\nbody\r\n", want: "Subject: a\r\n\r\n", slow: true},
		{name: "LF", body: "Subject: a\nTo: c@example.test\n\nbody\n", want: "Subject: a\nTo: c@example.test\n\n"},
		{name: "LF byte by byte", body: "Subject: a\n\nbody\n", want: "Subject: a\n\n", slow: true},
		{name: "folded", body: "Subject: a\r\n b\r\n\r\nx", want: "Subject: a\r\n b\r\n\r\n"},
		{name: "no header", body: "\r\nbody only\r\n", want: "\r\n"},
		{name: "no body", body: "Subject: header only\r\n", want: "Subject: header only\r\n"},
		{name: "too long", body: long, want: "-"},
		{name: "too long without body", body: long[:len(long)-10], want: "-"},
	}
	st := newStore(t, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var uid uint32
			var err error
			if tt.slow {
				uid, err = st.Deliver(context.Background(), alice, "", &oneByte{tt.body}, nil, time.Time{})
			} else {
				uid, err = st.Deliver(context.Background(), alice, "", strings.NewReader(tt.body), nil, time.Time{})
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := headers(t, st, store.Inbox, uid)[0]; got != tt.want {
				t.Errorf("cached header = %.80q, want %.80q", got, tt.want)
			}
		})
	}
}

// TestHeaderCacheFollowsMessages: COPY, MOVE, EXPUNGE, rename and
// delete of mailboxes keep the cache in step with the messages.
func TestHeaderCacheFollowsMessages(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	u1 := deliver(t, st, "", msg("one"))
	u2 := deliver(t, st, "", msg("two"))
	u3 := deliver(t, st, "", msg("three"))
	hdr := func(subject string) string { m := msg(subject); return m[:strings.Index(m, "\r\n\r\n")+4] }

	if got, want := headers(t, st, store.Inbox, u1, u2, u3, 99), []string{hdr("one"), hdr("two"), hdr("three"), "-"}; !slices.Equal(got, want) {
		t.Fatalf("INBOX headers = %q, want %q", got, want)
	}
	cp, err := st.Copy(ctx, alice, store.Inbox, []uint32{u1, u2}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	mv, err := st.Move(ctx, alice, store.Inbox, []uint32{u3}, "Trash")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := headers(t, st, "Archive", cp.DestUIDs...), []string{hdr("one"), hdr("two")}; !slices.Equal(got, want) {
		t.Errorf("copied headers = %q, want %q", got, want)
	}
	if got, want := headers(t, st, "Trash", mv.DestUIDs...), []string{hdr("three")}; !slices.Equal(got, want) {
		t.Errorf("moved header = %q, want %q", got, want)
	}
	if got, want := headers(t, st, store.Inbox, u1, u2, u3), []string{hdr("one"), hdr("two"), "-"}; !slices.Equal(got, want) {
		t.Errorf("INBOX headers after move = %q, want %q", got, want)
	}
	if _, err := st.SetFlags(ctx, alice, store.Inbox, []uint32{u1}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(ctx, alice, store.Inbox, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := headers(t, st, store.Inbox, u1, u2), []string{"-", hdr("two")}; !slices.Equal(got, want) {
		t.Errorf("INBOX headers after expunge = %q, want %q", got, want)
	}
	if err := st.RenameMailbox(ctx, alice, "Archive", "Old"); err != nil {
		t.Fatal(err)
	}
	if got, want := headers(t, st, "Old", cp.DestUIDs...), []string{hdr("one"), hdr("two")}; !slices.Equal(got, want) {
		t.Errorf("headers after rename = %q, want %q", got, want)
	}
	old, err := st.Mailbox(ctx, alice, "Old")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMailbox(ctx, alice, "Old"); err != nil {
		t.Fatal(err)
	}
	if hs, err := st.Headers(ctx, alice, old.ID, cp.DestUIDs); err != nil || hs[0] != nil || hs[1] != nil {
		t.Errorf("headers of a deleted mailbox = %q, %v", hs, err)
	}
}

// TestStoreWithoutHeaderCache: a store written before the header cache
// existed (no hdrs bucket) opens, serves its messages (Headers reports
// them as not cached), and caches new deliveries; copies of old messages
// stay uncached rather than wrong.
func TestStoreWithoutHeaderCache(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	old := deliver(t, st, "", msg("old"))
	if err := store.DropHeaderCache(st); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	_, msgs, err := st.Messages(ctx, alice, store.Inbox)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Messages = %v, %v", msgs, err)
	}
	if got := readBody(t, st, msgs[0]); got != msg("old") {
		t.Errorf("body = %q", got)
	}
	cp, err := st.Copy(ctx, alice, store.Inbox, []uint32{old}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	fresh := deliver(t, st, "", msg("new"))
	if got, want := headers(t, st, store.Inbox, old, fresh), []string{"-", "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: new\r\n\r\n"}; !slices.Equal(got, want) {
		t.Errorf("headers = %q, want %q", got, want)
	}
	if got := headers(t, st, "Archive", cp.DestUIDs...); !slices.Equal(got, []string{"-"}) {
		t.Errorf("header of a copy of an old message = %q", got)
	}
}

// TestOpenBodyAfterExpunge: the body of an expunged message is gone with
// os.ErrNotExist, and a file opened before the expunge stays readable.
func TestOpenBodyAfterExpunge(t *testing.T) { forBodyKinds(t, testOpenBodyAfterExpunge) }

func testOpenBodyAfterExpunge(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	deliver(t, st, "", msg("gone"), store.FlagDeleted)
	_, msgs, err := st.Messages(ctx, alice, store.Inbox)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Messages = %v, %v", msgs, err)
	}
	f, err := st.OpenBody(ctx, msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := st.Expunge(ctx, alice, store.Inbox, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.OpenBody(ctx, msgs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenBody after expunge = %v, want os.ErrNotExist", err)
	}
	if b, err := io.ReadAll(f); err != nil || string(b) != msg("gone") {
		t.Errorf("body opened before the expunge = %q, %v", b, err)
	}
}

// TestHeaderSummary: the summary made at delivery by the function given
// to SetHeaderSummary is kept beside the header, follows copies and
// moves, and is absent for messages delivered without a function.
func TestHeaderSummary(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	before := deliver(t, st, "", msg("before"))
	st.SetHeaderSummary(func(hdr []byte) []byte {
		return []byte(fmt.Sprintf("%d bytes", len(hdr)))
	})
	with := deliver(t, st, "", msg("with"))
	hdrWith := msg("with")[:strings.Index(msg("with"), "\r\n\r\n")+4]
	want := fmt.Sprintf("%d bytes", len(hdrWith))
	summaries := func(mailbox string, uids ...uint32) []string {
		t.Helper()
		mb, err := st.Mailbox(ctx, alice, mailbox)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := st.Summaries(ctx, alice, mb.ID, uids)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = "-"
			if s != nil {
				out[i] = string(s)
			}
		}
		return out
	}
	if got := summaries(store.Inbox, before, with); !slices.Equal(got, []string{"-", want}) {
		t.Errorf("summaries = %q, want [- %q]", got, want)
	}
	if got := headers(t, st, store.Inbox, with); !slices.Equal(got, []string{hdrWith}) {
		t.Errorf("header beside a summary = %q", got)
	}
	cp, err := st.Copy(ctx, alice, store.Inbox, []uint32{with}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	mv, err := st.Move(ctx, alice, store.Inbox, []uint32{with}, "Trash")
	if err != nil {
		t.Fatal(err)
	}
	if got := summaries("Archive", cp.DestUIDs...); !slices.Equal(got, []string{want}) {
		t.Errorf("summary of the copy = %q", got)
	}
	if got := summaries("Trash", mv.DestUIDs...); !slices.Equal(got, []string{want}) {
		t.Errorf("summary of the moved message = %q", got)
	}
	if got := headers(t, st, "Trash", mv.DestUIDs...); !slices.Equal(got, []string{hdrWith}) {
		t.Errorf("header of the moved message = %q", got)
	}
}

// TestHeadersOrder: Headers answers for UIDs in any order, with gaps,
// repeats and UIDs that do not exist.
func TestHeadersOrder(t *testing.T) {
	st := newStore(t, 0)
	var uids []uint32
	for i := 0; i < 6; i++ {
		uids = append(uids, deliver(t, st, "", msg(fmt.Sprint("m", i))))
	}
	if _, err := st.SetFlags(context.Background(), alice, store.Inbox, []uint32{uids[2]}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(context.Background(), alice, store.Inbox, nil); err != nil {
		t.Fatal(err)
	}
	h := func(i int) string { m := msg(fmt.Sprint("m", i)); return m[:strings.Index(m, "\r\n\r\n")+4] }
	tests := []struct {
		name string
		ask  []uint32
		want []string
	}{
		{"ascending with a hole", uids, []string{h(0), h(1), "-", h(3), h(4), h(5)}},
		{"gaps", []uint32{uids[0], uids[4], uids[5], 99}, []string{h(0), h(4), h(5), "-"}},
		{"descending", []uint32{uids[5], uids[3], uids[1], uids[0]}, []string{h(5), h(3), h(1), h(0)}},
		{"repeats", []uint32{uids[1], uids[1], 0, uids[4]}, []string{h(1), h(1), "-", h(4)}},
		{"past the end then back", []uint32{1000, uids[0]}, []string{"-", h(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headers(t, st, store.Inbox, tt.ask...); !slices.Equal(got, tt.want) {
				t.Errorf("Headers(%v) = %q, want %q", tt.ask, got, tt.want)
			}
		})
	}
}
