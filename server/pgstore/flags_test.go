package pgstore

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestPostgresFlags runs the tests of SetFlags computed in the database
// and of the node's header cache (issue 20's benchmark, STORE and SEARCH
// SUBJECT) on one private cluster.
func TestPostgresFlags(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	testenv.StartPostgres(t).RunOnDatabases(t, []testenv.DatabaseTest{
		{Name: "SameAsEmbedded", Fn: testFlagsSameAsEmbedded},
		{Name: "ConcurrentReplay", Fn: testFlagsConcurrentReplay},
		{Name: "OneStatementUnderLock", Fn: testFlagsOneStatement},
		{Name: "RowsStayOnTheirPage", Fn: testFlagsStayOnPage},
		{Name: "HeadersCached", Fn: testHeadersCached},
	})
}

// flagPool: system flags, keywords that differ only in case (one flag),
// and a flag that normalizeFlags drops.
var flagPool = []string{store.FlagSeen, store.FlagFlagged, store.FlagDeleted, store.FlagAnswered, store.FlagDraft,
	"$Junk", "$junk", "$Label1", "$LABEL1", "foo", `\seen`, `\Bogus`}

// flagCall is one SetFlags or SetFlagsUnchangedSince call.
type flagCall struct {
	uids  []uint32
	op    store.FlagOp
	flags []string
	cond  bool
	since uint64
}

func (c flagCall) String() string {
	op := [...]string{"FLAGS", "+FLAGS", "-FLAGS"}[c.op]
	s := fmt.Sprintf("%s %q on %d UIDs", op, c.flags, len(c.uids))
	if c.cond {
		s += fmt.Sprintf(" UNCHANGEDSINCE %d", c.since)
	}
	return s
}

// randomCall makes a call on UIDs up to top (some of them gone, some
// beyond the last), UNCHANGEDSINCE near highest a third of the time.
func randomCall(rng *mrand.Rand, top uint32, highest uint64) flagCall {
	var c flagCall
	c.op = store.FlagOp(rng.IntN(3))
	for range rng.IntN(4) {
		c.flags = append(c.flags, flagPool[rng.IntN(len(flagPool))])
	}
	switch rng.IntN(3) {
	case 0: // 1:*
		for u := uint32(1); u <= top; u++ {
			c.uids = append(c.uids, u)
		}
	case 1: // a range, past the end sometimes
		lo := 1 + rng.Uint32N(top)
		for u := lo; u <= min(lo+rng.Uint32N(20), top+3); u++ {
			c.uids = append(c.uids, u)
		}
	default: // a few, in any order
		for range 1 + rng.IntN(8) {
			u := 1 + rng.Uint32N(top+2)
			if !slices.Contains(c.uids, u) {
				c.uids = append(c.uids, u)
			}
		}
	}
	if rng.IntN(3) == 0 {
		c.cond = true
		c.since = highest - min(highest, uint64(rng.IntN(12)))
	}
	return c
}

// flagBackend is what the tests call on both stores.
type flagBackend interface {
	SetFlags(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string) ([]store.Message, error)
	SetFlagsUnchangedSince(ctx context.Context, user, mailbox string, uids []uint32, op store.FlagOp, flags []string, unchangedSince uint64) ([]store.Message, []uint32, error)
	Messages(ctx context.Context, user, mailbox string) (store.Mailbox, []store.Message, error)
}

func (c flagCall) run(ctx context.Context, b flagBackend) ([]store.Message, []uint32, error) {
	if c.cond {
		return b.SetFlagsUnchangedSince(ctx, alice, "INBOX", c.uids, c.op, c.flags, c.since)
	}
	out, err := b.SetFlags(ctx, alice, "INBOX", c.uids, c.op, c.flags)
	return out, nil, err
}

// sameResult says how two results of a call differ ("" when they do not):
// the same messages (UID, MODSEQ, flags in the same order, date, size;
// Ref is each store's own) and the same UIDs failing UNCHANGEDSINCE.
func sameResult(a []store.Message, am []uint32, b []store.Message, bm []uint32) string {
	if !slices.Equal(am, bm) {
		return fmt.Sprintf("modified %v, want %v", am, bm)
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d messages, want %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.UID != y.UID || x.ModSeq != y.ModSeq || !slices.Equal(x.Flags, y.Flags) || x.Size != y.Size || !x.InternalDate.Equal(y.InternalDate) {
			return fmt.Sprintf("UID %d MODSEQ %d flags %q size %d, want UID %d MODSEQ %d flags %q size %d",
				x.UID, x.ModSeq, x.Flags, x.Size, y.UID, y.ModSeq, y.Flags, y.Size)
		}
	}
	return ""
}

// sameState compares the mailboxes (HIGHESTMODSEQ) and messages of both.
func sameState(t *testing.T, seed uint64, what string, pg, emb flagBackend) uint64 {
	t.Helper()
	ctx := ctxT(t)
	pmb, pm, err := pg.Messages(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	emb2, em, err := emb.Messages(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if pmb.ModSeq != emb2.ModSeq {
		t.Fatalf("seed %d: %s: HIGHESTMODSEQ %d, the embedded store's %d", seed, what, pmb.ModSeq, emb2.ModSeq)
	}
	if d := sameResult(pm, nil, em, nil); d != "" {
		t.Fatalf("seed %d: %s: messages differ from the embedded store's: %s", seed, what, d)
	}
	return pmb.ModSeq
}

// twoStores delivers the same n messages, with random flags from seed,
// to alice's INBOX on a pgstore and on an embedded store, and expunges a
// few (gaps in the UIDs).
func twoStores(t *testing.T, url string, seed uint64, n int) (*Store, *store.Store) {
	t.Helper()
	ctx := ctxT(t)
	pg := newUser(t, url, 0)
	emb, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	if err := emb.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(seed, 1))
	date := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range n {
		var flags []string
		for range rng.IntN(3) {
			flags = append(flags, flagPool[rng.IntN(len(flagPool))])
		}
		if i%7 == 3 {
			flags = append(flags, store.FlagDeleted)
		}
		body := msg(fmt.Sprintf("m%d", i))
		if _, err := pg.Deliver(ctx, alice, "INBOX", strings.NewReader(body), flags, date); err != nil {
			t.Fatal(err)
		}
		if _, err := emb.Deliver(ctx, alice, "INBOX", strings.NewReader(body), flags, date); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []interface {
		Expunge(context.Context, string, string, []uint32) ([]uint32, error)
	}{pg, emb} {
		if _, err := b.Expunge(ctx, alice, "INBOX", nil); err != nil {
			t.Fatal(err)
		}
	}
	sameState(t, seed, "after delivery", pg, emb)
	return pg, emb
}

// testFlagsSameAsEmbedded: a seeded random sequence of SetFlags,
// SetFlagsCount and SetFlagsUnchangedSince calls (replace, add, remove;
// keywords differing in case; flags that are dropped; UIDs expunged or
// beyond the last) gives, call by call, the messages (flags in the same
// order, MODSEQs) and failed UIDs of the embedded store, or the number of
// messages it changed, and the same mailbox.
func testFlagsSameAsEmbedded(t *testing.T, url string) {
	const n, calls = 60, 300
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	pg, emb := twoStores(t, url, seed, n)
	ctx := ctxT(t)
	rng := mrand.New(mrand.NewPCG(seed, 2))
	highest := sameState(t, seed, "start", pg, emb)
	for i := range calls {
		c := randomCall(rng, n, highest)
		if !c.cond && rng.IntN(3) == 0 {
			// SetFlagsCount: the number of messages the embedded store
			// changed, and the MODSEQs around the write.
			embBefore, err := emb.Mailbox(ctx, alice, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			got, before, after, err := pg.SetFlagsCount(ctx, alice, "INBOX", c.uids, c.op, c.flags)
			if err != nil {
				t.Fatalf("seed %d: call %d (%v) on pgstore (count): %v", seed, i, c, err)
			}
			eo, _, err := c.run(ctx, emb)
			if err != nil {
				t.Fatalf("seed %d: call %d (%v) on the embedded store: %v", seed, i, c, err)
			}
			want, wantAfter := 0, embBefore.ModSeq
			for _, m := range eo {
				if m.ModSeq > embBefore.ModSeq {
					want, wantAfter = want+1, m.ModSeq
				}
			}
			if got != want || before != embBefore.ModSeq || after != wantAfter {
				t.Fatalf("seed %d: call %d (%v): SetFlagsCount changed %d, MODSEQ %d -> %d; want %d, %d -> %d",
					seed, i, c, got, before, after, want, embBefore.ModSeq, wantAfter)
			}
			highest = max(highest, after)
			continue
		}
		po, pm, err := c.run(ctx, pg)
		if err != nil {
			t.Fatalf("seed %d: call %d (%v) on pgstore: %v", seed, i, c, err)
		}
		eo, em, err := c.run(ctx, emb)
		if err != nil {
			t.Fatalf("seed %d: call %d (%v) on the embedded store: %v", seed, i, c, err)
		}
		if d := sameResult(po, pm, eo, em); d != "" {
			t.Fatalf("seed %d: call %d (%v): %s", seed, i, c, d)
		}
		if i%25 == 24 || i == calls-1 {
			highest = sameState(t, seed, fmt.Sprintf("after call %d", i), pg, emb)
		} else if len(po) > 0 {
			highest = max(highest, slices.MaxFunc(po, func(a, b store.Message) int { return int(a.ModSeq) - int(b.ModSeq) }).ModSeq)
		}
	}
}

// testFlagsConcurrentReplay: goroutines run seeded random calls on one
// mailbox at once. Each call that changed something has a MODSEQ of its
// own, one more than the previous one's; replaying those calls on the
// embedded store in MODSEQ order gives each the result it gave and the
// same final mailbox; and each call that changed nothing gave what it
// gives on one of the states of the replay (a state that existed).
func testFlagsConcurrentReplay(t *testing.T, url string) {
	const n, workers, perWorker = 40, 4, 40
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	pg, emb := twoStores(t, url, seed, n)
	ctx := ctxT(t)
	start := sameState(t, seed, "start", pg, emb)
	_, initial, err := emb.Messages(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var pending []flagRecord
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(seed, uint64(10+w)))
			for range perWorker {
				mb, _, err := pg.Messages(ctx, alice, "INBOX")
				if err != nil {
					t.Error(err)
					return
				}
				c := randomCall(rng, n, mb.ModSeq)
				out, modified, err := c.run(ctx, pg)
				if err != nil {
					t.Errorf("seed %d: %v: %v", seed, c, err)
					return
				}
				r := flagRecord{c: c, out: out, modified: modified}
				for _, m := range out {
					if m.ModSeq > start {
						r.modseq = max(r.modseq, m.ModSeq)
					}
				}
				mu.Lock()
				pending = append(pending, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Which call made which MODSEQ: a search over the calls that show
	// it, on a model of the rules (flags.go), for an order in which each
	// gives its result and the others give the result of a state of it;
	// then the embedded store replays that order.
	order, states := findOrder(pending, initial, start)
	if order == nil {
		t.Fatalf("seed %d: no order of the %d calls gives their results", seed, len(pending))
	}
	for k, i := range order {
		r := pending[i]
		eo, em, err := r.c.run(ctx, emb)
		if err != nil {
			t.Fatal(err)
		}
		if d := sameResult(r.out, r.modified, eo, em); d != "" {
			t.Fatalf("seed %d: the call that made MODSEQ %d (%v), replayed: %s", seed, start+uint64(k)+1, r.c, d)
		}
		_, msgs, err := emb.Messages(ctx, alice, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if d := sameResult(msgs, nil, states[k+1], nil); d != "" {
			t.Fatalf("seed %d: after MODSEQ %d, the embedded store differs from the model: %s", seed, start+uint64(k)+1, d)
		}
	}
	sameState(t, seed, "after the replay", pg, emb)
	t.Logf("%d calls changed messages, %d changed nothing", len(order), len(pending)-len(order))
}

// flagRecord is a call made and its result.
type flagRecord struct {
	c        flagCall
	out      []store.Message
	modified []uint32
	modseq   uint64 // the highest MODSEQ in out when above start
}

// findOrder returns the indexes of the calls of recs that changed
// something, in the order of their MODSEQs, and the states before and
// after each, such that each gives its result on the state before it,
// and each of the others changes nothing and gives its result on one of
// the states (one at least as new as the MODSEQs it shows); nil if none.
func findOrder(recs []flagRecord, initial []store.Message, start uint64) ([]int, [][]store.Message) {
	used := make([]bool, len(recs))
	var order []int
	states := [][]store.Message{initial}
	var search func(next uint64) bool
	search = func(next uint64) bool {
		cur := states[len(states)-1]
		for i, r := range recs {
			if used[i] || r.modseq != next || !wouldChange(cur, r.c) {
				continue
			}
			after := applyModel(cur, r.c, next)
			var out []store.Message
			for j, m := range after {
				if slices.Contains(r.c.uids, m.UID) && !(r.c.cond && cur[j].ModSeq > r.c.since) {
					out = append(out, m)
				}
			}
			if sameResult(r.out, r.modified, out, modifiedOn(cur, r.c)) != "" {
				continue
			}
			used[i] = true
			order, states = append(order, i), append(states, after)
			if search(next + 1) {
				return true
			}
			used[i] = false
			order, states = order[:len(order)-1], states[:len(states)-1]
		}
		// No call made next: every call left must be one that changed
		// nothing.
		for i, r := range recs {
			if used[i] {
				continue
			}
			ok := false
			for k, st := range states {
				if r.modseq <= start+uint64(k) && !wouldChange(st, r.c) &&
					sameResult(r.out, r.modified, resultOn(st, r.c), modifiedOn(st, r.c)) == "" {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}
	if !search(start + 1) {
		return nil, nil
	}
	if order == nil {
		order = []int{}
	}
	return order, states
}

// applyModel returns msgs after call c, the changed ones at MODSEQ
// modseq, with the rules of flags.go.
func applyModel(msgs []store.Message, c flagCall, modseq uint64) []store.Message {
	flags, _ := normalizeFlags(c.flags)
	out := slices.Clone(msgs)
	for i, m := range out {
		if !slices.Contains(c.uids, m.UID) || c.cond && m.ModSeq > c.since {
			continue
		}
		if nf := applyFlags(m.Flags, c.op, flags); !sameFlags(nf, m.Flags) {
			out[i].Flags, out[i].ModSeq = nf, modseq
		}
	}
	return out
}

// resultOn, modifiedOn and wouldChange apply a call to a list of messages
// with the rules of flags.go (for a call that changes nothing).
func resultOn(msgs []store.Message, c flagCall) []store.Message {
	var out []store.Message
	for _, m := range msgs {
		if slices.Contains(c.uids, m.UID) && !(c.cond && m.ModSeq > c.since) {
			out = append(out, m)
		}
	}
	return out
}

func modifiedOn(msgs []store.Message, c flagCall) []uint32 {
	var out []uint32
	for _, m := range msgs {
		if slices.Contains(c.uids, m.UID) && c.cond && m.ModSeq > c.since {
			out = append(out, m.UID)
		}
	}
	return out
}

func wouldChange(msgs []store.Message, c flagCall) bool {
	flags, err := normalizeFlags(c.flags)
	if err != nil {
		return false
	}
	for _, m := range resultOn(msgs, c) {
		if !sameFlags(applyFlags(m.Flags, c.op, flags), m.Flags) {
			return true
		}
	}
	return false
}

// testFlagsOneStatement: under the mailbox's row lock, a STORE of 2000
// messages reads no message before it changes them, and waits for no
// round trip to the client: for system flags (systemFlagStatements) the
// lock, the change and the commit are one batch, the whole STORE one
// round trip; for a keyword the lock is followed by one statement
// (setFlagsQuery) and COMMIT. It was three statements after the lock
// (the messages read, the UPDATE, the stamp of the change feed), with the
// 2000 messages sent to the client and back while the lock was held.
func testFlagsOneStatement(t *testing.T, url string) {
	s := migrated(t, url)
	benchImport(t, s, alice, 2000, 200)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var tr tripTracer
	cfg.ConnConfig.Tracer = &tr
	pool, err := pgxpool.NewWithConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	traced := &Store{pool: pool, chunkSize: bodyChunk}
	all := make([]uint32, 2000)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	for _, flag := range []string{store.FlagFlagged, "$Junk"} {
		for _, op := range []store.FlagOp{store.FlagsAdd, store.FlagsAdd, store.FlagsRemove} {
			tr.reset()
			out, err := traced.SetFlags(ctxT(t), alice, "INBOX", all, op, []string{flag})
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 2000 {
				t.Fatalf("SetFlags: %d messages, want 2000", len(out))
			}
			trips := tr.get()
			lock := slices.IndexFunc(trips, func(t string) bool { return strings.Contains(t, "for no key update") })
			if lock < 0 {
				t.Fatalf("SetFlags %s: no round trip locks the mailbox: %q", flag, trips)
			}
			if flag == store.FlagFlagged {
				if lock != 0 || !strings.Contains(trips[0], "update messages") || !strings.Contains(trips[0], "update mailboxes") {
					t.Errorf("SetFlags %s of 2000 messages: round trips %q; want the first to lock, change and stamp (one transaction)", flag, trips)
				}
				continue
			}
			held := trips[lock+1:]
			if c := slices.IndexFunc(held, func(t string) bool { return strings.HasPrefix(t, "commit") }); c >= 0 {
				held = held[:c+1]
			}
			if len(held) != 2 || !strings.HasPrefix(held[1], "commit") {
				t.Errorf("SetFlags %s of 2000 messages: %d round trips under the mailbox lock (%q), want the change and COMMIT", flag, len(held), held)
			}
		}
	}
}

// tripTracer records the round trips of a pool: a statement, or a batch
// as one ("batch: " and its statements, lower case, joined by "; ").
type tripTracer struct {
	mu    sync.Mutex
	trips []string
	batch []string // statements of the batch under way
}

func (l *tripTracer) reset() {
	l.mu.Lock()
	l.trips, l.batch = nil, nil
	l.mu.Unlock()
}

func (l *tripTracer) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.trips)
}

func lowerSQL(sql string) string { return strings.ToLower(strings.Join(strings.Fields(sql), " ")) }

func (l *tripTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trips = append(l.trips, lowerSQL(d.SQL))
	return ctx
}

func (l *tripTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (l *tripTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batch = nil
	return ctx
}

func (l *tripTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batch = append(l.batch, lowerSQL(d.SQL))
}

func (l *tripTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trips = append(l.trips, "batch: "+strings.Join(l.batch, "; "))
}

// testFlagsStayOnPage: STORE +FLAGS and -FLAGS on every message of a
// mailbox of 2000, four times over, leave every message on the page
// where it was delivered: each new version is a HOT update (no new
// index entry). At fillfactor 80 most moved to other pages, with an
// entry in each of the three indexes of messages.
func testFlagsStayOnPage(t *testing.T, url string) {
	s := migrated(t, url)
	const n = 2000
	benchImport(t, s, alice, n, 200)
	pages := func() map[int64]int64 {
		t.Helper()
		rows, err := s.pool.Query(ctxT(t), `SELECT uid, (ctid::text::point)[0]::bigint FROM messages`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int64]int64{}
		var uid, page int64
		if _, err := pgx.ForEachRow(rows, []any{&uid, &page}, func() error { out[uid] = page; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := pages()
	all := make([]uint32, n)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	for range 4 {
		for _, op := range []store.FlagOp{store.FlagsAdd, store.FlagsRemove} {
			start := time.Now()
			if _, err := s.SetFlags(ctxT(t), alice, "INBOX", all, op, []string{store.FlagFlagged}); err != nil {
				t.Fatal(err)
			}
			t.Logf("STORE of %d messages: %v", n, time.Since(start).Round(time.Millisecond/10))
		}
	}
	after := pages()
	moved := 0
	for uid, p := range before {
		if after[uid] != p {
			moved++
		}
	}
	if moved > 0 || len(after) != n {
		t.Errorf("after 8 STOREs of %d messages, %d moved to another page (%d messages)", n, moved, len(after))
	}
}
