package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// importFrom feeds ImportMailbox with the messages of mailbox name of src;
// stop, when not 0, makes next fail after that many messages.
func importFrom(ctx context.Context, t *testing.T, src, dst *Store, user, name string, stop int) (bool, error) {
	t.Helper()
	mb, msgs, err := src.Messages(ctx, user, name)
	if err != nil {
		t.Fatal(err)
	}
	var open Body
	i := 0
	defer func() {
		if open != nil {
			open.Close()
		}
	}()
	return dst.ImportMailbox(ctx, user, mb, func() (Message, io.Reader, error) {
		if open != nil {
			open.Close()
			open = nil
		}
		if stop != 0 && i == stop {
			return Message{}, nil, errors.New("source went away")
		}
		if i == len(msgs) {
			return Message{}, nil, io.EOF
		}
		m := msgs[i]
		i++
		b, err := src.OpenBody(ctx, m)
		if err != nil {
			return Message{}, nil, err
		}
		open = b
		return m, b, nil
	})
}

func snapshotOf(ctx context.Context, t *testing.T, st *Store, user string) string {
	t.Helper()
	var sb strings.Builder
	mbs, err := st.Mailboxes(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		fmt.Fprintf(&sb, "%s v=%d next=%d modseq=%d use=%q sub=%v n=%d size=%d\n", mb.Name, mb.UIDValidity, mb.UIDNext, mb.ModSeq, mb.SpecialUse, mb.Subscribed, mb.Messages, mb.Size)
		_, msgs, err := st.Messages(ctx, user, mb.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			b, err := st.OpenBody(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(b)
			b.Close()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&sb, "  %d modseq=%d flags=%v date=%s size=%d body=%q\n", m.UID, m.ModSeq, m.Flags, m.InternalDate.UTC().Format(time.RFC3339Nano), m.Size, body)
		}
	}
	used, n, err := st.Usage(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	q, err := st.Quota(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&sb, "usage %d bytes %d messages, quota %d\n", used, n, q)
	return sb.String()
}

// TestImportMailbox: a mailbox imported keeps UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ, every UID, MODSEQ, flag, date and body; a second import
// skips it; an import interrupted is dropped and done again, without
// duplicates; a mailbox that differs is refused.
func TestImportMailbox(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	ctx := context.Background()
	src, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.inlineMax = 300 // both kinds of bodies
	if err := src.EnsureUser(ctx, "u", 1<<20); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		body := fmt.Sprintf("Subject: m%d\r\n\r\n%s\r\n", i, strings.Repeat("x", rng.IntN(700)))
		if _, err := src.Deliver(ctx, "u", "", strings.NewReader(body), []string{"$k" + fmt.Sprint(i%3)}, time.Unix(1700000000+int64(i), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.SetFlags(ctx, "u", Inbox, []uint32{3, 5, 7, 40}, FlagsAdd, []string{FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Expunge(ctx, "u", Inbox, []uint32{3, 5, 40}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.SetFlags(ctx, "u", Inbox, []uint32{1, 2}, FlagsAdd, []string{FlagSeen}); err != nil {
		t.Fatal(err)
	}

	dst, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	dst.inlineMax = 400
	importBatchMessages = 7
	defer func() { importBatchMessages = 2000 }()
	if err := dst.ImportUser(ctx, "u", 1<<20); err != nil {
		t.Fatal(err)
	}
	// Interrupted after 20 messages (two batches committed).
	if _, err := importFrom(ctx, t, src, dst, "u", Inbox, 20); err == nil || !strings.Contains(err.Error(), "source went away") {
		t.Fatalf("interrupted import: %v", err)
	}
	if _, err := dst.Mailbox(ctx, "u", Inbox); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("mailbox visible after an interrupted import: %v", err)
	}
	if used, n, _ := dst.Usage(ctx, "u"); used != 0 || n != 0 {
		t.Fatalf("usage after an interrupted import: %d bytes, %d messages", used, n)
	}
	for _, name := range []string{Inbox, "Sent", "Drafts", "Trash", "Junk", "Archive"} {
		skipped, err := importFrom(ctx, t, src, dst, "u", name, 0)
		if err != nil || skipped {
			t.Fatalf("import %s: skipped %v, %v", name, skipped, err)
		}
	}
	want, got := snapshotOf(ctx, t, src, "u"), snapshotOf(ctx, t, dst, "u")
	if want != got {
		t.Fatalf("after import:\n%s\nwant:\n%s", got, want)
	}
	// No file left by the interrupted import: the files are those of
	// the messages kept.
	files := 0
	filepath.WalkDir(filepath.Join(dst.dir, "msg"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	_, msgs, _ := dst.Messages(ctx, "u", Inbox)
	inFiles := 0
	for _, m := range msgs {
		if m.body == 0 {
			inFiles++
		}
	}
	if files != inFiles {
		t.Errorf("%d body files, %d messages with a file", files, inFiles)
	}
	// Nor any body in the index: the bodies are those of the messages.
	var bodies int
	dst.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBodies).ForEach(func(k, _ []byte) error {
			if len(k) == 12 && k[8] == 0 && k[9] == 0 && k[10] == 0 && k[11] == 0 { // chunk 0
				bodies++
			}
			return nil
		})
	})
	if inIndex := len(msgs) - inFiles; bodies != inIndex {
		t.Errorf("%d bodies in the index, %d messages with one", bodies, inIndex)
	}
	// Headers are cached as at delivery.
	mb, _ := dst.Mailbox(ctx, "u", Inbox)
	hdrs, err := dst.Headers(ctx, "u", mb.ID, []uint32{1, 2})
	if err != nil || string(hdrs[0]) != "Subject: m0\r\n\r\n" || string(hdrs[1]) != "Subject: m1\r\n\r\n" {
		t.Errorf("headers %q, %v", hdrs, err)
	}
	// Expunged UIDs before the import are not known: QRESYNC falls back.
	if _, complete, err := dst.Vanished(ctx, "u", mb.ID, 1); err != nil || complete {
		t.Errorf("Vanished since 1: complete %v, %v", complete, err)
	}
	if _, complete, err := dst.Vanished(ctx, "u", mb.ID, mb.ModSeq); err != nil || !complete {
		t.Errorf("Vanished since HIGHESTMODSEQ: complete %v, %v", complete, err)
	}
	// Again: skipped, nothing changes.
	skipped, err := importFrom(ctx, t, src, dst, "u", Inbox, 0)
	if err != nil || !skipped {
		t.Fatalf("second import: skipped %v, %v", skipped, err)
	}
	if got := snapshotOf(ctx, t, dst, "u"); got != want {
		t.Fatalf("after a second import:\n%s\nwant:\n%s", got, want)
	}
	// The source changed: refused, one line.
	if _, err := src.Deliver(ctx, "u", "", strings.NewReader("Subject: new\r\n\r\n"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	_, err = importFrom(ctx, t, src, dst, "u", Inbox, 0)
	if !errors.Is(err, ErrImportConflict) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "drop") {
		t.Fatalf("import over a different mailbox: %v", err)
	}
	t.Log(err)
	// A new mailbox created after the import gets a UIDVALIDITY above.
	if err := dst.CreateMailbox(ctx, "u", "New", ""); err != nil {
		t.Fatal(err)
	}
	nmb, _ := dst.Mailbox(ctx, "u", "New")
	if nmb.UIDValidity <= mb.UIDValidity {
		t.Errorf("new mailbox UIDVALIDITY %d, imported %d", nmb.UIDValidity, mb.UIDValidity)
	}
}

// TestImportReplacesUnusedMailbox: EnsureUser's empty INBOX is replaced;
// a used one is refused.
func TestImportReplacesUnusedMailbox(t *testing.T) {
	ctx := context.Background()
	src, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.EnsureUser(ctx, "u", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Deliver(ctx, "u", "", strings.NewReader("Subject: a\r\n\r\nbody\r\n"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	dst, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.EnsureUser(ctx, "u", 0); err != nil {
		t.Fatal(err)
	}
	if skipped, err := importFrom(ctx, t, src, dst, "u", Inbox, 0); err != nil || skipped {
		t.Fatalf("import over an unused INBOX: skipped %v, %v", skipped, err)
	}
	smb, _ := src.Mailbox(ctx, "u", Inbox)
	dmb, _ := dst.Mailbox(ctx, "u", Inbox)
	smb.ID, dmb.ID = 0, 0
	if !reflect.DeepEqual(smb, dmb) {
		t.Errorf("INBOX %+v, want %+v", dmb, smb)
	}
	if _, err := dst.Deliver(ctx, "u", "Sent", strings.NewReader("x\r\n"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	_, err = importFrom(ctx, t, src, dst, "u", "Sent", 0)
	if !errors.Is(err, ErrImportConflict) {
		t.Fatalf("import over a used mailbox: %v", err)
	}
}
