package store

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	// Reading maps nothing of the bodies (TestReadsNotMapped); a copy
	// reads them through the mapping, and commits map the pages they
	// change. Expunging drops the mapping.
	if limit := before + (trimEvery+1<<20)>>10; afterExpunge > limit {
		t.Errorf("index mapping resident: %d KiB after expunging, want at most %d", afterExpunge, limit)
	}
}

// TestReadsNotMapped: reading bodies kept in the index, the cached
// headers and the message records (FETCH BODY[], FETCH ENVELOPE, SELECT)
// reads the index file, not its mapping: the index's resident memory does
// not grow with them. A big flag change, which bbolt makes through the
// mapping, leaves at most mappedBudget of it.
func TestReadsNotMapped(t *testing.T) {
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
	st.trimMapping()
	before := mappedRSS(t, path)
	for round := 0; round < 2; round++ {
		for i, m := range msgs {
			b, err := st.OpenBody(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(b)
			b.Close()
			if !bytes.HasSuffix(got, text) || !bytes.Contains(got, []byte("message "+strconv.Itoa(i)+"\r\n")) {
				t.Fatalf("body of %d differs", m.UID)
			}
		}
		hdrs, err := st.Headers(ctx, "u", mb.ID, uids)
		if err != nil || len(hdrs) != n || !bytes.Contains(hdrs[n-1], []byte("message 999\r\n")) {
			t.Fatalf("Headers = %d, %v", len(hdrs), err)
		}
		if _, again, err := st.Messages(ctx, "u", "INBOX"); err != nil || len(again) != n {
			t.Fatalf("Messages = %d, %v", len(again), err)
		}
	}
	afterReads := mappedRSS(t, path)
	if _, err := st.SetFlags(ctx, "u", "INBOX", uids, FlagsAdd, []string{FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	afterStore := mappedRSS(t, path)
	t.Logf("index mapping resident: %d KiB before, %d after reading %d KiB of bodies and 1 MB of headers twice, %d after flagging every message",
		before, afterReads, n*len(text)>>10, afterStore)
	// The buckets above them are still looked up through the mapping: a
	// few faults, each mapping up to 128 KiB around it.
	if afterReads-before > 1024 {
		t.Errorf("reads mapped %d KiB of the index, want at most 1024", afterReads-before)
	}
	if limit := before + int(mappedBudget+1<<20)>>10; afterStore > limit {
		t.Errorf("index mapping resident after a flag change: %d KiB, want at most %d", afterStore, limit)
	}
}

// TestOpenNotMapped: opening a store does not leave its index resident
// (bbolt reads every page of it to rebuild its freelist).
func TestOpenNotMapped(t *testing.T) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), 640)
	st, dir, _, msgs := inboxOf(t, 1000, func(int) []byte { return body })
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	path := filepath.Join(dir, "index.db")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	rss := mappedRSS(t, path)
	t.Logf("index of %d KiB: %d KiB resident after Open", fi.Size()>>10, rss)
	if rss > 512 {
		t.Errorf("index resident after Open: %d KiB of %d, want at most 512", rss, fi.Size()>>10)
	}
	b, err := st.OpenBody(ctx, msgs[len(msgs)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, _ := io.ReadAll(b); !bytes.Equal(got, body) {
		t.Error("body read after Open differs")
	}
}

// TestBigChangeDropsMapping: a flag change of many messages, which bbolt
// makes through the mapping, drops the mapping within its transaction once
// it grew by more than mappedBudget, not only after its commit; the change
// is whole.
func TestBigChangeDropsMapping(t *testing.T) {
	ctx := context.Background()
	st, _, _, msgs := inboxOf(t, 3000, func(i int) []byte { return []byte("Subject: " + strconv.Itoa(i) + "\r\n\r\nx\r\n") })
	defer func(b int64) { mappedBudget = b }(mappedBudget)
	mappedBudget = 64 << 10
	var trims int
	st.hook = func(step, _ string) error {
		if step == "trim mapping" {
			trims++
		}
		return nil
	}
	st.trimMapping()
	uids := make([]uint32, 0, len(msgs))
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	if _, err := st.SetFlags(ctx, "u", "INBOX", uids, FlagsAdd, []string{FlagFlagged, "$Work"}); err != nil {
		t.Fatal(err)
	}
	st.hook = nil
	if trims == 0 {
		t.Error("the mapping was not dropped during the change of 3000 records")
	}
	_, after, err := st.Messages(ctx, "u", "INBOX")
	if err != nil || len(after) != len(msgs) {
		t.Fatalf("Messages = %d, %v", len(after), err)
	}
	for _, m := range after {
		if !m.HasFlag(FlagFlagged) || !m.HasFlag("$Work") {
			t.Fatalf("message %d: flags %v", m.UID, m.Flags)
		}
	}
}
