package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestPostgres runs every test of the package against one private
// PostgreSQL cluster (started once: it takes seconds), a database each.
func TestPostgres(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	pg := testenv.StartPostgres(t)
	pg.RunOnDatabases(t, []testenv.DatabaseTest{
		{Name: "Migrate", Fn: testMigrate},
		{Name: "MigrationIsOneTransaction", Fn: testMigrationIsOneTransaction},
		{Name: "Operations", Fn: testOperations},
		{Name: "Quota", Fn: testQuota},
		{Name: "ConcurrentDeliveries", Fn: testConcurrentDeliveries},
		{Name: "WatchAcrossStores", Fn: testWatchAcrossStores},
		{Name: "ConcurrentMixed", Fn: testConcurrentMixed},
		{Name: "CrashKeepsAcknowledged", Fn: func(t *testing.T, url string) { testCrash(t, pg, url) }},
		{Name: "Bodies", Fn: testBodies},
		{Name: "LargeBody", Fn: testLargeBody},
		{Name: "InsertBodyWhole", Fn: testInsertBodyWhole},
		{Name: "MigrateBodies", Fn: testMigrateBodies},
		{Name: "BodyOutlivesExpunge", Fn: testBodyOutlivesExpunge},
		{Name: "SweepBodies", Fn: testSweepBodies},
		{Name: "CopyExpungeRace", Fn: testCopyExpungeRace},
		{Name: "IMAPFetchDuringExpunge", Fn: testIMAPFetchDuringExpunge},
		{Name: "MailboxOps", Fn: testMailboxOps},
		{Name: "CopyMove", Fn: testCopyMove},
		{Name: "CopyQuota", Fn: testCopyQuota},
		{Name: "ClaimRecent", Fn: testClaimRecent},
		{Name: "Vanished", Fn: testVanished},
		{Name: "HeaderCache", Fn: testHeaderCache},
		{Name: "FeedCatchUp", Fn: testFeedCatchUp},
		{Name: "WatchMailboxOps", Fn: testWatchMailboxOps},
		{Name: "ConcurrentIMAP", Fn: testConcurrentIMAP},
		{Name: "IMAPTwoNodes", Fn: testIMAPTwoNodes},
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(ctxT(t), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func migrated(t *testing.T, url string) *Store {
	t.Helper()
	if _, _, err := Migrate(ctxT(t), url); err != nil {
		t.Fatal(err)
	}
	return open(t, url)
}

func exec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func testMigrate(t *testing.T, url string) {
	ctx := ctxT(t)
	if _, err := Open(ctx, url, nil); !errors.Is(err, ErrSchemaTooOld) {
		t.Fatalf("Open of an empty database: %v, want ErrSchemaTooOld", err)
	}
	from, to, err := Migrate(ctx, url)
	if err != nil || from != 0 || to != SchemaVersion() {
		t.Fatalf("Migrate: %d -> %d, %v; want 0 -> %d", from, to, err, SchemaVersion())
	}
	from, to, err = Migrate(ctx, url)
	if err != nil || from != to || to != SchemaVersion() {
		t.Fatalf("Migrate again: %d -> %d, %v; want nothing to do", from, to, err)
	}
	open(t, url)

	// A newer mailctl migrated the database: this one must not touch it.
	exec(t, url, "INSERT INTO schema_version (version, name) VALUES ($1, 'future.sql')", SchemaVersion()+1)
	_, _, err = Migrate(ctx, url)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Migrate of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	want := fmt.Sprintf("the database is at schema %d, this mailctl knows up to %d", SchemaVersion()+1, SchemaVersion())
	if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Migrate of a newer schema: %q, want one line saying %q", err, want)
	}
	if _, err := Open(ctx, url, nil); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

func testMigrationIsOneTransaction(t *testing.T, url string) {
	ctx := ctxT(t)
	fsys := fstest.MapFS{
		"migrations/0001_a.sql": {Data: []byte("CREATE TABLE a (x int);")},
		"migrations/0002_b.sql": {Data: []byte("CREATE TABLE b (x int); INSERT INTO a VALUES (1); SELECT no_such_function();")},
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, to, err := migrate(ctx, pool, fsys)
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("broken migration: %v, want an error naming 0002_b.sql", err)
	}
	if to != 1 {
		t.Fatalf("broken migration: reached schema %d, want 1", to)
	}
	var v int
	var b, rows bool
	err = pool.QueryRow(ctx, `SELECT (SELECT max(version) FROM schema_version), to_regclass('b') IS NOT NULL,
		EXISTS (SELECT 1 FROM a)`).Scan(&v, &b, &rows)
	if err != nil {
		t.Fatal(err)
	}
	if v != 1 || b || rows {
		t.Fatalf("after the failed migration 2: version %d, table b %v, rows in a %v; want 1, false, false", v, b, rows)
	}
	fsys["migrations/0002_b.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (x int);")}
	if from, to, err := migrate(ctx, pool, fsys); err != nil || from != 1 || to != 2 {
		t.Fatalf("fixed migration: %d -> %d, %v; want 1 -> 2", from, to, err)
	}
}

func readBody(t *testing.T, s *Store, m store.Message) string {
	t.Helper()
	b, err := s.OpenBody(ctxT(t), m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func testOperations(t *testing.T, url string) {
	ctx := ctxT(t)
	s := migrated(t, url)
	if _, err := s.Mailboxes(ctx, "alice"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Fatalf("Mailboxes of an unknown user: %v, want ErrNoSuchUser", err)
	}
	for range 2 {
		if err := s.EnsureUser(ctx, "alice", 0); err != nil {
			t.Fatal(err)
		}
	}
	mbs, err := s.Mailboxes(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	validity := map[uint32]bool{}
	for _, mb := range mbs {
		names = append(names, mb.Name+mb.SpecialUse)
		validity[mb.UIDValidity] = true
		if mb.UIDNext != 1 || mb.Messages != 0 || !mb.Subscribed {
			t.Errorf("new mailbox %+v: want UIDNEXT 1, empty, subscribed", mb)
		}
	}
	if got, want := strings.Join(names, " "), `INBOX Archive\Archive Drafts\Drafts Junk\Junk Sent\Sent Trash\Trash`; got != want {
		t.Fatalf("default mailboxes %q, want %q", got, want)
	}
	if len(validity) != len(mbs) {
		t.Errorf("UIDVALIDITY shared between mailboxes: %+v", mbs)
	}
	if err := s.CreateMailbox(ctx, "alice", "Work/2026", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "alice", "Work/2026", ""); !errors.Is(err, store.ErrMailboxExists) {
		t.Fatalf("second CreateMailbox: %v, want ErrMailboxExists", err)
	}
	if err := s.CreateMailbox(ctx, "alice", "a//b", ""); !errors.Is(err, store.ErrInvalidMailbox) {
		t.Fatalf("CreateMailbox a//b: %v, want ErrInvalidMailbox", err)
	}
	if _, err := s.Deliver(ctx, "bob", "", strings.NewReader("x"), nil, time.Time{}); !errors.Is(err, store.ErrNoSuchUser) {
		t.Fatalf("Deliver to an unknown user: %v, want ErrNoSuchUser", err)
	}
	if _, err := s.Deliver(ctx, "alice", "Nope", strings.NewReader("x"), nil, time.Time{}); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Fatalf("Deliver to an unknown mailbox: %v, want ErrNoSuchMailbox", err)
	}

	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	bodies := []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nsecond\r\n", "Subject: three\r\n\r\n\x00binary\xff\r\n"}
	for i, b := range bodies {
		uid, err := s.Deliver(ctx, "alice", "inbox", strings.NewReader(b), []string{`\seen`, "$Label", `\Recent`}, date)
		if err != nil || uid != uint32(i+1) {
			t.Fatalf("Deliver %d: uid %d, %v; want %d", i, uid, err, i+1)
		}
	}
	inbox, err := s.Mailbox(ctx, "alice", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	validityA, uid, err := s.Append(ctx, "alice", "Work/2026", strings.NewReader("appended"), nil, time.Time{})
	if err != nil || uid != 1 {
		t.Fatalf("Append: uid %d, %v", uid, err)
	}
	work, _ := s.Mailbox(ctx, "alice", "Work/2026")
	if validityA != work.UIDValidity {
		t.Fatalf("Append: UIDVALIDITY %d, mailbox has %d", validityA, work.UIDValidity)
	}

	mb, msgs, err := s.Messages(ctx, "alice", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Messages != 3 || mb.UIDNext != 4 || len(msgs) != 3 || mb.Size != int64(len(bodies[0])+len(bodies[1])+len(bodies[2])) {
		t.Fatalf("INBOX %+v with %d messages, want 3 messages, UIDNEXT 4", mb, len(msgs))
	}
	for i, m := range msgs {
		if m.UID != uint32(i+1) || !m.InternalDate.Equal(date) || m.Size != int64(len(bodies[i])) ||
			!slices.Equal(m.Flags, []string{`\Seen`, "$Label"}) {
			t.Errorf("message %d: %+v", i, m)
		}
		if i > 0 && m.ModSeq <= msgs[i-1].ModSeq {
			t.Errorf("message %d: MODSEQ %d not above the previous %d", i, m.ModSeq, msgs[i-1].ModSeq)
		}
		if got := readBody(t, s, m); got != bodies[i] {
			t.Errorf("body %d: %q, want %q", i, got, bodies[i])
		}
	}
	if mb.ModSeq != msgs[2].ModSeq {
		t.Errorf("HIGHESTMODSEQ %d, last message has %d", mb.ModSeq, msgs[2].ModSeq)
	}

	// Flags: a change bumps MODSEQ; no change keeps it.
	out, err := s.SetFlags(ctx, "alice", "INBOX", []uint32{3, 1, 99}, store.FlagsAdd, []string{`\deleted`})
	if err != nil || len(out) != 2 || out[0].UID != 1 || out[1].UID != 3 {
		t.Fatalf("SetFlags: %+v, %v; want UIDs 1 and 3", out, err)
	}
	after, _ := s.Mailbox(ctx, "alice", "INBOX")
	if after.ModSeq != inbox.ModSeq+1 || out[0].ModSeq != after.ModSeq || out[1].ModSeq != after.ModSeq {
		t.Fatalf("after SetFlags: HIGHESTMODSEQ %d (was %d), messages at %d and %d", after.ModSeq, inbox.ModSeq, out[0].ModSeq, out[1].ModSeq)
	}
	if !out[0].HasFlag(`\Deleted`) || !out[0].HasFlag(`\Seen`) {
		t.Fatalf("SetFlags: flags %v", out[0].Flags)
	}
	if _, err := s.SetFlags(ctx, "alice", "INBOX", []uint32{1}, store.FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	if same, _ := s.Mailbox(ctx, "alice", "INBOX"); same.ModSeq != after.ModSeq {
		t.Fatalf("SetFlags without a change moved HIGHESTMODSEQ %d -> %d", after.ModSeq, same.ModSeq)
	}
	out, err = s.SetFlags(ctx, "alice", "INBOX", []uint32{2}, store.FlagsReplace, []string{"$x"})
	if err != nil || !slices.Equal(out[0].Flags, []string{"$x"}) {
		t.Fatalf("SetFlags replace: %+v, %v", out, err)
	}
	out, err = s.SetFlags(ctx, "alice", "INBOX", []uint32{2}, store.FlagsRemove, []string{"$X"})
	if err != nil || len(out[0].Flags) != 0 {
		t.Fatalf("SetFlags remove: %+v, %v", out, err)
	}

	// CONDSTORE: message 1 last changed at after.ModSeq, message 2 since.
	cur, _ := s.Mailbox(ctx, "alice", "INBOX")
	out, modified, err := s.SetFlagsUnchangedSince(ctx, "alice", "INBOX", []uint32{1, 2}, store.FlagsAdd, []string{store.FlagFlagged}, after.ModSeq)
	if err != nil || !slices.Equal(modified, []uint32{2}) || len(out) != 1 || out[0].UID != 1 || !out[0].HasFlag(store.FlagFlagged) || out[0].ModSeq != cur.ModSeq+1 {
		t.Fatalf("STORE UNCHANGEDSINCE %d: updated %+v, modified %v, %v; want UID 1 updated at %d, UID 2 modified",
			after.ModSeq, out, modified, err, cur.ModSeq+1)
	}
	_, now, _ := s.Messages(ctx, "alice", "INBOX")
	if now[1].HasFlag(store.FlagFlagged) {
		t.Fatalf("STORE UNCHANGEDSINCE changed the modified message 2: %v", now[1].Flags)
	}

	// Expunge: only \Deleted, only the UIDs asked for.
	gone, err := s.Expunge(ctx, "alice", "INBOX", []uint32{3})
	if err != nil || !slices.Equal(gone, []uint32{3}) {
		t.Fatalf("UID EXPUNGE 3: %v, %v", gone, err)
	}
	gone, err = s.Expunge(ctx, "alice", "INBOX", nil)
	if err != nil || !slices.Equal(gone, []uint32{1}) {
		t.Fatalf("EXPUNGE: %v, %v; want [1]", gone, err)
	}
	if _, err := s.OpenBody(ctx, msgs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenBody of an expunged message: %v, want os.ErrNotExist", err)
	}
	mb, msgs2, err := s.Messages(ctx, "alice", "INBOX")
	if err != nil || len(msgs2) != 1 || msgs2[0].UID != 2 || mb.Messages != 1 || mb.Size != int64(len(bodies[1])) || mb.UIDNext != 4 {
		t.Fatalf("after EXPUNGE: %+v %+v, %v", mb, msgs2, err)
	}
	if uid, err := s.Deliver(ctx, "alice", "", strings.NewReader("again"), nil, time.Time{}); err != nil || uid != 4 {
		t.Fatalf("Deliver after EXPUNGE: uid %d, %v; want 4 (UIDs are never reused)", uid, err)
	}
}

func testQuota(t *testing.T, url string) {
	ctx := ctxT(t)
	s := migrated(t, url)
	if err := s.EnsureUser(ctx, "q", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, "q", "", strings.NewReader("123456"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, "q", "", strings.NewReader("123456"), nil, time.Time{}); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Fatalf("Deliver beyond the quota: %v, want ErrQuotaExceeded", err)
	}
	mb, msgs, err := s.Messages(ctx, "q", "INBOX")
	if err != nil || len(msgs) != 1 || mb.UIDNext != 2 {
		t.Fatalf("after a refused delivery: %+v, %d messages, %v; want one message, UIDNEXT 2", mb, len(msgs), err)
	}
	if _, err := s.SetFlags(ctx, "q", "INBOX", []uint32{1}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if used, n, err := s.Usage(ctx, "q"); err != nil || used != 6 || n != 1 {
		t.Fatalf("Usage before EXPUNGE: %d bytes, %d messages, %v; want 6, 1", used, n, err)
	}
	if _, err := s.Expunge(ctx, "q", "INBOX", nil); err != nil {
		t.Fatal(err)
	}
	if used, n, err := s.Usage(ctx, "q"); err != nil || used != 0 || n != 0 {
		t.Fatalf("Usage after EXPUNGE: %d bytes, %d messages, %v; want 0, 0", used, n, err)
	}
	if q, err := s.Quota(ctx, "q"); err != nil || q != 10 {
		t.Fatalf("Quota: %d, %v; want 10", q, err)
	}
	if _, err := s.Quota(ctx, "nobody"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Fatalf("Quota of an unknown user: %v, want ErrNoSuchUser", err)
	}
	if err := s.EnsureUser(ctx, "Q", 0); err != nil {
		t.Fatal(err)
	}
	if users, err := s.Users(ctx); err != nil || !slices.Equal(users, []string{"Q", "q"}) {
		t.Fatalf("Users: %v, %v; want [Q q]", users, err)
	}
	if _, err := s.Deliver(ctx, "q", "", strings.NewReader("1234567890"), nil, time.Time{}); err != nil {
		t.Fatalf("Deliver after freeing the quota: %v", err)
	}
}

// testConcurrentDeliveries delivers from many goroutines through two
// Stores (two nodes) into one mailbox: every delivery gets its own UID,
// UIDs are 1..n without a hole, and MODSEQs are all distinct.
func testConcurrentDeliveries(t *testing.T, url string) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	defer func() {
		if t.Failed() {
			t.Logf("failed with seed %d", seed)
		}
	}()
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	ctx := ctxT(t)
	a := migrated(t, url)
	b := open(t, url)
	if err := a.EnsureUser(ctx, "c", 0); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 12
	type result struct {
		uid  uint32
		body string
	}
	results := make(chan result, workers*each)
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		plan := make([]int, each) // body sizes, drawn before the goroutines start
		for i := range plan {
			plan[i] = rng.IntN(4096)
		}
		node := []*Store{a, b}[rng.IntN(2)]
		wg.Go(func() {
			for i, n := range plan {
				body := fmt.Sprintf("w%d m%d ", w, i) + strings.Repeat("x", n)
				uid, err := node.Deliver(ctx, "c", "", strings.NewReader(body), nil, time.Time{})
				if err != nil {
					errs <- err
					return
				}
				results <- result{uid, body}
			}
		})
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	byUID := map[uint32]string{}
	for r := range results {
		if prev, dup := byUID[r.uid]; dup {
			t.Fatalf("UID %d given twice: %q and %q", r.uid, prev[:8], r.body[:8])
		}
		byUID[r.uid] = r.body
	}
	mb, msgs, err := b.Messages(ctx, "c", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	n := workers * each
	if len(msgs) != n || mb.UIDNext != uint32(n+1) || mb.Messages != n {
		t.Fatalf("%d messages, UIDNEXT %d, count %d; want %d, %d", len(msgs), mb.UIDNext, mb.Messages, n, n+1)
	}
	modseqs := map[uint64]bool{}
	for i, m := range msgs {
		if m.UID != uint32(i+1) {
			t.Fatalf("message %d has UID %d: a hole", i, m.UID)
		}
		if modseqs[m.ModSeq] {
			t.Fatalf("MODSEQ %d given twice", m.ModSeq)
		}
		modseqs[m.ModSeq] = true
		if i%37 == 0 {
			if got := readBody(t, a, m); got != byUID[m.UID] {
				t.Fatalf("UID %d: body %q..., delivered %q...", m.UID, got[:8], byUID[m.UID][:8])
			}
		}
	}
}

// testWatchAcrossStores: a change made through one Store reaches the
// watchers of another on the same database within a second; a delivery
// that rolls back announces nothing.
func testWatchAcrossStores(t *testing.T, url string) {
	ctx := ctxT(t)
	a := migrated(t, url)
	b := open(t, url)
	if err := a.EnsureUser(ctx, "w", 6); err != nil {
		t.Fatal(err)
	}
	inbox, err := a.Mailbox(ctx, "w", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan store.Change, 16)
	cancel := a.Watch(func(c store.Change) { changes <- c })
	defer cancel()
	expect := func(what string) {
		t.Helper()
		select {
		case c := <-changes:
			if c.User != "w" || c.MailboxID != inbox.ID {
				t.Fatalf("%s: change %+v, want user w, mailbox %d", what, c, inbox.ID)
			}
		case <-time.After(time.Second):
			t.Fatalf("%s on node B: node A heard nothing within a second", what)
		}
	}
	if _, err := b.Deliver(ctx, "w", "", strings.NewReader("hello"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	expect("Deliver")
	if _, err := b.Deliver(ctx, "w", "", strings.NewReader("too big"), nil, time.Time{}); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Fatalf("Deliver beyond the quota: %v", err)
	}
	expectNone := func(what string) {
		t.Helper()
		select {
		case c := <-changes:
			t.Fatalf("%s: change %+v announced", what, c)
		case <-time.After(300 * time.Millisecond):
		}
	}
	expectNone("a delivery refused (rolled back)")
	if _, err := b.SetFlags(ctx, "w", "INBOX", []uint32{1}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	expect("SetFlags")
	if _, err := b.Expunge(ctx, "w", "INBOX", nil); err != nil {
		t.Fatal(err)
	}
	expect("Expunge")
	cancel()
	if _, err := b.Deliver(ctx, "w", "", strings.NewReader("x"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	expectNone("a delivery after the watcher was cancelled")
}

// testCrash: every delivery acknowledged before the database crashes
// (immediate shutdown, WAL replayed at restart) is there afterwards, and
// the change feed of a Store that lived through the crash resumes.
func testCrash(t *testing.T, pg *testenv.Postgres, url string) {
	ctx := ctxT(t)
	a := migrated(t, url)
	if err := a.EnsureUser(ctx, "k", 0); err != nil {
		t.Fatal(err)
	}
	changes := make(chan store.Change, 64)
	defer a.Watch(func(c store.Change) {
		select {
		case changes <- c:
		default:
		}
	})()
	acked := map[uint32]string{}
	for i := range 20 {
		body := fmt.Sprintf("message %d before the crash", i)
		uid, err := a.Deliver(ctx, "k", "", strings.NewReader(body), nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		acked[uid] = body
	}
	pg.Crash(t)

	b := open(t, url)
	_, msgs, err := b.Messages(ctx, "k", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(acked) {
		t.Fatalf("after the crash: %d messages, %d were acknowledged", len(msgs), len(acked))
	}
	for _, m := range msgs {
		if got := readBody(t, b, m); got != acked[m.UID] {
			t.Fatalf("after the crash: UID %d holds %q, acknowledged %q", m.UID, got, acked[m.UID])
		}
	}
	for len(changes) > 0 {
		<-changes
	}
	// The feed reconnects with a backoff of at most 5 s; what is
	// committed before it is back is not announced, so deliver until it
	// is heard.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := b.Deliver(ctx, "k", "", strings.NewReader("after"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-changes:
			if c.User != "k" {
				t.Fatalf("change %+v, want user k", c)
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the change feed of a Store opened before the crash did not resume within 20 s")
		}
	}
}

// testConcurrentMixed runs deliveries, flag changes and expunges at once
// through two Stores on two mailboxes of one user (seeded): no deadlock or
// other error, and afterwards the counters agree with the rows.
func testConcurrentMixed(t *testing.T, url string) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	defer func() {
		if t.Failed() {
			t.Logf("failed with seed %d", seed)
		}
	}()
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	ctx := ctxT(t)
	a := migrated(t, url)
	b := open(t, url)
	if err := a.EnsureUser(ctx, "m", 0); err != nil {
		t.Fatal(err)
	}
	type op struct {
		kind    int // 0 deliver, 1 flag \Deleted, 2 expunge, 3 unflag
		node    *Store
		mailbox string
		uid     uint32
		size    int
	}
	const workers, each = 8, 20
	plans := make([][]op, workers)
	for w := range plans {
		for range each {
			plans[w] = append(plans[w], op{
				kind: rng.IntN(4), node: []*Store{a, b}[rng.IntN(2)],
				mailbox: []string{"INBOX", "Archive"}[rng.IntN(2)],
				uid:     uint32(1 + rng.IntN(30)), size: 1 + rng.IntN(2000),
			})
		}
	}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for _, plan := range plans {
		wg.Go(func() {
			for _, o := range plan {
				var err error
				switch o.kind {
				case 0:
					_, err = o.node.Deliver(ctx, "m", o.mailbox, strings.NewReader(strings.Repeat("y", o.size)), nil, time.Time{})
				case 1:
					_, err = o.node.SetFlags(ctx, "m", o.mailbox, []uint32{o.uid, o.uid + 1}, store.FlagsAdd, []string{store.FlagDeleted})
				case 2:
					_, err = o.node.Expunge(ctx, "m", o.mailbox, nil)
				case 3:
					_, err = o.node.SetFlags(ctx, "m", o.mailbox, []uint32{o.uid}, store.FlagsRemove, []string{store.FlagDeleted})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total int64
	var count int
	for _, name := range []string{"INBOX", "Archive"} {
		mb, msgs, err := a.Messages(ctx, "m", name)
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, m := range msgs {
			size += m.Size
			if m.ModSeq > mb.ModSeq {
				t.Fatalf("%s: UID %d at MODSEQ %d above HIGHESTMODSEQ %d", name, m.UID, m.ModSeq, mb.ModSeq)
			}
			if m.UID >= mb.UIDNext {
				t.Fatalf("%s: UID %d not below UIDNEXT %d", name, m.UID, mb.UIDNext)
			}
		}
		if mb.Messages != len(msgs) || mb.Size != size {
			t.Fatalf("%s: counters say %d messages, %d bytes; rows %d, %d", name, mb.Messages, mb.Size, len(msgs), size)
		}
		total += size
		count += len(msgs)
	}
	var used, messages int64
	if err := a.pool.QueryRow(ctx, "SELECT used, messages FROM users WHERE name = 'm'").Scan(&used, &messages); err != nil {
		t.Fatal(err)
	}
	if used != total || messages != int64(count) {
		t.Fatalf("user counters %d bytes, %d messages; mailboxes hold %d, %d", used, messages, total, count)
	}
}
