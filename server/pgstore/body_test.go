package pgstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/server/store"
)

// testBodies: bodies of every size around the chunk size come back
// whole through Read and ReadAt (also concurrent), kept in chunks of at
// most the chunk size, read one chunk at a time; the header is captured
// across chunks; an expunged message's body is gone.
func testBodies(t *testing.T, url string) {
	ctx := ctxT(t)
	s := migrated(t, url)
	s.chunkSize = 7
	if err := s.EnsureUser(ctx, "b", 0); err != nil {
		t.Fatal(err)
	}
	hdr := "Subject: chunks\r\nFrom: a@example.test\r\n\r\n"
	bodies := map[uint32]string{}
	for _, n := range []int{0, 1, 6, 7, 8, 14, 15, 100} {
		body := strings.Repeat("z", n)
		uid, err := s.Deliver(ctx, "b", "", strings.NewReader(body), nil, time.Time{})
		if err != nil {
			t.Fatalf("Deliver of %d bytes: %v", n, err)
		}
		bodies[uid] = body
	}
	withHeader := hdr + strings.Repeat("body line\r\n", 20)
	hdrUID, err := s.Deliver(ctx, "b", "", &oneByteReader{withHeader}, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	bodies[hdrUID] = withHeader

	mb, msgs, err := s.Messages(ctx, "b", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		want := bodies[m.UID]
		if m.Size != int64(len(want)) {
			t.Errorf("UID %d: size %d, want %d", m.UID, m.Size, len(want))
		}
		if got := readBody(t, s, m); got != want {
			t.Errorf("UID %d: Read gives %q, want %q", m.UID, got, want)
		}
		var chunks, longest int
		if err := s.pool.QueryRow(ctx, `SELECT count(*), coalesce(max(octet_length(c.data)), 0) FROM messages m
			JOIN body_chunks c ON c.body_id = m.body_id WHERE m.id = $1`, int64(m.Ref)).Scan(&chunks, &longest); err != nil {
			t.Fatal(err)
		}
		if wantChunks := (len(want) + 6) / 7; chunks != wantChunks || longest > 7 {
			t.Errorf("UID %d (%d bytes): %d chunks, the longest %d bytes; want %d of at most 7", m.UID, len(want), chunks, longest, wantChunks)
		}
	}
	hs, err := s.Headers(ctx, "b", mb.ID, []uint32{hdrUID})
	if err != nil || string(hs[0]) != hdr {
		t.Fatalf("header of a body in chunks, delivered a byte at a time: %q, %v; want %q", hs[0], err, hdr)
	}

	// ReadAt across chunk boundaries, from goroutines at once.
	m := msgs[len(msgs)-1]
	b, err := s.OpenBody(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if r := b.(*bodyReader); r.curNo != 0 || len(r.cur) != 7 {
		t.Fatalf("OpenBody holds chunk %d of %d bytes; want chunk 0 only (7 bytes)", r.curNo, len(r.cur))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for off := g; off < len(withHeader)+3; off += 5 {
				p := make([]byte, 1+off%17)
				n, err := b.ReadAt(p, int64(off))
				want := withHeader[min(off, len(withHeader)):min(off+len(p), len(withHeader))]
				if string(p[:n]) != want || (n < len(p)) != errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, io.EOF)) {
					errs <- fmt.Errorf("ReadAt(%d bytes at %d) = %q, %v; want %q", len(p), off, p[:n], err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Expunged: gone for OpenBody; a body opened before stays readable
	// to the end, of one chunk or more (the sweeper waits a grace).
	small, long := msgs[2], m // 6 bytes; 200 and more
	fsmall, err := s.OpenBody(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := s.OpenBody(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetFlags(ctx, "b", "INBOX", []uint32{small.UID, long.UID}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, "b", "INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for _, x := range []store.Message{small, long} {
		if _, err := s.OpenBody(ctx, x); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("OpenBody of expunged UID %d: %v, want os.ErrNotExist", x.UID, err)
		}
	}
	if got, err := io.ReadAll(fsmall); err != nil || string(got) != bodies[small.UID] {
		t.Errorf("one-chunk body opened before the expunge: %q, %v", got, err)
	}
	if got, err := io.ReadAll(fl); err != nil || string(got) != withHeader {
		t.Errorf("long body opened before the expunge: %d bytes, %v; want %d bytes", len(got), err, len(withHeader))
	}
	var live, released int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE released_at IS NULL), count(*) FILTER (WHERE refs = 0 AND released_at IS NOT NULL) FROM bodies").Scan(&live, &released); err != nil {
		t.Fatal(err)
	}
	if live != len(msgs)-2 || released != 2 {
		t.Errorf("after expunging 2 of %d messages: %d bodies in use, %d released; want %d, 2", len(msgs), live, released, len(msgs)-2)
	}
}

// testInsertBodyWhole: a whole body given at once (as ImportMailbox
// does) larger than a chunk is cut into chunks like a streamed one.
func testInsertBodyWhole(t *testing.T, url string) {
	ctx := ctxT(t)
	s := migrated(t, url)
	s.chunkSize = 7
	if err := s.EnsureUser(ctx, "w", 0); err != nil {
		t.Fatal(err)
	}
	body := "Subject: whole\r\n\r\n0123456789abcdef"
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		id, _, _, err = s.insertBody(ctx, tx, []byte(body), nil)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size, body_id)
			SELECT m.id, 1, 1, now(), $1, $2 FROM mailboxes m WHERE m.name = 'INBOX'`, len(body), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, msgs, err := s.Messages(ctx, "w", "INBOX")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Messages: %v, %v", msgs, err)
	}
	if got := readBody(t, s, msgs[0]); got != body {
		t.Errorf("body given whole: read back %q, want %q", got, body)
	}
	var chunks int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM body_chunks WHERE body_id = $1 AND octet_length(data) <= 7", id).Scan(&chunks); err != nil || chunks != (len(body)+6)/7 {
		t.Errorf("%d chunks of at most 7 bytes, %v; want %d", chunks, err, (len(body)+6)/7)
	}
}

type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

// testLargeBody: a body of several 1 MiB chunks, as a delivery makes
// them, read back whole.
func testLargeBody(t *testing.T, url string) {
	ctx := ctxT(t)
	s := migrated(t, url)
	if err := s.EnsureUser(ctx, "l", 0); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2*bodyChunk+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	copy(data, "Subject: big\r\n\r\n")
	if _, err := s.Deliver(ctx, "l", "", bytes.NewReader(data), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	_, msgs, err := s.Messages(ctx, "l", "INBOX")
	if err != nil || len(msgs) != 1 || msgs[0].Size != int64(len(data)) {
		t.Fatalf("Messages: %+v, %v", msgs, err)
	}
	if got := readBody(t, s, msgs[0]); got != string(data) {
		t.Fatalf("a body of %d bytes read back as %d bytes, not the same", len(data), len(got))
	}
	var chunks int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM body_chunks").Scan(&chunks); err != nil || chunks != 3 {
		t.Fatalf("%d chunks, %v; want 3", chunks, err)
	}
}

// testMigrateBodies: the bodies of a schema 1 database (bytea of any
// size) are readable after Migrate; its mailboxes' expunge records
// start complete from their current MODSEQ.
func testMigrateBodies(t *testing.T, url string) {
	ctx := ctxT(t)
	first, err := fs.ReadFile(migrationFiles, "migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, _, err := migrate(ctx, pool, fstest.MapFS{"migrations/0001_init.sql": {Data: first}}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789", 250000) // 2.5 MB: three chunks
	bodies := []string{"Subject: old\r\n\r\nsmall\r\n", "", big}
	exec(t, url, "INSERT INTO users (name) VALUES ('o')")
	exec(t, url, "INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext, highestmodseq, messages) SELECT id, 'INBOX', 7, 4, 9, 3 FROM users")
	for i, b := range bodies {
		exec(t, url, `INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size) SELECT id, $1::bigint, $1::bigint + 1, now(), $2 FROM mailboxes`, i+1, len(b))
		exec(t, url, `INSERT INTO message_bodies (mailbox_id, uid, body) SELECT id, $1, $2 FROM mailboxes`, i+1, []byte(b))
	}
	if from, to, err := Migrate(ctx, url); err != nil || from != 1 || to != SchemaVersion() {
		t.Fatalf("Migrate: %d -> %d, %v", from, to, err)
	}
	s := open(t, url)
	mb, msgs, err := s.Messages(ctx, "o", "INBOX")
	if err != nil || len(msgs) != 3 {
		t.Fatalf("Messages after the migration: %v, %v", msgs, err)
	}
	for i, m := range msgs {
		if got := readBody(t, s, m); got != bodies[i] {
			t.Errorf("UID %d after the migration: %d bytes, want %d", m.UID, len(got), len(bodies[i]))
		}
	}
	if hs, err := s.Headers(ctx, "o", mb.ID, []uint32{1}); err != nil || hs[0] != nil {
		t.Errorf("header of a schema 1 message: %q, %v; want none cached", hs[0], err)
	}
	for since, want := range map[uint64]bool{8: false, 9: true} {
		if _, complete, err := s.Vanished(ctx, "o", mb.ID, since); err != nil || complete != want {
			t.Errorf("Vanished since %d: complete %v, %v; want %v", since, complete, err, want)
		}
	}
	if _, err := s.Copy(ctx, "o", "INBOX", []uint32{3}, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetFlags(ctx, "o", "INBOX", []uint32{3}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, "o", "INBOX", nil); err != nil {
		t.Fatal(err)
	}
	_, msgs, _ = s.Messages(ctx, "o", "INBOX")
	if got := readBody(t, s, msgs[len(msgs)-1]); got != big {
		t.Errorf("copy of a migrated body, the original expunged: %d bytes, want %d", len(got), len(big))
	}
}
