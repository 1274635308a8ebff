package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestPostgresChanges runs the tests of incremental sync (ChangesSince and
// the IMAP server's use of it) on one private cluster.
func TestPostgresChanges(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	testenv.StartPostgres(t).RunOnDatabases(t, []testenv.DatabaseTest{
		{Name: "ChangesSince", Fn: testChangesSince},
		{Name: "ChangesMatchFullRead", Fn: testChangesMatchFullRead},
		{Name: "IMAPSyncReadsChanges", Fn: testIMAPSyncReadsChanges},
		{Name: "IMAPOwnStoreReadsNothing", Fn: testIMAPOwnStoreReadsNothing},
		{Name: "IMAPCommandAsksOnce", Fn: testIMAPCommandAsksOnce},
		{Name: "IMAPConcurrentSelects", Fn: testIMAPConcurrentSelects},
	})
}

// testChangesSince: after one flag change in a 2000-message mailbox, the
// changes since are that one message; expunges come as ranges; records
// trimmed past the MODSEQ asked make the answer incomplete; a missing
// mailbox or user is the store's usual error.
func testChangesSince(t *testing.T, url string) {
	s := migrated(t, url)
	ctx := ctxT(t)
	importN(t, s, alice, 2000, func(uint32) []string { return nil })
	mb := mailboxOf(t, s, "INBOX")
	got, changed, vanished, complete, err := s.ChangesSince(ctx, alice, mb.ID, mb.ModSeq)
	if err != nil || !complete || len(changed) != 0 || len(vanished) != 0 || got.ModSeq != mb.ModSeq || got.Name != "INBOX" {
		t.Fatalf("ChangesSince(now) = %+v, %d changed, %v, %v, %v", got, len(changed), vanished, complete, err)
	}
	if _, err := s.SetFlags(ctx, alice, "INBOX", []uint32{1234}, store.FlagsAdd, []string{store.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	got, changed, vanished, complete, err = s.ChangesSince(ctx, alice, mb.ID, mb.ModSeq)
	if err != nil || !complete || len(vanished) != 0 {
		t.Fatalf("ChangesSince after a STORE: %v, %v, %v", vanished, complete, err)
	}
	if len(changed) != 1 || changed[0].UID != 1234 || !slices.Equal(changed[0].Flags, []string{store.FlagFlagged}) || changed[0].ModSeq != got.ModSeq {
		t.Fatalf("ChangesSince after a STORE of UID 1234: %+v (mailbox MODSEQ %d)", changed, got.ModSeq)
	}
	afterStore := got.ModSeq
	expungeUIDs(t, s, "INBOX", 5, 6, 7, 9)
	_, changed, vanished, complete, err = s.ChangesSince(ctx, alice, mb.ID, afterStore)
	if err != nil || !complete || len(changed) != 0 || !reflect.DeepEqual(vanished, [][2]uint32{{5, 7}, {9, 9}}) {
		t.Fatalf("ChangesSince after EXPUNGE: %d changed, %v, %v, %v", len(changed), vanished, complete, err)
	}

	maxVanishedRows, vanishedKeep = 2, 1
	t.Cleanup(func() { maxVanishedRows, vanishedKeep = 8192, 4096 })
	for _, uid := range []uint32{20, 22, 24, 26} {
		expungeUIDs(t, s, "INBOX", uid)
	}
	if _, _, _, complete, err = s.ChangesSince(ctx, alice, mb.ID, afterStore); err != nil || complete {
		t.Fatalf("ChangesSince from before the trimmed records: complete %v, %v; want incomplete", complete, err)
	}

	if _, _, _, _, err := s.ChangesSince(ctx, alice, 999999, 0); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("ChangesSince of no mailbox: %v, want ErrNoSuchMailbox", err)
	}
	if _, _, _, _, err := s.ChangesSince(ctx, "nobody@example.test", mb.ID, 0); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("ChangesSince of no user: %v, want ErrNoSuchUser", err)
	}
}

// testChangesMatchFullRead: two nodes change a mailbox by seeded random
// deliveries, flag changes, expunges, copies and moves in and out; a
// snapshot brought up to date with ChangesSince from time to time is, at
// each step, what MessagesByID reads.
func testChangesMatchFullRead(t *testing.T, url string) {
	nodes := []*Store{newUser(t, url, 0), open(t, url)}
	ctx := ctxT(t)
	if err := nodes[0].CreateMailbox(ctx, alice, "Other", ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		deliver(t, nodes[0], "Other", msg(fmt.Sprint("other ", i)))
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	defer func() {
		if t.Failed() {
			t.Logf("failed with seed %d", seed)
		}
	}()
	r := rand.New(rand.NewPCG(seed, 0))
	inbox := mailboxOf(t, nodes[0], "INBOX")
	snap, snapMsgs := inbox, []store.Message(nil)
	flags := []string{store.FlagSeen, store.FlagFlagged, "$Label1", "Keyword"}
	for step := 0; step < 150; step++ {
		s := nodes[r.IntN(2)]
		_, cur, err := s.MessagesByID(ctx, alice, inbox.ID)
		if err != nil {
			t.Fatal(err)
		}
		some := func() []uint32 {
			var uids []uint32
			for _, m := range cur {
				if r.IntN(4) == 0 {
					uids = append(uids, m.UID)
				}
			}
			return uids
		}
		switch op := r.IntN(6); {
		case op == 0 || len(cur) < 3:
			deliver(t, s, "INBOX", msg(fmt.Sprint("step ", step)), flags[:r.IntN(3)]...)
		case op == 1:
			if _, err := s.SetFlags(ctx, alice, "INBOX", some(), store.FlagOp(r.IntN(3)), []string{flags[r.IntN(len(flags))]}); err != nil {
				t.Fatal(err)
			}
		case op == 2:
			if _, err := s.Expunge(ctx, alice, "INBOX", some()); err != nil {
				t.Fatal(err)
			}
		case op == 3:
			if uids := some(); len(uids) > 0 {
				if _, err := s.Move(ctx, alice, "INBOX", uids, "Other"); err != nil {
					t.Fatal(err)
				}
			}
		case op == 4:
			_, other, err := s.Messages(ctx, alice, "Other")
			if err != nil {
				t.Fatal(err)
			}
			if len(other) > 0 {
				if _, err := s.Copy(ctx, alice, "Other", []uint32{other[r.IntN(len(other))].UID}, "INBOX"); err != nil {
					t.Fatal(err)
				}
			}
		default:
			if uids := some(); len(uids) > 0 {
				if _, err := s.Copy(ctx, alice, "INBOX", uids, "INBOX"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if r.IntN(3) == 0 {
			continue // several changes between two syncs
		}
		mb, changed, vanished, complete, err := nodes[r.IntN(2)].ChangesSince(ctx, alice, inbox.ID, snap.ModSeq)
		if err != nil || !complete {
			t.Fatalf("step %d: ChangesSince(%d): complete %v, %v", step, snap.ModSeq, complete, err)
		}
		next := store.ApplyChanges(snapMsgs, changed, vanished)
		fullMb, full, err := s.MessagesByID(ctx, alice, inbox.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fullMb.ModSeq == mb.ModSeq && !equalMessages(next, full) {
			t.Fatalf("step %d: snapshot at MODSEQ %d brought to %d:\n%v\nfull read:\n%v", step, snap.ModSeq, mb.ModSeq, next, full)
		}
		if !reflect.DeepEqual(mb, fullMb) {
			t.Fatalf("step %d: mailbox %+v, full read %+v", step, mb, fullMb)
		}
		snap, snapMsgs = mb, next
	}
}

// equalMessages compares messages as the IMAP server uses them.
func equalMessages(a, b []store.Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.UID != y.UID || x.ModSeq != y.ModSeq || x.Size != y.Size || x.Ref != y.Ref ||
			!x.InternalDate.Equal(y.InternalDate) || !slices.Equal(x.Flags, y.Flags) {
			return false
		}
	}
	return true
}

// readCounter counts the reads of a mailbox's messages by the IMAP
// server.
type readCounter struct {
	*Store
	messagesByID, changesSince, mailboxByID atomic.Int64
}

func (c *readCounter) MessagesByID(ctx context.Context, user string, id uint64) (store.Mailbox, []store.Message, error) {
	c.messagesByID.Add(1)
	return c.Store.MessagesByID(ctx, user, id)
}

func (c *readCounter) ChangesSince(ctx context.Context, user string, id, modseq uint64) (store.Mailbox, []store.Message, [][2]uint32, bool, error) {
	c.changesSince.Add(1)
	return c.Store.ChangesSince(ctx, user, id, modseq)
}

func (c *readCounter) MailboxByID(ctx context.Context, user string, id uint64) (store.Mailbox, error) {
	c.mailboxByID.Add(1)
	return c.Store.MailboxByID(ctx, user, id)
}

func (c *readCounter) counts() [3]int64 {
	return [3]int64{c.messagesByID.Load(), c.changesSince.Load(), c.mailboxByID.Load()}
}

// testIMAPSyncReadsChanges: an IMAP node on a 2000-message mailbox reads
// the whole list once. A second SELECT after the first session logged
// out reads nothing more than the mailbox record SELECT reads anyway; a
// flag changed on another node reaches a session (and a later SELECT)
// as the rows changed, never as a new read of every message; and what
// the clients see is the mailbox as it is.
func testIMAPSyncReadsChanges(t *testing.T, url string) {
	other := migrated(t, url)
	importN(t, other, alice, 2000, func(uid uint32) []string {
		if uid%2 == 0 {
			return []string{store.FlagSeen}
		}
		return nil
	})
	node := &readCounter{Store: open(t, url)}
	addr := serveIMAP(t, node)
	ctx := ctxT(t)

	selectInbox := func() *imapclient.Client {
		c := dialIMAP(t, addr, nil)
		d, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if d.NumMessages != 2000 {
			t.Fatalf("SELECT: EXISTS %d, want 2000", d.NumMessages)
		}
		return c
	}
	flagsOf := func(c *imapclient.Client, uid uint32) []goimap.Flag {
		t.Helper()
		msgs, err := c.Fetch(goimap.UIDSetNum(goimap.UID(uid)), &goimap.FetchOptions{Flags: true}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("UID FETCH %d FLAGS: %v, %v", uid, msgs, err)
		}
		return msgs[0].Flags
	}

	c := selectInbox()
	if got := node.counts(); got[0] != 1 {
		t.Fatalf("first SELECT: %d full reads, want 1", got[0])
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	before := node.counts()
	c = selectInbox()
	if got := node.counts(); got != before {
		t.Errorf("second SELECT of an unchanged mailbox: reads (full, changes, record) went from %v to %v, want none", before, got)
	}

	// Another node flags one message while the session has the mailbox.
	if _, err := other.SetFlags(ctx, alice, "INBOX", []uint32{7}, store.FlagsAdd, []string{store.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	before = node.counts()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(flagsOf(c, 7), goimap.FlagFlagged) {
		if time.Now().After(deadline) {
			t.Fatal("the session never saw the flag set on the other node")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := node.counts()
	if got[0] != before[0] || got[1] == before[1] {
		t.Errorf("sync after one flag change: full reads %d -> %d, change reads %d -> %d; want changes only",
			before[0], got[0], before[1], got[1])
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// Changed while no session has it: the kept snapshot is brought up
	// to date with the changes.
	if _, err := other.SetFlags(ctx, alice, "INBOX", []uint32{8}, store.FlagsRemove, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	expungeUIDs(t, other, "INBOX", 1999)
	before = node.counts()
	c = dialIMAP(t, addr, nil)
	d, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	got = node.counts()
	if got[0] != before[0] {
		t.Errorf("SELECT after changes on another node: %d full reads, want 0", got[0]-before[0])
	}
	_, want, err := other.Messages(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if d.NumMessages != uint32(len(want)) || d.NumMessages != 1999 {
		t.Errorf("SELECT: EXISTS %d, want 1999", d.NumMessages)
	}
	all, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var gotLines, wantLines []string
	for _, m := range all {
		gotLines = append(gotLines, fmt.Sprint(m.UID, m.Flags))
	}
	for _, m := range want {
		wantLines = append(wantLines, fmt.Sprint(m.UID, imapFlagsOf(m.Flags)))
	}
	if strings.Join(gotLines, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("FETCH 1:* after SELECT of the kept snapshot differs from the store")
	}
}

func imapFlagsOf(flags []string) []goimap.Flag {
	out := make([]goimap.Flag, len(flags))
	for i, f := range flags {
		out[i] = goimap.Flag(f)
	}
	return out
}

// testIMAPConcurrentSelects: 4 clients that log in, select a
// 2000-message mailbox and log out 10 times each, at once, as the
// benchmark's login_select phase: the node reads the message list once
// in all, and at most one mailbox record a cycle beyond SELECT's.
func testIMAPConcurrentSelects(t *testing.T, url string) {
	other := migrated(t, url)
	importN(t, other, alice, 2000, func(uint32) []string { return nil })
	node := &readCounter{Store: open(t, url)}
	addr := serveIMAP(t, node)
	const clients, cycles = 4, 10
	start := time.Now()
	errs := make(chan error, clients)
	for range clients {
		go func() {
			for range cycles {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				c := imapclient.New(raw, nil)
				if err := c.Login(alice, "pw").Wait(); err != nil {
					c.Close()
					errs <- err
					return
				}
				d, err := c.Select("INBOX", nil).Wait()
				if err == nil && d.NumMessages != 2000 {
					err = fmt.Errorf("SELECT: EXISTS %d, want 2000", d.NumMessages)
				}
				if err == nil {
					err = c.Logout().Wait()
				}
				c.Close()
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := node.counts()
	t.Logf("%d cycles in %s: full reads, change reads, records: %v", clients*cycles, time.Since(start), got)
	if got[0] != 1 || got[1] != 0 || got[2] > clients*cycles {
		t.Errorf("%d LOGIN+SELECT cycles: reads (full, changes, record) %v; want 1 full read, no change read, at most %d records",
			clients*cycles, got, clients*cycles)
	}
}

// testIMAPOwnStoreReadsNothing: a session's STORE 1:* on 2000 messages
// brings its node's snapshot up to date from what SetFlags returned: the
// node reads no message rows for it (neither its own sync nor the one the
// change feed triggers), and another session of the node sees the new
// flags, as does a session on another node.
func testIMAPOwnStoreReadsNothing(t *testing.T, url string) {
	other := migrated(t, url)
	importN(t, other, alice, 2000, func(uint32) []string { return nil })
	node := &readCounter{Store: open(t, url)}
	addr := serveIMAP(t, node)
	c := dialIMAP(t, addr, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	watcher := dialIMAP(t, addr, nil)
	if _, err := watcher.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	before := node.counts()
	all := goimap.SeqSet{}
	all.AddRange(1, 0)
	for _, op := range []goimap.StoreFlagsOp{goimap.StoreFlagsAdd, goimap.StoreFlagsDel, goimap.StoreFlagsAdd} {
		if err := c.Store(all, &goimap.StoreFlags{Op: op, Silent: true, Flags: []goimap.Flag{goimap.FlagFlagged}}, nil).Close(); err != nil {
			t.Fatalf("STORE: %v", err)
		}
		t.Logf("after STORE %v: %v", op, node.counts())
	}
	// Time for the change feed's notifications of the three writes to
	// reach the node.
	time.Sleep(500 * time.Millisecond)
	msgs, err := watcher.Fetch(all, &goimap.FetchOptions{Flags: true, UID: true}).Collect()
	if err != nil || len(msgs) != 2000 {
		t.Fatalf("FETCH 1:* FLAGS on the other session: %d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if !slices.Contains(m.Flags, goimap.FlagFlagged) {
			t.Fatalf("the other session sees UID %d with %v after STORE +FLAGS (\\Flagged)", m.UID, m.Flags)
		}
	}
	got := node.counts()
	if got[0] != before[0] || got[1] != before[1] {
		t.Errorf("3 STOREs of 2000 messages by a session: full reads %d -> %d, change reads %d -> %d; want none",
			before[0], got[0], before[1], got[1])
	}
	mb, err := other.Mailbox(ctxT(t), alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	d, err := watcher.Status("INBOX", &goimap.StatusOptions{HighestModSeq: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if d.HighestModSeq != mb.ModSeq {
		t.Errorf("HIGHESTMODSEQ on the node %d, in the store %d", d.HighestModSeq, mb.ModSeq)
	}
}

// testIMAPCommandAsksOnce: a SEARCH asks the store whether the mailbox
// changed once (before it runs), not a second time in the Poll that
// go-imap runs after it; a NOOP, which syncs nothing itself, asks once
// and sees another node's change.
func testIMAPCommandAsksOnce(t *testing.T, url string) {
	other := migrated(t, url)
	importN(t, other, alice, 100, func(uint32) []string { return nil })
	node := &readCounter{Store: open(t, url)}
	addr := serveIMAP(t, node)
	c := dialIMAP(t, addr, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	before := node.counts()
	const n = 10
	for range n {
		if _, err := c.Search(&goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if got := node.counts(); got[2]-before[2] != n {
		t.Errorf("%d SEARCH UNSEEN: %d reads of the mailbox record, want %d (one per command)", n, got[2]-before[2], n)
	}
	if _, err := other.SetFlags(ctxT(t), alice, "INBOX", []uint32{5}, store.FlagsAdd, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	before = node.counts()
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := node.counts(); got[2]-before[2] < 1 {
		t.Errorf("NOOP did not ask the store (%v -> %v)", before, got)
	}
	data, err := c.Search(&goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagSeen}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if all := data.AllSeqNums(); len(all) != 1 || all[0] != 5 {
		t.Errorf("SEARCH SEEN after another node's STORE = %v, want [5]", all)
	}
}
