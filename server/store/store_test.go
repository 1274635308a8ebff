package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

const alice = "alice@example.test"

// inlineMax, when not negative, is the largest body that stores opened by
// openStore keep in the index (see forBodyKinds).
var inlineMax = -1

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatalf("Open(%q) = %v", dir, err)
	}
	if inlineMax >= 0 {
		store.SetInlineMax(st, inlineMax)
	}
	return st
}

// forBodyKinds runs test with bodies kept in the index (the default for
// small ones), then with bodies in files (as large ones are, and all of
// those of stores written before).
func forBodyKinds(t *testing.T, test func(*testing.T)) {
	for _, k := range []struct {
		name string
		max  int
	}{{"index", -1}, {"files", 0}} {
		t.Run(k.name, func(t *testing.T) {
			inlineMax = k.max
			defer func() { inlineMax = -1 }()
			test(t)
		})
	}
}

func newStore(t testing.TB, quota int64) *store.Store {
	t.Helper()
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	if err := st.EnsureUser(context.Background(), alice, quota); err != nil {
		t.Fatalf("EnsureUser = %v", err)
	}
	return st
}

func msg(subject string) string {
	return "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
}

func deliver(t testing.TB, st *store.Store, mailbox, body string, flags ...string) uint32 {
	t.Helper()
	uid, err := st.Deliver(context.Background(), alice, mailbox, strings.NewReader(body), flags, time.Time{})
	if err != nil {
		t.Fatalf("Deliver(%q) = %v", mailbox, err)
	}
	return uid
}

func readBody(t testing.TB, st *store.Store, m store.Message) string {
	t.Helper()
	f, err := st.OpenBody(context.Background(), m)
	if err != nil {
		t.Fatalf("OpenBody(%d) = %v", m.UID, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func uidsOf(msgs []store.Message) []uint32 {
	var out []uint32
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	return out
}

func TestEnsureUserDefaultMailboxes(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	// Idempotent, also after a special-use mailbox was renamed.
	if err := st.RenameMailbox(ctx, alice, "Junk", "Spam"); err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureUser(ctx, alice, 1000); err != nil {
		t.Fatal(err)
	}
	mbs, err := st.Mailboxes(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mb := range mbs {
		got[mb.Name] = mb.SpecialUse
		if !mb.Subscribed || mb.UIDNext != 1 || mb.UIDValidity == 0 {
			t.Errorf("mailbox %+v: want subscribed, UIDNEXT 1, UIDVALIDITY set", mb)
		}
	}
	want := map[string]string{"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`, "Spam": `\Junk`, "Archive": `\Archive`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Mailboxes = %v, want %v", got, want)
	}
	if mbs[0].Name != "INBOX" {
		t.Errorf("first mailbox = %q, want INBOX", mbs[0].Name)
	}
	if q, _ := st.Quota(ctx, alice); q != 1000 {
		t.Errorf("Quota = %d, want 1000", q)
	}
	users, _ := st.Users(ctx)
	if !slices.Equal(users, []string{alice}) {
		t.Errorf("Users = %v", users)
	}
}

func TestDeliverAndRead(t *testing.T) { forBodyKinds(t, testDeliverAndRead) }

func testDeliverAndRead(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	uid1, err := st.Deliver(ctx, alice, "", strings.NewReader(msg("one")), []string{`\seen`, "$Label1", `\Recent`, "$label1"}, date)
	if err != nil {
		t.Fatal(err)
	}
	uid2 := deliver(t, st, "inbox", msg("two"))
	if uid1 != 1 || uid2 != 2 {
		t.Errorf("UIDs = %d, %d, want 1, 2", uid1, uid2)
	}
	mb, msgs, err := st.Messages(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Messages != 2 || mb.UIDNext != 3 || mb.Size != int64(len(msg("one"))+len(msg("two"))) {
		t.Errorf("mailbox = %+v", mb)
	}
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	m := msgs[0]
	if !m.InternalDate.Equal(date) || m.Size != int64(len(msg("one"))) || !slices.Equal(m.Flags, []string{`\Seen`, "$Label1"}) {
		t.Errorf("message 1 = %+v", m)
	}
	if got := readBody(t, st, msgs[1]); got != msg("two") {
		t.Errorf("body 2 = %q", got)
	}
	if msgs[1].ModSeq <= msgs[0].ModSeq || mb.ModSeq != msgs[1].ModSeq {
		t.Errorf("modseqs: %d, %d, mailbox %d", msgs[0].ModSeq, msgs[1].ModSeq, mb.ModSeq)
	}
	bytes, n, err := st.Usage(ctx, alice)
	if err != nil || n != 2 || bytes != mb.Size {
		t.Errorf("Usage = %d, %d, %v", bytes, n, err)
	}
	if st.Size() < bytes {
		t.Errorf("Size() = %d < %d", st.Size(), bytes)
	}
}

func TestDeliverErrors(t *testing.T) { forBodyKinds(t, testDeliverErrors) }

func testDeliverErrors(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 100)
	tests := []struct {
		name, user, mailbox, body string
		want                      error
	}{
		{"unknown user", "nobody@example.test", "", "x", store.ErrNoSuchUser},
		{"unknown mailbox", alice, "Nope", "x", store.ErrNoSuchMailbox},
		{"invalid mailbox", alice, "a//b", "x", store.ErrInvalidMailbox},
		{"over quota", alice, "", strings.Repeat("x", 101), store.ErrQuotaExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.Deliver(ctx, tt.user, tt.mailbox, strings.NewReader(tt.body), nil, time.Time{})
			if !errors.Is(err, tt.want) {
				t.Errorf("Deliver = %v, want %v", err, tt.want)
			}
		})
	}
	// Up to the quota is fine, then nothing more.
	deliver(t, st, "", strings.Repeat("x", 100))
	if _, err := st.Deliver(ctx, alice, "", strings.NewReader("y"), nil, time.Time{}); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Errorf("Deliver beyond quota = %v", err)
	}
	// Copy counts against the quota too.
	if _, err := st.Copy(ctx, alice, "INBOX", []uint32{1}, "Archive"); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Errorf("Copy beyond quota = %v", err)
	}
	// No body file is left behind by refused deliveries.
	if n := countBodies(t, st); n != 1 {
		t.Errorf("%d body files, want 1", n)
	}
}

// countBodies counts the bodies stored, in files and in the index.
func countBodies(t testing.TB, st *store.Store) int {
	t.Helper()
	files, inline, err := store.Bodies(st)
	if err != nil {
		t.Fatal(err)
	}
	if inlineMax == 0 && inline > 0 {
		t.Errorf("%d bodies in the index, want none", inline)
	}
	return files + inline
}

func TestFlagsExpungeCopyMove(t *testing.T) { forBodyKinds(t, testFlagsExpungeCopyMove) }

func testFlagsExpungeCopyMove(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	for i := 1; i <= 5; i++ {
		deliver(t, st, "", msg(fmt.Sprint(i)))
	}
	before, _ := st.Mailbox(ctx, alice, "INBOX")
	got, err := st.SetFlags(ctx, alice, "INBOX", []uint32{2, 4, 9}, store.FlagsAdd, []string{`\Deleted`, "Work"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(uidsOf(got), []uint32{2, 4}) || !slices.Equal(got[0].Flags, []string{`\Deleted`, "Work"}) {
		t.Errorf("SetFlags = %+v", got)
	}
	after, _ := st.Mailbox(ctx, alice, "INBOX")
	if after.ModSeq != before.ModSeq+1 || got[0].ModSeq != after.ModSeq {
		t.Errorf("modseq %d -> %d, message %d", before.ModSeq, after.ModSeq, got[0].ModSeq)
	}
	got, _ = st.SetFlags(ctx, alice, "INBOX", []uint32{4}, store.FlagsRemove, []string{"work"})
	if !slices.Equal(got[0].Flags, []string{`\Deleted`}) {
		t.Errorf("after -FLAGS: %v", got[0].Flags)
	}
	// UID EXPUNGE restricted to 4, then a full EXPUNGE.
	exp, err := st.Expunge(ctx, alice, "INBOX", []uint32{4})
	if err != nil || !slices.Equal(exp, []uint32{4}) {
		t.Errorf("Expunge(4) = %v, %v", exp, err)
	}
	exp, _ = st.Expunge(ctx, alice, "INBOX", nil)
	if !slices.Equal(exp, []uint32{2}) {
		t.Errorf("Expunge = %v", exp)
	}
	cr, err := st.Copy(ctx, alice, "INBOX", []uint32{1, 3}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	arch, _ := st.Mailbox(ctx, alice, "Archive")
	if !slices.Equal(cr.SourceUIDs, []uint32{1, 3}) || !slices.Equal(cr.DestUIDs, []uint32{1, 2}) || cr.UIDValidity != arch.UIDValidity {
		t.Errorf("Copy = %+v", cr)
	}
	mr, err := st.Move(ctx, alice, "INBOX", []uint32{3, 5}, "Trash")
	if err != nil || !slices.Equal(mr.DestUIDs, []uint32{1, 2}) {
		t.Errorf("Move = %+v, %v", mr, err)
	}
	_, inbox, _ := st.Messages(ctx, alice, "INBOX")
	_, trash, _ := st.Messages(ctx, alice, "Trash")
	_, archive, _ := st.Messages(ctx, alice, "Archive")
	if !slices.Equal(uidsOf(inbox), []uint32{1}) || len(trash) != 2 || len(archive) != 2 {
		t.Errorf("INBOX %v, Trash %v, Archive %v", uidsOf(inbox), uidsOf(trash), uidsOf(archive))
	}
	if b := readBody(t, st, trash[1]); b != msg("5") {
		t.Errorf("moved body = %q", b)
	}
	if b := readBody(t, st, archive[1]); b != msg("3") {
		t.Errorf("copied body = %q", b)
	}
	_, n, _ := st.Usage(ctx, alice)
	if n != 5 || countBodies(t, st) != 5 {
		t.Errorf("usage %d messages, %d files, want 5", n, countBodies(t, st))
	}
	// Deleting a mailbox removes its messages and bodies.
	if err := st.DeleteMailbox(ctx, alice, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := st.Usage(ctx, alice); n != 3 || countBodies(t, st) != 3 {
		t.Errorf("after delete: %d messages, %d files", n, countBodies(t, st))
	}
	if err := st.CreateMailbox(ctx, alice, "Trash/Old", ""); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMailbox(ctx, alice, "Trash"); !errors.Is(err, store.ErrHasChildren) {
		t.Errorf("DeleteMailbox(parent) = %v, want ErrHasChildren", err)
	}
	if err := st.DeleteMailbox(ctx, alice, "inbox"); !errors.Is(err, store.ErrInboxNotAllowed) {
		t.Errorf("DeleteMailbox(INBOX) = %v", err)
	}
}

func TestMailboxOps(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	for _, name := range []string{"Work", "Work/2025", "Work/2026"} {
		if err := st.CreateMailbox(ctx, alice, name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateMailbox(ctx, alice, "work/2025", ""); err != nil {
		t.Errorf("names are case-sensitive except INBOX: %v", err)
	}
	if err := st.CreateMailbox(ctx, alice, "Work", ""); !errors.Is(err, store.ErrMailboxExists) {
		t.Errorf("CreateMailbox twice = %v", err)
	}
	deliver(t, st, "Work/2025", msg("old"))
	if err := st.RenameMailbox(ctx, alice, "Work", "Job"); err != nil {
		t.Fatal(err)
	}
	_, msgs, err := st.Messages(ctx, alice, "Job/2025")
	if err != nil || len(msgs) != 1 {
		t.Errorf("Messages(Job/2025) = %v, %v", msgs, err)
	}
	if _, err := st.Mailbox(ctx, alice, "Work/2026"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("old child still there: %v", err)
	}
	// Renaming INBOX moves its messages and leaves an empty INBOX.
	deliver(t, st, "", msg("in"))
	old, _ := st.Mailbox(ctx, alice, "INBOX")
	if err := st.RenameMailbox(ctx, alice, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	inbox, _ := st.Mailbox(ctx, alice, "INBOX")
	moved, _ := st.Mailbox(ctx, alice, "Old")
	if inbox.Messages != 0 || moved.Messages != 1 || moved.UIDValidity != old.UIDValidity || inbox.UIDValidity == old.UIDValidity {
		t.Errorf("INBOX %+v, Old %+v", inbox, moved)
	}
	if err := st.SetSubscribed(ctx, alice, "Old", false); err != nil {
		t.Fatal(err)
	}
	if mb, _ := st.Mailbox(ctx, alice, "Old"); mb.Subscribed {
		t.Error("still subscribed")
	}
}

// TestReopenAfterCrash simulates a crash: files that a delivery left before
// its index commit (a temporary file, a renamed body) must go on the next
// Open, and committed messages must stay intact.
func TestReopenAfterCrash(t *testing.T) { forBodyKinds(t, testReopenAfterCrash) }

func testReopenAfterCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		deliver(t, st, "", msg(fmt.Sprint(i)))
	}
	// What an interrupted delivery leaves: a body not yet committed.
	store.AbortBeforeCommit(st)
	if _, err := st.Deliver(ctx, alice, "", strings.NewReader("lost"), nil, time.Time{}); err == nil {
		t.Fatal("Deliver with crash hook succeeded")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	orphans := []string{
		filepath.Join(dir, "msg", "ab", "abababababababababababababababab"),
		filepath.Join(dir, "msg", "cd", "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd.tmp"),
		filepath.Join(dir, "msg", "00", "junk"),
	}
	for _, p := range orphans {
		if err := os.WriteFile(p, []byte("orphan"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st = openStore(t, dir)
	defer st.Close()
	for _, p := range orphans {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("orphan %s still there: %v", p, err)
		}
	}
	_, msgs, err := st.Messages(ctx, alice, "INBOX")
	if err != nil || len(msgs) != 3 {
		t.Fatalf("Messages = %d, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if got := readBody(t, st, m); got != msg(fmt.Sprint(i)) {
			t.Errorf("body %d = %q", m.UID, got)
		}
	}
	if n := countBodies(t, st); n != 3 {
		t.Errorf("%d body files, want 3", n)
	}
	// UIDs continue after the committed ones.
	if uid := deliver(t, st, "", msg("after")); uid != 4 {
		t.Errorf("UID after reopen = %d, want 4", uid)
	}
}

func TestWatch(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	var mu sync.Mutex
	var got []store.Change
	cancel := st.Watch(func(c store.Change) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	})
	inbox, _ := st.Mailbox(ctx, alice, "INBOX")
	deliver(t, st, "", msg("x"))
	cancel()
	deliver(t, st, "", msg("y"))
	mu.Lock()
	defer mu.Unlock()
	if want := []store.Change{{User: alice, MailboxID: inbox.ID}}; !reflect.DeepEqual(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
}

// TestConcurrent runs deliveries, flag changes, copies and expunges at once;
// run it with -race. Every delivered message must end up with a distinct
// UID, and the counters must match the contents.
func TestConcurrent(t *testing.T) { forBodyKinds(t, testConcurrent) }

func testConcurrent(t *testing.T) {
	ctx := context.Background()
	st := newStore(t, 0)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	uids := make(chan uint32, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				uid, err := st.Deliver(ctx, alice, "", strings.NewReader(msg(fmt.Sprint(w, i))), nil, time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				uids <- uid
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= 50; i++ {
			if _, err := st.SetFlags(ctx, alice, "INBOX", []uint32{uint32(i)}, store.FlagsAdd, []string{`\Seen`}); err != nil {
				t.Error(err)
			}
			if _, err := st.Copy(ctx, alice, "INBOX", []uint32{uint32(i)}, "Archive"); err != nil {
				t.Error(err)
			}
			if _, _, err := st.Messages(ctx, alice, "INBOX"); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	close(uids)
	seen := map[uint32]bool{}
	for uid := range uids {
		if seen[uid] {
			t.Errorf("UID %d given twice", uid)
		}
		seen[uid] = true
	}
	mb, msgs, _ := st.Messages(ctx, alice, "INBOX")
	am, archived, _ := st.Messages(ctx, alice, "Archive")
	if len(msgs) != writers*each || mb.Messages != len(msgs) || am.Messages != len(archived) {
		t.Errorf("INBOX %d messages (counter %d), Archive %d (counter %d)", len(msgs), mb.Messages, len(archived), am.Messages)
	}
	_, n, _ := st.Usage(ctx, alice)
	if n != len(msgs)+len(archived) || countBodies(t, st) != n {
		t.Errorf("usage %d messages, %d files, want %d", n, countBodies(t, st), len(msgs)+len(archived))
	}
}

func BenchmarkDeliver(b *testing.B) {
	st := newStore(b, 0)
	body := bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KiB
	b.SetBytes(int64(len(body)))
	// About 10 concurrent writers, as many SMTP sessions delivering.
	b.SetParallelism(max(1, 10/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.Deliver(context.Background(), alice, "", bytes.NewReader(body), nil, time.Time{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkMessages10k(b *testing.B) {
	st := newStore(b, 0)
	body := bytes.Repeat([]byte("x"), 1024)
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if _, err := st.Deliver(context.Background(), alice, "", bytes.NewReader(body), []string{`\Seen`}, time.Time{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		_, msgs, err := st.Messages(context.Background(), alice, "INBOX")
		if err != nil || len(msgs) != 10000 {
			b.Fatalf("Messages = %d, %v", len(msgs), err)
		}
	}
}

// TestCrashKill kills a process in the middle of concurrent deliveries
// (SIGKILL: no Close, no deferred code) and reopens its store: every
// delivery that was acknowledged must be there, intact, and no file may be
// left that the index does not reference.
func TestCrashKill(t *testing.T) {
	if dir := os.Getenv("STORE_CRASH_CHILD"); dir != "" {
		crashChild(dir, os.Getenv("STORE_CRASH_FILES") == "1")
		return
	}
	forBodyKinds(t, testCrashKill)
}

func testCrashKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill$")
	cmd.Env = append(os.Environ(), "STORE_CRASH_CHILD="+dir)
	if inlineMax == 0 {
		cmd.Env = append(cmd.Env, "STORE_CRASH_FILES=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint32]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var uid uint32
		var tag string
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %s", &uid, &tag); err != nil {
			continue
		}
		acked[uid] = tag
		if len(acked) == 200 {
			cmd.Process.Kill()
			break
		}
	}
	cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("child acknowledged only %d deliveries", len(acked))
	}
	before, _ := filepath.Glob(filepath.Join(dir, "msg", "*", "*"))
	st := openStore(t, dir)
	defer st.Close()
	_, msgs, err := st.Messages(context.Background(), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files before reopening", len(before))
	byUID := map[uint32]store.Message{}
	for _, m := range msgs {
		byUID[m.UID] = m
	}
	for uid, tag := range acked {
		m, ok := byUID[uid]
		if !ok {
			t.Errorf("acknowledged UID %d lost", uid)
			continue
		}
		if got := readBody(t, st, m); got != msg(tag) {
			t.Errorf("UID %d body = %q, want %q", uid, got, msg(tag))
		}
	}
	if n := countBodies(t, st); n != len(msgs) {
		t.Errorf("%d body files for %d messages after crash recovery", n, len(msgs))
	}
	t.Logf("%d acknowledged, %d committed, all intact", len(acked), len(msgs))
}

func crashChild(dir string, files bool) {
	ctx := context.Background()
	st, err := store.Open(ctx, dir, nil)
	if err != nil {
		panic(err)
	}
	if files {
		store.SetInlineMax(st, 0)
	}
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		panic(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				tag := fmt.Sprintf("w%d-%d", w, i)
				uid, err := st.Deliver(ctx, alice, "", strings.NewReader(msg(tag)), nil, time.Time{})
				if err != nil {
					panic(err)
				}
				mu.Lock()
				fmt.Printf("ack %d %s\n", uid, tag)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// BenchmarkOpenBody reads 10 KiB bodies, as FETCH BODY[] does, kept in
// the index and in files.
func BenchmarkOpenBody(b *testing.B) {
	for _, k := range []struct {
		name string
		max  int
	}{{"index", store.MaxInlineBody}, {"files", 0}} {
		b.Run(k.name, func(b *testing.B) {
			st := newStore(b, 0)
			store.SetInlineMax(st, k.max)
			body := bytes.Repeat([]byte("0123456789abcdef"), 640)
			for i := 0; i < 1000; i++ {
				if _, err := st.Deliver(context.Background(), alice, "", bytes.NewReader(body), nil, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
			_, msgs, err := st.Messages(context.Background(), alice, "INBOX")
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := st.OpenBody(context.Background(), msgs[i%len(msgs)])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
