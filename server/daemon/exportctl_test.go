package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/mailfmt"
	"github.com/mailctl/mailctl/server/store"
)

// expungingStore expunges a message of INBOX right after the export
// listed the mailbox, as a client would while an export runs.
type expungingStore struct {
	*store.Store
	uid uint32
}

func (s expungingStore) Messages(ctx context.Context, user, mailbox string) (store.Mailbox, []store.Message, error) {
	mb, msgs, err := s.Store.Messages(ctx, user, mailbox)
	if err == nil && mailbox == store.Inbox {
		if _, err := s.Store.SetFlags(ctx, user, mailbox, []uint32{s.uid}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
			return mb, nil, err
		}
		if _, err := s.Store.Expunge(ctx, user, mailbox, []uint32{s.uid}); err != nil {
			return mb, nil, err
		}
	}
	return mb, msgs, err
}

// TestExportImportControl exports over a real control socket while a
// message is expunged (it is left out; the stream still ends with its
// count), then imports the stream for another user: the messages land in
// order with their flags and dates, and a cut import appends nothing of
// its incomplete part.
func TestExportImportControl(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if err := st.EnsureUser(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
	}
	date := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	var uids []uint32
	for i, body := range []string{"Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo\r\n", "Subject: 3\r\n\r\n" + strings.Repeat("big\r\n", 100000)} {
		uid, err := st.Deliver(ctx, "alice@example.test", "INBOX", strings.NewReader(body), []string{store.FlagSeen, "kw" + string(rune('a'+i))}, date.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveControl(ln, func(context.Context) (*Status, error) { return &Status{}, nil }, func() QueueAdmin { return nil }, nil,
		func(mux *http.ServeMux) {
			handleMailTransfer(mux, expungingStore{Store: st, uid: uids[1]}, slog.New(slog.DiscardHandler))
		})
	t.Cleanup(func() { srv.Close() })

	var stream bytes.Buffer
	if err := Export(ctx, sock, ExportOptions{User: "alice@example.test"}, &stream); err != nil {
		t.Fatal(err)
	}
	r := mailfmt.NewStreamReader(bytes.NewReader(stream.Bytes()))
	var got []mailfmt.Record
	for {
		rec, body, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the export stream: %v", err)
		}
		if rec.Kind == mailfmt.KindMessage {
			b, _ := io.ReadAll(body)
			if int64(len(b)) != rec.Size {
				t.Fatalf("message %d: %d bytes, record says %d", rec.UID, len(b), rec.Size)
			}
			got = append(got, rec)
		}
	}
	if len(got) != 2 || got[0].UID != uids[0] || got[1].UID != uids[2] || !got[1].Date.Equal(date.Add(2*time.Hour)) {
		t.Fatalf("exported %+v, want messages %d and %d (%d expunged during the export)", got, uids[0], uids[2], uids[1])
	}

	if err := Export(ctx, sock, ExportOptions{User: "nobody@example.test"}, io.Discard); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Errorf("export of an unknown user: %v", err)
	}

	// The export, imported for bob into another folder.
	in := bytes.ReplaceAll(stream.Bytes(), []byte(`"mailbox":"INBOX"`), []byte(`"mailbox":"Old/INBOX"`))
	var acks []ImportAck
	if err := Import(ctx, sock, "bob@example.test", bytes.NewReader(in), func(a ImportAck) error { acks = append(acks, a); return nil }); err != nil {
		t.Fatal(err)
	}
	_, msgs, err := st.Messages(ctx, "bob@example.test", "Old/INBOX")
	if err != nil || len(acks) != 2 || len(msgs) != 2 || acks[0].UID != msgs[0].UID || acks[1].UID != msgs[1].UID || msgs[0].UID >= msgs[1].UID {
		t.Fatalf("import: acks %+v, messages %+v, %v", acks, msgs, err)
	}
	if !msgs[1].InternalDate.Equal(date.Add(2*time.Hour)) || !msgs[1].HasFlag(store.FlagSeen) || !msgs[1].HasFlag("kwc") {
		t.Errorf("imported message: %+v", msgs[1])
	}

	// A stream cut in its second message: the server appends the first,
	// says how far it got, and nothing of the cut one.
	cut := in[:len(in)-50000]
	acks = nil
	err = Import(ctx, sock, "bob@example.test", bytes.NewReader(cut), func(a ImportAck) error { acks = append(acks, a); return nil })
	if err == nil || !strings.Contains(err.Error(), "ended early") || len(acks) != 1 {
		t.Errorf("import of a cut stream: %v, acks %+v; want one appended and an error", err, acks)
	}
	if _, msgs, _ := st.Messages(ctx, "bob@example.test", "Old/INBOX"); len(msgs) != 3 {
		t.Errorf("after the cut import Old/INBOX has %d messages, want 3", len(msgs))
	}
}
