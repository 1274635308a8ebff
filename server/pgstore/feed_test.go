package pgstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

// testFeedCatchUp: when the change feed's connection is lost (its backend
// terminated), the changes committed before it is back are announced
// once it is: every mailbox changed meanwhile, a deleted one included.
func testFeedCatchUp(t *testing.T, url string) {
	ctx := ctxT(t)
	a := migrated(t, url)
	b := open(t, url)
	for _, u := range []string{"f", "g"} {
		if err := a.EnsureUser(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CreateMailbox(ctx, "g", "Doomed", ""); err != nil {
		t.Fatal(err)
	}
	inbox, _ := a.Mailbox(ctx, "f", "INBOX")
	archive, _ := a.Mailbox(ctx, "g", "Archive")
	doomed, _ := a.Mailbox(ctx, "g", "Doomed")
	var mu sync.Mutex
	heard := map[store.Change]int{}
	defer a.Watch(func(c store.Change) {
		mu.Lock()
		heard[c]++
		mu.Unlock()
	})()
	// While the feed is down: changes by the other node.
	var once sync.Once
	done := make(chan error, 1)
	hook := func() {
		once.Do(func() {
			_, err := b.Deliver(ctx, "f", "", strings.NewReader("while down"), nil, time.Time{})
			if err == nil {
				_, err = b.Copy(ctx, "f", "INBOX", []uint32{1}, "INBOX")
			}
			if err == nil {
				_, err = b.Deliver(ctx, "g", "Archive", strings.NewReader("while down"), nil, time.Time{})
			}
			if err == nil {
				err = b.DeleteMailbox(ctx, "g", "Doomed")
			}
			done <- err
		})
	}
	a.listen.lost.Store(&hook)
	exec(t, url, "SELECT pg_terminate_backend($1)", int32(a.listen.pid.Load()))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not notice its terminated connection within 10 s")
	}
	want := []store.Change{{User: "f", MailboxID: inbox.ID}, {User: "g", MailboxID: archive.ID}, {User: "g", MailboxID: doomed.ID}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		var missing []store.Change
		for _, c := range want {
			if heard[c] == 0 {
				missing = append(missing, c)
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the feed's connection was terminated, no change announced for %+v", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And the new connection carries the changes that follow.
	mu.Lock()
	before := heard[want[0]]
	mu.Unlock()
	if _, err := b.Deliver(ctx, "f", "", strings.NewReader("after"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := heard[want[0]]
		mu.Unlock()
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a delivery after the reconnection was not heard within a second")
		}
	}
}

// testConcurrentIMAP runs random Deliver, SetFlags, Copy, Move and
// Expunge from goroutines on two Stores (two nodes) over three mailboxes
// of one user (seeded, the seed printed), then checks: no UID given twice
// in a mailbox and each worker's UIDs in a mailbox increasing; each
// mailbox's HIGHESTMODSEQ is 1 plus the number of its changes (no MODSEQ
// shared by two transactions) and above its messages'; every UID given
// is either in the mailbox or reported by Vanished, never both; counters
// equal the rows; bodies' reference counts equal their messages.
func testConcurrentIMAP(t *testing.T, url string) {
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
	const user = "x"
	if err := a.EnsureUser(ctx, user, 0); err != nil {
		t.Fatal(err)
	}
	boxes := []string{"INBOX", "Archive", "Trash"}
	type op struct {
		kind     int // 0 deliver, 1 flag \Deleted, 2 unflag, 3 expunge, 4 copy, 5 move
		node     *Store
		src, dst string
		uids     []uint32
		size     int
	}
	const workers, each = 8, 25
	plans := make([][]op, workers)
	for w := range plans {
		for range each {
			o := op{kind: rng.IntN(6), node: []*Store{a, b}[rng.IntN(2)],
				src: boxes[rng.IntN(3)], dst: boxes[rng.IntN(3)], size: 1 + rng.IntN(3000)}
			for range 1 + rng.IntN(4) {
				o.uids = append(o.uids, uint32(1+rng.IntN(40)))
			}
			plans[w] = append(plans[w], o)
		}
	}
	type result struct {
		bumps map[string]int
		given map[string][]uint32 // UIDs given, in order
	}
	results := make([]result, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	var kw sync.Mutex
	kwSeq := 0
	keyword := func() string { // unique: a replace always changes the flags
		kw.Lock()
		defer kw.Unlock()
		kwSeq++
		return fmt.Sprint("$k", kwSeq)
	}
	for w, plan := range plans {
		r := result{bumps: map[string]int{}, given: map[string][]uint32{}}
		results[w] = r
		wg.Go(func() {
			for _, o := range plan {
				var err error
				switch o.kind {
				case 0:
					var uid uint32
					uid, err = o.node.Deliver(ctx, user, o.src, strings.NewReader(strings.Repeat("d", o.size)), nil, time.Time{})
					if err == nil {
						r.bumps[o.src]++
						r.given[o.src] = append(r.given[o.src], uid)
					}
				case 1, 2:
					flags := []string{keyword()}
					if o.kind == 1 {
						flags = append(flags, store.FlagDeleted)
					}
					var out []store.Message
					out, err = o.node.SetFlags(ctx, user, o.src, o.uids, store.FlagsReplace, flags)
					if len(out) > 0 {
						r.bumps[o.src]++
					}
				case 3:
					var gone []uint32
					gone, err = o.node.Expunge(ctx, user, o.src, o.uids)
					if len(gone) > 0 {
						r.bumps[o.src]++
					}
				case 4, 5:
					var res store.CopyResult
					if o.kind == 4 {
						res, err = o.node.Copy(ctx, user, o.src, o.uids, o.dst)
					} else {
						res, err = o.node.Move(ctx, user, o.src, o.uids, o.dst)
					}
					if err == nil && len(res.SourceUIDs) > 0 {
						r.bumps[o.dst]++
						if o.kind == 5 && o.src != o.dst {
							r.bumps[o.src]++
						}
						r.given[o.dst] = append(r.given[o.dst], res.DestUIDs...)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("op %+v: %w", o, err)
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
	for _, name := range boxes {
		given := map[uint32]bool{}
		bumps := 0
		for w, r := range results {
			if !slices.IsSorted(r.given[name]) {
				t.Errorf("%s: worker %d was given UIDs %v, not increasing", name, w, r.given[name])
			}
			for _, uid := range r.given[name] {
				if given[uid] {
					t.Fatalf("%s: UID %d given twice", name, uid)
				}
				given[uid] = true
			}
			bumps += r.bumps[name]
		}
		mb, msgs, err := a.Messages(ctx, user, name)
		if err != nil {
			t.Fatal(err)
		}
		if mb.ModSeq != uint64(1+bumps) {
			t.Errorf("%s: HIGHESTMODSEQ %d after %d changes from 1: a MODSEQ shared or skipped", name, mb.ModSeq, bumps)
		}
		var size int64
		present := map[uint32]bool{}
		for _, m := range msgs {
			size += m.Size
			present[m.UID] = true
			if m.ModSeq > mb.ModSeq || m.UID >= mb.UIDNext || !given[m.UID] {
				t.Errorf("%s: message %+v (HIGHESTMODSEQ %d, UIDNEXT %d, given %v)", name, m, mb.ModSeq, mb.UIDNext, given[m.UID])
			}
		}
		if mb.Messages != len(msgs) || mb.Size != size {
			t.Errorf("%s: counters say %d messages, %d bytes; rows %d, %d", name, mb.Messages, mb.Size, len(msgs), size)
		}
		if int(mb.UIDNext) != len(given)+1 {
			t.Errorf("%s: UIDNEXT %d after %d UIDs given", name, mb.UIDNext, len(given))
		}
		ranges, complete, err := a.Vanished(ctx, user, mb.ID, 0)
		if err != nil || !complete {
			t.Fatalf("%s: Vanished(0): complete %v, %v", name, complete, err)
		}
		vanished := map[uint32]bool{}
		for _, r := range ranges {
			for uid := r[0]; uid <= r[1]; uid++ {
				vanished[uid] = true
			}
		}
		for uid := range given {
			if present[uid] == vanished[uid] {
				t.Errorf("%s: UID %d present %v, vanished %v", name, uid, present[uid], vanished[uid])
			}
		}
		total += size
		count += len(msgs)
	}
	used, n, err := a.Usage(ctx, user)
	if err != nil || used != total || n != count {
		t.Errorf("user counters %d bytes, %d messages, %v; mailboxes hold %d, %d", used, n, err, total, count)
	}
	var badRefs, orphanChunks int
	if err := a.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM bodies b WHERE b.refs <> (SELECT count(*) FROM messages m WHERE m.body_id = b.id)
			OR (b.refs > 0) = (b.released_at IS NOT NULL)),
		(SELECT count(*) FROM body_chunks c WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = c.body_id)
			AND NOT EXISTS (SELECT 1 FROM bodies b WHERE b.id = c.body_id AND b.released_at IS NOT NULL))`).Scan(&badRefs, &orphanChunks); err != nil {
		t.Fatal(err)
	}
	if badRefs != 0 || orphanChunks != 0 {
		t.Errorf("%d bodies whose reference count or release is wrong, %d chunks of no message's body nor a released one", badRefs, orphanChunks)
	}
}

// testWatchMailboxOps: Copy, Move, RenameMailbox and DeleteMailbox on
// node B reach node A's watchers within a second, one change per mailbox
// changed; ClaimRecent and SetSubscribed, which change no message, are
// not announced.
func testWatchMailboxOps(t *testing.T, url string) {
	ctx := ctxT(t)
	a := newUser(t, url, 0)
	b := open(t, url)
	inbox, archive, trash := mailboxOf(t, a, "INBOX"), mailboxOf(t, a, "Archive"), mailboxOf(t, a, "Trash")
	changes := make(chan store.Change, 16)
	defer a.Watch(func(c store.Change) { changes <- c })()
	expect := func(what string, ids ...uint64) {
		t.Helper()
		var got []uint64
		timeout := time.After(time.Second)
		for len(got) < len(ids) {
			select {
			case c := <-changes:
				if c.User != alice {
					t.Fatalf("%s: change %+v of another user", what, c)
				}
				got = append(got, c.MailboxID)
			case <-timeout:
				t.Fatalf("%s on node B: node A heard %v within a second, want %v", what, got, ids)
			}
		}
		slices.Sort(got)
		slices.Sort(ids)
		if !slices.Equal(got, ids) {
			t.Fatalf("%s on node B: node A heard changes of %v, want %v", what, got, ids)
		}
		select {
		case c := <-changes:
			t.Fatalf("%s on node B: one change too many, %+v", what, c)
		case <-time.After(100 * time.Millisecond):
		}
	}
	deliver(t, b, "", msg("w"))
	expect("Deliver", inbox.ID)
	if _, err := b.Copy(ctx, alice, "INBOX", []uint32{1}, "Archive"); err != nil {
		t.Fatal(err)
	}
	expect("Copy", archive.ID)
	if _, err := b.Move(ctx, alice, "INBOX", []uint32{1}, "Trash"); err != nil {
		t.Fatal(err)
	}
	expect("Move", inbox.ID, trash.ID)
	if _, err := b.ClaimRecent(ctx, alice, trash.ID, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.SetSubscribed(ctx, alice, "Trash", false); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateMailbox(ctx, alice, "Trash/Old", ""); err != nil {
		t.Fatal(err)
	}
	old := mailboxOf(t, a, "Trash/Old")
	expect("ClaimRecent, SetSubscribed and CreateMailbox")
	if err := b.RenameMailbox(ctx, alice, "Trash", "Bin"); err != nil {
		t.Fatal(err)
	}
	expect("RenameMailbox with a child", trash.ID, old.ID)
	if err := b.DeleteMailbox(ctx, alice, "Bin/Old"); err != nil {
		t.Fatal(err)
	}
	expect("DeleteMailbox", old.ID)
}
