package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailctl/mailctl/server/procmem"
)

// mappedRSS returns the resident KiB of the mappings of path.
func mappedRSS(t *testing.T, path string) int {
	t.Helper()
	maps, err := procmem.Mappings(path)
	if err != nil {
		t.Skip(err)
	}
	var rss int64
	for _, m := range maps {
		rss += m.Rss
	}
	return int(rss >> 10)
}

// inboxOf opens a store in a new directory and delivers n messages to the
// INBOX of user "u", message i being body(i). It returns the store, its
// directory, the INBOX and its messages.
func inboxOf(t *testing.T, n int, body func(i int) []byte) (*Store, string, Mailbox, []Message) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.EnsureUser(ctx, "u", 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := st.Deliver(ctx, "u", "", bytes.NewReader(body(i)), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	mb, msgs, err := st.Messages(ctx, "u", "INBOX")
	if err != nil || len(msgs) != n {
		t.Fatalf("Messages = %d, %v", len(msgs), err)
	}
	return st, dir, mb, msgs
}

// TestBodiesNotResident: delivering, reading, copying and expunging bodies
// kept in the index leaves at most about trimEvery bytes of the index
// mapping in the process's resident memory.
func TestBodiesNotResident(t *testing.T) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), 640)
	const n = 1000 // 10 MB of bodies: the mapping is trimmed every trimEvery bytes
	st, dir, _, msgs := inboxOf(t, n, func(int) []byte { return body })
	path := filepath.Join(dir, "index.db")
	before := mappedRSS(t, path)
	for _, m := range msgs {
		f, err := st.OpenBody(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		if !bytes.Equal(b, body) {
			t.Fatalf("body %d differs", m.UID)
		}
	}
	afterRead := mappedRSS(t, path)
	uids := make([]uint32, 0, n)
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	if _, err := st.Copy(ctx, "u", "INBOX", uids, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetFlags(ctx, "u", "INBOX", uids, FlagsAdd, []string{FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(ctx, "u", "INBOX", nil); err != nil {
		t.Fatal(err)
	}
	afterExpunge := mappedRSS(t, path)
	t.Logf("index mapping resident: %d KiB after delivery, %d after reading %d KiB of bodies, %d after copying and expunging them",
		before, afterRead, n*len(body)>>10, afterExpunge)
	// Reading drops the pages of the bodies read (TestBodyPagesDropped);
	// the other pages of the index that the kernel mapped around them
	// (records, cached headers) may stay. Expunging drops the mapping.
	if limit := before + (trimEvery+1<<20)>>10; afterExpunge > limit {
		t.Errorf("index mapping resident: %d KiB after expunging, want at most %d", afterExpunge, limit)
	}
}

// present counts the pages of spans mapped in the process
// (/proc/self/pagemap, bit 63), and all of them.
func present(t *testing.T, spans [][2]uintptr) (in, all int) {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	ps := uintptr(os.Getpagesize())
	buf := make([]byte, 8)
	for _, sp := range spans {
		for a := sp[0]; a < sp[1]; a += ps {
			if _, err := f.ReadAt(buf, int64(a/ps*8)); err != nil {
				t.Fatal(err)
			}
			all++
			if binary.LittleEndian.Uint64(buf)>>63 == 1 {
				in++
			}
		}
	}
	return in, all
}

// TestBodyPagesDropped: the pages of the bodies read from the index are
// dropped from resident memory once they reach readSpans.every bytes
// (trimReadEvery).
func TestBodyPagesDropped(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 640)
	n := 2000 // 20 MB: two drops, and 4 MB after them
	st, _, _, msgs := inboxOf(t, n, func(int) []byte { return body })
	st.readSpans.every = 8 << 20
	// OpenBody's read, noting every page read.
	var all pageSpans
	for _, m := range msgs {
		var spans pageSpans
		err := st.db.View(func(tx *bolt.Tx) error {
			spans.base = tx.DB().Info().Data
			b, err := readBodySpans(tx, m.body, m.Size, nil, &spans)
			if err == nil && !bytes.Equal(b, body) {
				t.Fatalf("body %d differs", m.UID)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		all.spans = append(all.spans, spans.spans...)
		st.readBodies(&spans, int64(len(body)))
	}
	in, total := present(t, all.spans)
	t.Logf("pages of the bodies read: %d of %d still mapped", in, total)
	if total < n*len(body)/os.Getpagesize() {
		t.Fatalf("only %d pages noted for %d bytes of bodies", total, n*len(body))
	}
	// At most those read since the last trim (and a page shared with the
	// next body) stay.
	if limit := int(st.readSpans.every)/os.Getpagesize() + 2; in > limit {
		t.Errorf("%d pages of bodies read still mapped, want at most %d", in, limit)
	}
}

// TestHeadersStayResident: reading bodies kept in the index drops only
// their own pages from resident memory, not the rest of the index: the
// headers cached in it (FETCH ENVELOPE, header SEARCH) stay mapped.
func TestHeadersStayResident(t *testing.T) {
	ctx := context.Background()
	pad := strings.Repeat("x", 1000)
	text := bytes.Repeat([]byte("0123456789abcdef"), 640)
	const n = 1000 // 1 MB of headers, 10 MB of bodies
	st, dir, mb, msgs := inboxOf(t, n, func(i int) []byte {
		return []byte("From: a@example.test\r\nSubject: message " + strconv.Itoa(i) + "\r\nX-Pad: " + pad + "\r\n\r\n" + string(text))
	})
	uids := make([]uint32, 0, n)
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	path := filepath.Join(dir, "index.db")
	readHeaders := func() {
		t.Helper()
		hdrs, err := st.Headers(ctx, "u", mb.ID, uids)
		if err != nil || len(hdrs) != n || !bytes.Contains(hdrs[n-1], []byte("message 999")) {
			t.Fatalf("Headers = %d, %v", len(hdrs), err)
		}
	}
	st.trimMapping()
	readHeaders()
	withHeaders := mappedRSS(t, path)
	for _, m := range msgs {
		b, err := st.OpenBody(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, b)
		b.Close()
	}
	afterBodies := mappedRSS(t, path)
	readHeaders()
	again := mappedRSS(t, path)
	t.Logf("index mapping resident: %d KiB with the headers read, %d after reading %d KiB of bodies, %d after reading the headers again",
		withHeaders, afterBodies, n*len(text)>>10, again)
	if afterBodies > withHeaders+(trimReadEvery+1<<20)>>10 {
		t.Errorf("bodies read stay resident: %d KiB, want at most %d", afterBodies, withHeaders+(trimReadEvery+1<<20)>>10)
	}
	// Headers mapped again would add their ~1 MB.
	if again-afterBodies > 256 {
		t.Errorf("reading the headers again mapped %d KiB: the trims dropped them", again-afterBodies)
	}
}
