package store

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestDurabilityOrder checks the order of a delivery: the body is written
// under its final name and made durable (file and directory) before the
// index commit, and the commit happens before Deliver returns.
func TestDurabilityOrder(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.inlineMax = 0 // bodies in files: see TestInlineDurability for the others
	if err := st.EnsureUser(ctx, "u", 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var steps []string
	var final string
	st.hook = func(step, path string) error {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, step)
		switch step {
		case "write":
			final = path
		case "fsync":
			if path != final {
				t.Errorf("fsync of %s, wrote %s", path, final)
			}
		case "fsync-dir":
			if path != final {
				t.Errorf("fsync of the directory of %s, wrote %s", path, final)
			}
			// Not yet in the index at this point.
			_, msgs, err := st.Messages(ctx, "u", "INBOX")
			if err != nil || len(msgs) != 0 {
				t.Errorf("before commit: %d messages, %v", len(msgs), err)
			}
		case "commit":
			if path != final {
				t.Errorf("committed %s, made durable %s", path, final)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("body missing at commit: %v", err)
			}
		}
		return nil
	}
	uid, err := st.Deliver(ctx, "u", "", strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"write", "fsync", "fsync-dir", "commit"}
	if !slices.Equal(steps, want) {
		t.Errorf("steps = %v, want %v", steps, want)
	}
	if filepath.Dir(final) != filepath.Join(st.dir, "msg", filepath.Base(final)[:2]) {
		t.Errorf("body at %s", final)
	}
	_, msgs, _ := st.Messages(ctx, "u", "INBOX")
	if len(msgs) != 1 || msgs[0].UID != uid || st.blobPath(msgs[0].blob) != final {
		t.Errorf("after Deliver: %+v", msgs)
	}

	// A failure at any step before the commit leaves neither a record nor
	// a file.
	for _, failAt := range want[:3] {
		t.Run("fail at "+failAt, func(t *testing.T) {
			st.hook = func(step, path string) error {
				if step == failAt {
					return errors.New("injected")
				}
				return nil
			}
			if _, err := st.Deliver(ctx, "u", "", strings.NewReader("y"), nil, time.Time{}); err == nil {
				t.Fatal("Deliver succeeded")
			}
			files, _ := filepath.Glob(filepath.Join(st.dir, "msg", "*", "*"))
			if len(files) != 1 {
				t.Errorf("files after failed delivery: %v", files)
			}
			if _, msgs, _ := st.Messages(ctx, "u", "INBOX"); len(msgs) != 1 {
				t.Errorf("%d messages after failed delivery", len(msgs))
			}
		})
	}
}

func TestMsgRecordRoundTrip(t *testing.T) {
	tests := []msgRecord{
		{},
		{Size: 10240, InternalDate: time.Date(2026, 11, 23, 16, 0, 0, 5, time.UTC), ModSeq: 7, Blob: blobID{1, 2, 3}, Flags: []string{`\Seen`, "$Forwarded"}},
		{Size: 1 << 40, InternalDate: time.Unix(-100, 0).UTC(), ModSeq: 1<<64 - 1},
	}
	for _, m := range tests {
		got, err := decodeMsg(encodeMsg(&m))
		if err != nil {
			t.Fatalf("decode(encode(%+v)) = %v", m, err)
		}
		if got.Size != m.Size || !got.InternalDate.Equal(m.InternalDate) || got.ModSeq != m.ModSeq || got.Blob != m.Blob || !slices.Equal(got.Flags, m.Flags) {
			t.Errorf("decode(encode(%+v)) = %+v", m, got)
		}
	}
}

// FuzzDecodeMsg feeds arbitrary index records to the decoder: it must not
// panic nor allocate without bound, and what it accepts must re-encode to
// the same bytes.
func FuzzDecodeMsg(f *testing.F) {
	f.Add(encodeMsg(&msgRecord{Size: 3, ModSeq: 1, Flags: []string{`\Seen`}}))
	f.Add(encodeMsg(&msgRecord{}))
	f.Add([]byte{1, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMsg(b)
		if err != nil {
			return
		}
		if got := encodeMsg(&m); string(got) != string(b) {
			// Non-minimal varints decode but re-encode shorter.
			m2, err := decodeMsg(got)
			if err != nil || m2.Size != m.Size || m2.ModSeq != m.ModSeq || !slices.Equal(m2.Flags, m.Flags) || !m2.InternalDate.Equal(m.InternalDate) {
				t.Errorf("re-encoding %x gives %x (%v)", b, got, err)
			}
		}
	})
}

func TestNormalizeMailbox(t *testing.T) {
	tests := []struct{ in, want string }{
		{"inbox", "INBOX"},
		{"Inbox/Sub", "INBOX/Sub"},
		{"Work/2026", "Work/2026"},
		{"", ""},
		{"/a", ""},
		{"a/", ""},
		{"a//b", ""},
		{"a*", ""},
		{"a\x01", ""},
	}
	for _, tt := range tests {
		got, err := normalizeMailbox(tt.in)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("normalizeMailbox(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestDirSyncerGroups: concurrent callers share fsyncs, and each returns
// only after an fsync that started after its call.
func TestDirSyncerGroups(t *testing.T) {
	type span struct{ start, end time.Time }
	var mu sync.Mutex
	var syncs []span
	d := newDirSyncer()
	d.fsync = func(string) error {
		s := span{start: time.Now()}
		time.Sleep(2 * time.Millisecond)
		s.end = time.Now()
		mu.Lock()
		syncs = append(syncs, s)
		mu.Unlock()
		return nil
	}
	const callers = 50
	calls := make([]span, callers)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls[i].start = time.Now()
			if err := d.sync("x"); err != nil {
				t.Error(err)
			}
			calls[i].end = time.Now()
		}()
	}
	wg.Wait()
	if len(syncs) >= callers {
		t.Errorf("%d fsyncs for %d callers: no grouping", len(syncs), callers)
	}
	for i, c := range calls {
		covered := false
		for _, s := range syncs {
			if s.start.After(c.start) && !s.end.After(c.end) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("caller %d returned without an fsync started after its call", i)
		}
	}
	t.Logf("%d fsyncs for %d callers", len(syncs), callers)
	d.fsync = func(string) error { return errors.New("disk gone") }
	if err := d.sync("x"); err == nil {
		t.Error("fsync error not reported")
	}
}

// TestGroupCommit: updates that arrive while a commit runs share the next
// one; an update that fails fails alone, the others are committed.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bucket := []byte("group-test")
	release := make(chan struct{})
	first := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := st.group.update(func(tx *bolt.Tx) error {
			close(first)
			<-release // holds the commit while the others queue
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		})
		if err != nil {
			t.Errorf("first update = %v", err)
		}
	}()
	<-first
	const n = 20
	errBad := errors.New("bad update")
	txids := make([]int, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.group.update(func(tx *bolt.Tx) error {
				if i == 7 {
					return errBad
				}
				txids[i] = tx.ID()
				return tx.Bucket(bucket).Put([]byte{byte(i)}, []byte("v"))
			})
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		st.group.mu.Lock()
		queued := len(st.group.pending)
		st.group.mu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d updates queued, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i := 0; i < n; i++ {
		if i == 7 {
			if !errors.Is(errs[i], errBad) {
				t.Errorf("failing update = %v", errs[i])
			}
			continue
		}
		if errs[i] != nil || txids[i] != txids[0] {
			t.Errorf("update %d: %v in transaction %d, want nil in %d (one commit for all)", i, errs[i], txids[i], txids[0])
		}
	}
	st.db.View(func(tx *bolt.Tx) error {
		for i := 0; i < n; i++ {
			if got := tx.Bucket(bucket).Get([]byte{byte(i)}); (got != nil) != (i != 7) {
				t.Errorf("key %d committed = %v", i, got != nil)
			}
		}
		return nil
	})
}

// TestInlineBodies: bodies up to inlineMax go into the index in the
// commit of their record (no file, no step between), larger ones into
// files; a store holding both reads both, and a failure before the commit
// leaves nothing.
func TestInlineBodies(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureUser(ctx, "u", 0); err != nil {
		t.Fatal(err)
	}
	var steps []string
	st.hook = func(step, path string) error {
		steps = append(steps, step)
		return nil
	}
	st.inlineMax = 3 * bodyChunk
	bodies := []string{
		"",                                   // one empty chunk
		"Subject: x\r\n\r\nx\r\n",            // one chunk
		strings.Repeat("a", bodyChunk),       // exactly one chunk
		strings.Repeat("b", 3*bodyChunk),     // the largest inline body
		strings.Repeat("c", 3*bodyChunk+1),   // a file
		strings.Repeat("d", 10*bodyChunk+17), // a file
	}
	for i, b := range bodies {
		steps = nil
		if _, err := st.Deliver(ctx, "u", "", strings.NewReader(b), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		want := []string{"inline", "commit"}
		if len(b) > st.inlineMax {
			want = []string{"write", "fsync", "fsync-dir", "commit"}
		}
		if !slices.Equal(steps, want) {
			t.Errorf("body %d (%d bytes): steps %v, want %v", i, len(b), steps, want)
		}
	}
	check := func(st *Store) {
		t.Helper()
		_, msgs, err := st.Messages(ctx, "u", "INBOX")
		if err != nil || len(msgs) != len(bodies) {
			t.Fatalf("Messages = %d, %v", len(msgs), err)
		}
		for i, m := range msgs {
			if inline := m.body != 0; inline != (len(bodies[i]) <= 3*bodyChunk) {
				t.Errorf("body %d (%d bytes) inline = %v", i, len(bodies[i]), inline)
			}
			f, err := st.OpenBody(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(f)
			f.Close()
			if err != nil || string(got) != bodies[i] {
				t.Errorf("body %d = %d bytes, %v, want %d", i, len(got), err, len(bodies[i]))
			}
		}
		files, _ := filepath.Glob(filepath.Join(st.dir, "msg", "*", "*"))
		if len(files) != 2 {
			t.Errorf("%d body files, want 2", len(files))
		}
	}
	check(st)

	// A failure before the commit leaves neither a record nor a body.
	st.hook = func(step, path string) error {
		if step == "inline" {
			return errors.New("injected")
		}
		return nil
	}
	if _, err := st.Deliver(ctx, "u", "", strings.NewReader("lost"), nil, time.Time{}); err == nil {
		t.Fatal("Deliver succeeded")
	}
	st.hook = nil
	var ids int
	st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBodies).ForEach(func(k, v []byte) error {
			if binary.BigEndian.Uint32(k[8:]) == 0 {
				ids++
			}
			return nil
		})
	})
	if ids != 4 {
		t.Errorf("%d bodies in the index, want 4", ids)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check(st)

	// A copy is a body of its own: it outlives the original.
	if _, err := st.Copy(ctx, "u", "INBOX", []uint32{2, 4}, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetFlags(ctx, "u", "INBOX", []uint32{2, 4}, FlagsAdd, []string{FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(ctx, "u", "INBOX", nil); err != nil {
		t.Fatal(err)
	}
	_, arch, err := st.Messages(ctx, "u", "Archive")
	if err != nil || len(arch) != 2 {
		t.Fatalf("Archive = %d, %v", len(arch), err)
	}
	for i, m := range arch {
		f, err := st.OpenBody(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		if want := bodies[2*i+1]; string(got) != want {
			t.Errorf("copy %d = %q, want %q", i, got, want)
		}
	}
	if err := st.DeleteMailbox(ctx, "u", "Archive"); err != nil {
		t.Fatal(err)
	}
	ids = 0
	st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBodies).ForEach(func(k, v []byte) error {
			ids++
			return nil
		})
	})
	// Left: bodies 0, 2 (one chunk each) in the index, 4 and 5 in files.
	if ids != 2 {
		t.Errorf("%d chunks in the index after expunge and delete, want 2", ids)
	}
}

func TestInlineRecordRoundTrip(t *testing.T) {
	m := msgRecord{Size: 10240, InternalDate: time.Unix(1700000000, 3).UTC(), ModSeq: 9, Body: 1 << 40, Flags: []string{`\Seen`}}
	got, err := decodeMsg(encodeMsg(&m))
	if err != nil || got.Body != m.Body || got.Blob != (blobID{}) || got.Size != m.Size || !slices.Equal(got.Flags, m.Flags) {
		t.Errorf("decode(encode(%+v)) = %+v, %v", m, got, err)
	}
	b := encodeMsg(&msgRecord{Body: 0})
	b[0] = msgRecordVersionInline // an inline record with no body id
	if _, err := decodeMsg(b[:len(b)-16]); err == nil {
		t.Error("inline record without a body id decoded")
	}
}
