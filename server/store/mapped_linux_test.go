package store

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mappedRSS returns the resident KiB of the mappings of path.
func mappedRSS(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in, kib := false, 0
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasSuffix(line, " "+path)
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			kib += n
		}
	}
	return kib
}

// TestBodiesNotResident: delivering, reading, copying and expunging bodies
// kept in the index leaves at most about trimEvery bytes of the index
// mapping in the process's resident memory.
func TestBodiesNotResident(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, "u", 0); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 640)
	const n = 1000 // 10 MB of bodies: the mapping is trimmed every trimEvery bytes
	for i := 0; i < n; i++ {
		if _, err := st.Deliver(ctx, "u", "", bytes.NewReader(body), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "index.db")
	before := mappedRSS(t, path)
	_, msgs, err := st.Messages(ctx, "u", "INBOX")
	if err != nil || len(msgs) != n {
		t.Fatalf("Messages = %d, %v", len(msgs), err)
	}
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
	// Without trims, reading alone would add the 10 MB read.
	if limit := before + (trimEvery+1<<20)>>10; afterRead > limit || afterExpunge > limit {
		t.Errorf("index mapping resident: %d KiB after reading, %d after expunging, want at most %d", afterRead, afterExpunge, limit)
	}
}
