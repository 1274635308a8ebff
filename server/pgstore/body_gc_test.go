package pgstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/store"
)

// releasedRows counts the bodies released (no message uses them) and the
// chunks of bodies that no message uses.
func releasedRows(t *testing.T, s *Store) (bodies, chunks int) {
	t.Helper()
	if err := s.pool.QueryRow(ctxT(t), `SELECT
		(SELECT count(*) FROM bodies b WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = b.id)),
		(SELECT count(*) FROM body_chunks c WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = c.body_id))`).Scan(&bodies, &chunks); err != nil {
		t.Fatal(err)
	}
	return bodies, chunks
}

// waitSwept waits until the sweepers have deleted every body that no
// message uses, with its chunks.
func waitSwept(t *testing.T, s *Store, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		bodies, chunks := releasedRows(t, s)
		if bodies == 0 && chunks == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d bodies and %d chunks of no message left, want the sweeper to delete them", within, bodies, chunks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testBodyOutlivesExpunge: a body of three 1 MiB chunks opened on node A
// and expunged on node B meanwhile is read to the end on A, byte for byte
// (as the embedded store and Dovecot do); quota and usage count the
// message as gone at once; the body's rows stay for the grace, and then
// node B's sweeper deletes them.
func testBodyOutlivesExpunge(t *testing.T, url string) {
	ctx := ctxT(t)
	a := migrated(t, url)
	b := open(t, url)
	if err := a.EnsureUser(ctx, "g", 0); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3*bodyChunk)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	copy(data, "Subject: large\r\n\r\n")
	if _, err := a.Deliver(ctx, "g", "", bytes.NewReader(data), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	_, msgs, err := a.Messages(ctx, "g", "INBOX")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Messages: %v, %v", msgs, err)
	}
	r, err := a.OpenBody(ctx, msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}

	if _, err := b.SetFlags(ctx, "g", "INBOX", []uint32{msgs[0].UID}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if uids, err := b.Expunge(ctx, "g", "INBOX", nil); err != nil || len(uids) != 1 {
		t.Fatalf("Expunge on node B: %v, %v", uids, err)
	}
	if used, n, err := a.Usage(ctx, "g"); err != nil || used != 0 || n != 0 {
		t.Errorf("usage right after the expunge: %d bytes, %d messages, %v; want 0, 0", used, n, err)
	}
	if mb, err := a.Mailbox(ctx, "g", "INBOX"); err != nil || mb.Messages != 0 || mb.Size != 0 {
		t.Errorf("INBOX right after the expunge: %d messages, %d bytes, %v; want 0, 0", mb.Messages, mb.Size, err)
	}
	if _, err := a.OpenBody(ctx, msgs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenBody after the expunge: %v, want os.ErrNotExist", err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading on node A a body expunged on node B: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, data) {
		t.Fatalf("body read after the expunge: %d bytes, not the %d delivered", len(got), len(data))
	}
	p := make([]byte, 4096)
	if n, err := r.ReadAt(p, bodyChunk-10); err != nil || !bytes.Equal(p[:n], data[bodyChunk-10:bodyChunk-10+len(p)]) {
		t.Fatalf("ReadAt across chunks 0 and 1 after the expunge: %d bytes, %v", n, err)
	}

	// Within the grace (10 minutes by default) nothing is swept.
	if n, err := b.sweepBodies(ctx); err != nil || n != 0 {
		t.Fatalf("a sweep within the grace deleted %d bodies, %v; want 0", n, err)
	}
	if bodies, chunks := releasedRows(t, a); bodies != 1 || chunks != 3 {
		t.Fatalf("within the grace: %d bodies, %d chunks of no message; want 1, 3", bodies, chunks)
	}
	// Node B's sweeper, with a grace of 200ms, deletes the rows.
	b.SetBodyGrace(200 * time.Millisecond)
	waitSwept(t, a, 20*time.Second)
	if countRows(t, a, "bodies") != 0 || countRows(t, a, "body_chunks") != 0 {
		t.Fatalf("after the sweep: %d bodies, %d chunks; want none", countRows(t, a, "bodies"), countRows(t, a, "body_chunks"))
	}
	if _, err := r.ReadAt(p, 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadAt of a chunk swept: %v, want os.ErrNotExist", err)
	}
}

// testSweepBodies: one sweep deletes every body released longer than the
// grace ago, in several batches, and never a body that a message uses,
// even if its reference count says otherwise (the batch still goes).
func testSweepBodies(t *testing.T, url string) {
	ctx := ctxT(t)
	s := migrated(t, url)
	s.chunkSize = 16
	if err := s.EnsureUser(ctx, "w", 0); err != nil {
		t.Fatal(err)
	}
	n := sweepBatch + 7
	for i := range n + 1 {
		body := fmt.Sprintf("Subject: %d\r\n\r\n%s", i, strings.Repeat("x", i))
		if _, err := s.Deliver(ctx, "w", "", strings.NewReader(body), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	_, msgs, err := s.Messages(ctx, "w", "INBOX")
	if err != nil || len(msgs) != n+1 {
		t.Fatalf("Messages: %d, %v", len(msgs), err)
	}
	kept := msgs[0]
	var uids []uint32
	for _, m := range msgs[1:] {
		uids = append(uids, m.UID)
	}
	if _, err := s.SetFlags(ctx, "w", "INBOX", uids, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Expunge(ctx, "w", "INBOX", nil); err != nil || len(got) != n {
		t.Fatalf("Expunge: %d, %v", len(got), err)
	}
	// As if the grace had passed; and the kept message's body wrongly
	// released (a bug elsewhere): it must stay.
	exec(t, url, "UPDATE bodies SET released_at = now() - interval '1 hour' WHERE released_at IS NOT NULL")
	exec(t, url, "UPDATE bodies SET refs = 0, released_at = now() - interval '1 hour' WHERE id = (SELECT body_id FROM messages WHERE id = $1)", int64(kept.Ref))
	swept, err := s.sweepBodies(ctx)
	if err != nil || swept != n {
		t.Fatalf("sweep: %d bodies, %v; want %d", swept, err, n)
	}
	if bodies, chunks := releasedRows(t, s); bodies != 0 || chunks != 0 || countRows(t, s, "bodies") != 1 {
		t.Fatalf("after the sweep: %d bodies and %d chunks of no message, %d bodies in all; want 0, 0, 1", bodies, chunks, countRows(t, s, "bodies"))
	}
	if got, want := readBody(t, s, kept), "Subject: 0\r\n\r\n"; got != want {
		t.Errorf("the body a message uses after the sweep: %q, want %q", got, want)
	}
}

// raceBody is the body of the message numbered k of testCopyExpungeRace,
// of several chunks of 64 bytes.
func raceBody(k int) string {
	return fmt.Sprintf("Subject: %d\r\n\r\n%s", k, strings.Repeat(fmt.Sprintf("line %d of the race\r\n", k), 5+k%40))
}

// testCopyExpungeRace: Copy, Move, Expunge and Deliver from two nodes at
// once (seeded, bounded), with both sweepers running every few
// milliseconds: no message is ever left pointing at a swept body (every
// message's body reads back whole), reference counts equal the messages,
// and every released body is swept.
func testCopyExpungeRace(t *testing.T, url string) {
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
	const user = "r"
	if err := a.EnsureUser(ctx, user, 0); err != nil {
		t.Fatal(err)
	}
	next := 0
	for range 20 {
		if _, err := a.Deliver(ctx, user, "", strings.NewReader(raceBody(next)), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		next++
	}
	for _, s := range []*Store{a, b} {
		s.chunkSize = 64
		s.SetBodyGrace(20 * time.Millisecond)
	}
	type op struct {
		kind     int // 0 copy, 1 flag \Deleted, 2 expunge, 3 move, 4 deliver
		node     *Store
		src, dst string
		uids     []uint32
		k        int
	}
	boxes := []string{"INBOX", "Archive"}
	const workers, each = 6, 25
	plans := make([][]op, workers)
	for w := range plans {
		for range each {
			o := op{kind: rng.IntN(5), node: []*Store{a, b}[rng.IntN(2)],
				src: boxes[rng.IntN(2)], dst: boxes[rng.IntN(2)]}
			for range 1 + rng.IntN(4) {
				o.uids = append(o.uids, uint32(1+rng.IntN(60)))
			}
			if o.kind == 4 {
				o.k = next
				next++
			}
			plans[w] = append(plans[w], o)
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
					_, err = o.node.Copy(ctx, user, o.src, o.uids, o.dst)
				case 1:
					_, err = o.node.SetFlags(ctx, user, o.src, o.uids, store.FlagsAdd, []string{store.FlagDeleted})
				case 2:
					_, err = o.node.Expunge(ctx, user, o.src, nil)
				case 3:
					_, err = o.node.Move(ctx, user, o.src, o.uids, o.dst)
				case 4:
					_, err = o.node.Deliver(ctx, user, o.src, strings.NewReader(raceBody(o.k)), nil, time.Time{})
				}
				if err != nil {
					errs <- fmt.Errorf("op %d on %s: %w", o.kind, o.src, err)
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
	waitSwept(t, a, 20*time.Second)
	count := 0
	for _, name := range boxes {
		_, msgs, err := a.Messages(ctx, user, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got := readBody(t, b, m)
			var k int
			if _, err := fmt.Sscanf(got, "Subject: %d\r\n", &k); err != nil || got != raceBody(k) {
				t.Fatalf("%s UID %d: body of %d bytes %.40q is not one delivered", name, m.UID, len(got), got)
			}
		}
		count += len(msgs)
	}
	var badRefs int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM bodies b
		WHERE b.refs <> (SELECT count(*) FROM messages m WHERE m.body_id = b.id) OR b.released_at IS NOT NULL`).Scan(&badRefs); err != nil {
		t.Fatal(err)
	}
	if badRefs != 0 {
		t.Errorf("%d bodies whose reference count is not their messages' or still released", badRefs)
	}
	if used, n, err := a.Usage(ctx, user); err != nil || n != count {
		t.Errorf("usage %d bytes, %d messages, %v; the mailboxes hold %d", used, n, err, count)
	}
	t.Logf("%d messages left, %d delivered", count, next)
}

// testIMAPFetchDuringExpunge: through IMAP, a client on node A that
// reads slowly the literal of a UID FETCH BODY[] of a 4 MiB message (in
// chunks of 64 KiB, so that node A has read few of them when the client
// pauses) while a session on node B expunges the message gets every byte
// of it, then the expunge.
func testIMAPFetchDuringExpunge(t *testing.T, url string) {
	a := newUser(t, url, 0)
	b := open(t, url)
	a.chunkSize = 64 << 10
	addrA, addrB := serveIMAP(t, a), serveIMAP(t, b)
	var sb strings.Builder
	sb.WriteString("From: bob@example.test\r\nSubject: slow fetch\r\n\r\n")
	for i := 0; sb.Len() < 4<<20; i++ {
		fmt.Fprintf(&sb, "line %07d of a long message read slowly\r\n", i)
	}
	body := sb.String()
	if _, err := a.Deliver(ctxT(t), alice, "", strings.NewReader(body), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}

	// A small receive buffer, for node A to block on its writes soon.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReaderSize(conn, 4096)
	cmd := func(line string) {
		t.Helper()
		if _, err := io.WriteString(conn, line+"\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	// untilTagged reads lines up to the tagged response of tag, or the
	// line that opens a literal, and returns it.
	untilTagged := func(tag string) string {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the answer to %s: %v", tag, err)
			}
			if strings.HasPrefix(line, tag+" ") || strings.HasSuffix(line, "}\r\n") {
				return line
			}
		}
	}
	if _, err := r.ReadString('\n'); err != nil { // greeting
		t.Fatal(err)
	}
	cmd("a LOGIN " + alice + " pw")
	if l := untilTagged("a"); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("LOGIN: %q", l)
	}
	cmd("b SELECT INBOX")
	if l := untilTagged("b"); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("SELECT: %q", l)
	}
	cmd("c UID FETCH 1 BODY[]")
	l := untilTagged("c")
	var n int
	if i := strings.LastIndexByte(l, '{'); i < 0 || !strings.HasPrefix(l, "* 1 FETCH ") {
		t.Fatalf("FETCH: %q, want a literal", l)
	} else if _, err := fmt.Sscanf(l[i:], "{%d}", &n); err != nil || n != len(body) {
		t.Fatalf("FETCH: literal of %q, want {%d}", l[i:], len(body))
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(r, got[:64<<10]); err != nil {
		t.Fatal(err)
	}

	// Node B expunges the message while node A is blocked in its FETCH.
	cb := dialIMAP(t, addrB, nil)
	if _, err := cb.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cb.Store(goimap.UIDSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if mb := mailboxOf(t, b, "INBOX"); mb.Messages != 0 {
		t.Fatalf("INBOX after node B's EXPUNGE: %d messages", mb.Messages)
	}

	if _, err := io.ReadFull(r, got[64<<10:]); err != nil {
		t.Fatalf("reading the rest of the literal after the expunge: %v", err)
	}
	if string(got) != body {
		i := 0
		for i < n && got[i] == body[i] {
			i++
		}
		t.Fatalf("BODY[] of %d bytes differs from the message from byte %d on", n, i)
	}
	// The change feed brings node B's expunge to node A within a second:
	// at the end of the UID FETCH, or at a NOOP.
	sawExpunge := false
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		tag := "c"
		if i > 0 {
			tag = fmt.Sprintf("n%d", i)
			cmd(tag + " NOOP")
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			sawExpunge = sawExpunge || line == "* 1 EXPUNGE\r\n"
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("%q", line)
				}
				break
			}
		}
		if sawExpunge {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A's session was not told of node B's EXPUNGE within 5s of its FETCH")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
