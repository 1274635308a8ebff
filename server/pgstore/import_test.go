package pgstore

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestImportMailbox: a mailbox imported keeps UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ and each message's UID, MODSEQ, flags, date and body; a
// second import skips it; an interrupted one leaves nothing; one over a
// mailbox that differs is refused; EnsureUser's unused INBOX is replaced.
func TestImportMailbox(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	st := migrated(t, url)
	st.chunkSize = 8 // bodies of several chunks
	ctx := ctxT(t)
	if err := st.EnsureUser(ctx, "u", 0); err != nil { // INBOX, unused
		t.Fatal(err)
	}
	if err := st.ImportUser(ctx, "u", 12345); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2024, 3, 1, 10, 0, 0, 123456000, time.UTC)
	mb := store.Mailbox{Name: "INBOX", UIDValidity: 1600000000, UIDNext: 12, ModSeq: 30, Subscribed: true, Messages: 3, RecentUID: 6}
	src := []store.Message{
		{UID: 2, ModSeq: 4, Flags: []string{store.FlagSeen}, InternalDate: base},
		{UID: 5, ModSeq: 29, Flags: []string{"$Junk", store.FlagFlagged}, InternalDate: base.Add(time.Hour)},
		{UID: 9, ModSeq: 7, InternalDate: base.Add(2 * time.Hour)},
	}
	feed := func(stop int) func() (store.Message, io.Reader, error) {
		i := 0
		return func() (store.Message, io.Reader, error) {
			if stop != 0 && i == stop {
				return store.Message{}, nil, errors.New("source went away")
			}
			if i == len(src) {
				return store.Message{}, nil, io.EOF
			}
			m := src[i]
			i++
			return m, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", m.UID, m.UID)), nil
		}
	}
	if _, err := st.ImportMailbox(ctx, "u", mb, feed(2)); err == nil || !strings.Contains(err.Error(), "source went away") {
		t.Fatalf("interrupted import: %v", err)
	}
	if got, _ := st.Mailbox(ctx, "u", "INBOX"); got.UIDNext != 1 || got.Messages != 0 {
		t.Fatalf("INBOX after an interrupted import: %+v", got)
	}
	if skipped, err := st.ImportMailbox(ctx, "u", mb, feed(0)); err != nil || skipped {
		t.Fatalf("import: skipped %v, %v", skipped, err)
	}
	got, msgs, err := st.Messages(ctx, "u", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if got.UIDValidity != mb.UIDValidity || got.UIDNext != mb.UIDNext || got.ModSeq != mb.ModSeq || got.Messages != 3 || !got.Subscribed || got.RecentUID != 6 {
		t.Fatalf("mailbox %+v, want %+v", got, mb)
	}
	var size int64
	for i, m := range msgs {
		w := src[i]
		if m.UID != w.UID || m.ModSeq != w.ModSeq || fmt.Sprint(m.Flags) != fmt.Sprint(append([]string{}, w.Flags...)) || !m.InternalDate.Equal(w.InternalDate) {
			t.Errorf("message %+v, want %+v", m, w)
		}
		b, err := st.OpenBody(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(b)
		if want := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", w.UID, w.UID); string(data) != want || m.Size != int64(len(want)) {
			t.Errorf("UID %d: body %q (size %d), want %q", m.UID, data, m.Size, want)
		}
		size += m.Size
	}
	used, n, err := st.Usage(ctx, "u")
	if err != nil || used != size || n != 3 {
		t.Errorf("usage %d bytes %d messages (%v), want %d, 3", used, n, err, size)
	}
	if q, _ := st.Quota(ctx, "u"); q != 12345 {
		t.Errorf("quota %d", q)
	}
	// Subscriptions to names without a mailbox.
	if err := st.ImportSubscriptions(ctx, "u", []string{"Old", "INBOX", "Old"}); err != nil {
		t.Fatal(err)
	}
	var gone []string
	if err := st.pool.QueryRow(ctx, "SELECT array_agg(name ORDER BY name) FROM gone_subscriptions").Scan(&gone); err != nil || fmt.Sprint(gone) != "[Old]" {
		t.Errorf("subscriptions without a mailbox: %q, %v", gone, err)
	}
	// A mailbox of that name imported: the subscription is the mailbox's.
	empty := func() (store.Message, io.Reader, error) { return store.Message{}, nil, io.EOF }
	if _, err := st.ImportMailbox(ctx, "u", store.Mailbox{Name: "Old", UIDValidity: 1600000001, UIDNext: 1, ModSeq: 1, Subscribed: true}, empty); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := st.pool.QueryRow(ctx, "SELECT count(*) FROM gone_subscriptions").Scan(&left); err != nil || left != 0 {
		t.Errorf("subscriptions without a mailbox after importing Old: %d, %v", left, err)
	}
	// EnsureUser's INBOX, replaced, left a tombstone for the change feed.
	var tombs int
	if err := st.pool.QueryRow(ctx, "SELECT count(*) FROM deleted_mailboxes WHERE user_name = 'u'").Scan(&tombs); err != nil || tombs != 1 {
		t.Errorf("tombstones of replaced mailboxes: %d, %v", tombs, err)
	}
	// Again: skipped.
	if skipped, err := st.ImportMailbox(ctx, "u", mb, feed(0)); err != nil || !skipped {
		t.Fatalf("second import: skipped %v, %v", skipped, err)
	}
	// A source that changed since: refused, one line.
	mb2 := mb
	mb2.UIDNext++
	_, err = st.ImportMailbox(ctx, "u", mb2, feed(0))
	if !errors.Is(err, store.ErrImportConflict) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("import over a different mailbox: %v", err)
	}
	// New mailboxes get a UIDVALIDITY above the imported one, and new
	// messages a UID from UIDNEXT on.
	if err := st.CreateMailbox(ctx, "u", "New", ""); err != nil {
		t.Fatal(err)
	}
	if nmb, _ := st.Mailbox(ctx, "u", "New"); nmb.UIDValidity <= mb.UIDValidity && nmb.UIDValidity < uint32(time.Now().Unix()) {
		t.Errorf("new mailbox UIDVALIDITY %d", nmb.UIDValidity)
	}
	if uid, err := st.Deliver(ctx, "u", "", strings.NewReader("x\r\n"), nil, time.Time{}); err != nil || uid != mb.UIDNext {
		t.Errorf("delivery after import: UID %d, %v; want %d", uid, err, mb.UIDNext)
	}
}
