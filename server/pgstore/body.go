package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// Bodies (schema 2) are rows of the table bodies, shared by the copies of
// a message (refs counts its messages), their bytes in body_chunks rows of
// at most bodyChunk bytes: a delivery streams them into the database and
// OpenBody reads them one chunk at a time, so that neither holds a large
// message in memory. A body also holds the message header captured at
// delivery and the summary made of it (SetHeaderSummary), which follow
// copies and moves with it.

// bodyChunk is the size of the chunks of new bodies.
const bodyChunk = 1 << 20

// bodyReadTimeout bounds each chunk read of an open body (Read and ReadAt
// take no context).
const bodyReadTimeout = time.Minute

// insertBody writes a body, read from first and then from rest, into tx
// and returns its id, its size and the captured header (nil when not
// cacheable). rest is nil when first is the whole body, which may then be
// of any size.
func (s *Store) insertBody(ctx context.Context, tx pgx.Tx, first []byte, rest io.Reader) (id, size int64, hdr []byte, err error) {
	if len(first) > s.chunkSize {
		if rest == nil {
			rest = bytes.NewReader(first[s.chunkSize:])
		} else {
			rest = io.MultiReader(bytes.NewReader(first[s.chunkSize:]), rest)
		}
		first = first[:s.chunkSize]
	}
	var hc headerCapture
	hc.add(first)
	if rest == nil {
		hdr = hc.header()
		head, text := s.textOf(first) // bodysearch.go
		err = tx.QueryRow(ctx, `WITH b AS (
				INSERT INTO bodies (size, chunk_size, refs, header, summary) VALUES ($1, $2, 1, $3, $4) RETURNING id),
			c AS (INSERT INTO body_chunks (body_id, chunk_no, data) SELECT id, 0, $5 FROM b WHERE $1 > 0),
			`+withTextCTE(6, 7)+`
			SELECT id FROM b`, int64(len(first)), s.chunkSize, hdr, s.summarize(hdr), first, head, text).Scan(&id)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("insert body: %w", err)
		}
		return id, int64(len(first)), hdr, nil
	}
	// A large body: its row first, for the chunks to refer to, and its
	// size and header once all is read.
	if err := tx.QueryRow(ctx, "INSERT INTO bodies (size, chunk_size, refs) VALUES (0, $1, 1) RETURNING id", s.chunkSize).Scan(&id); err != nil {
		return 0, 0, nil, fmt.Errorf("insert body: %w", err)
	}
	buf := first
	for no := 0; ; no++ {
		if len(buf) > 0 {
			if _, err := tx.Exec(ctx, "INSERT INTO body_chunks (body_id, chunk_no, data) VALUES ($1, $2, $3)", id, no, buf); err != nil {
				return 0, 0, nil, fmt.Errorf("insert body chunk: %w", err)
			}
			size += int64(len(buf))
		}
		if rest == nil {
			break
		}
		if no == 0 {
			buf = make([]byte, s.chunkSize) // first is the caller's
		}
		n, err := io.ReadFull(ctxReader{ctx, rest}, buf[:s.chunkSize])
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			rest = nil
		case err != nil:
			return 0, 0, nil, fmt.Errorf("read body: %w", err)
		}
		buf = buf[:n]
		hc.add(buf)
	}
	hdr = hc.header()
	if _, err := tx.Exec(ctx, "UPDATE bodies SET size = $2, header = $3, summary = $4 WHERE id = $1", id, size, hdr, s.summarize(hdr)); err != nil {
		return 0, 0, nil, fmt.Errorf("insert body: %w", err)
	}
	return id, size, hdr, nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// releaseBodies drops one reference per entry of ids (a body may appear
// several times). A body left without a message is not deleted here: it
// is stamped released_at and stays readable by the readers that opened
// it until the sweeper deletes it, a grace later (see sweep.go).
func releaseBodies(ctx context.Context, tx pgx.Tx, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE bodies b SET refs = b.refs - d.n,
			released_at = CASE WHEN b.refs - d.n <= 0 THEN clock_timestamp() END
		FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id GROUP BY id) d
		WHERE b.id = d.id`, ids); err != nil {
		return fmt.Errorf("release bodies: %w", err)
	}
	return nil
}

// OpenBody returns the body of a message returned by Messages, MessagesByID
// or SetFlags, read from the database a chunk at a time (one chunk is
// read here). It fails with os.ErrNotExist once the message has been
// expunged. A body opened before its message is expunged (by any node)
// stays readable to the end for the grace of SetBodyGrace (10 minutes by
// default) after its last message went; a read after that fails with
// os.ErrNotExist.
func (s *Store) OpenBody(ctx context.Context, m store.Message) (store.Body, error) {
	r := &bodyReader{s: s, ctx: context.WithoutCancel(ctx), curNo: -1}
	var first []byte
	var chunk int64
	err := s.pool.QueryRow(ctx, `SELECT b.id, b.size, b.chunk_size,
			(SELECT data FROM body_chunks c WHERE c.body_id = b.id AND c.chunk_no = 0)
		FROM messages m JOIN bodies b ON b.id = m.body_id WHERE m.id = $1`, int64(m.Ref)).Scan(&r.id, &r.size, &chunk, &first)
	if errors.Is(err, pgx.ErrNoRows) {
		err = os.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("open message %d: %w", m.UID, err)
	}
	r.chunk = max(chunk, 1)
	if r.size > 0 {
		r.cur, r.curNo = first, 0
	}
	return r, nil
}

// bodyReader reads a body's chunks on demand, keeping the last one read.
type bodyReader struct {
	s     *Store
	ctx   context.Context // of OpenBody, without its cancellation
	id    int64
	size  int64
	chunk int64

	mu    sync.Mutex // ReadAt may be called concurrently
	off   int64      // of Read
	cur   []byte
	curNo int64
}

// load returns chunk no, reading it unless it is the current one. The
// caller holds r.mu.
func (r *bodyReader) load(no int64) ([]byte, error) {
	if no == r.curNo {
		return r.cur, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, bodyReadTimeout)
	defer cancel()
	var data []byte
	err := r.s.pool.QueryRow(ctx, "SELECT data FROM body_chunks WHERE body_id = $1 AND chunk_no = $2", r.id, no).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		err = os.ErrNotExist // expunged since OpenBody, and swept
	}
	if err != nil {
		return nil, fmt.Errorf("read message body: %w", err)
	}
	r.cur, r.curNo = data, no
	return data, nil
}

func (r *bodyReader) readAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) && off < r.size {
		no := off / r.chunk
		data, err := r.load(no)
		if err != nil {
			return n, err
		}
		in := off - no*r.chunk
		if in >= int64(len(data)) {
			return n, fmt.Errorf("read message body: chunk %d of body %d is short", no, r.id)
		}
		k := copy(p[n:], data[in:])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *bodyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off >= r.size {
		return 0, io.EOF
	}
	// At most to the end of the current chunk: one query per call.
	if end := (r.off/r.chunk + 1) * r.chunk; int64(len(p)) > end-r.off {
		p = p[:end-r.off]
	}
	n, err := r.readAt(p, r.off)
	r.off += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}

func (r *bodyReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("read message body: negative offset")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readAt(p, off)
}

func (r *bodyReader) Close() error {
	r.mu.Lock()
	r.cur, r.curNo = nil, -1
	r.mu.Unlock()
	return nil
}

// headerCapture keeps the start of a message, enough to find its header
// (the rule of server/store's header cache, whose code is unexported: up
// to and including the empty line that ends it, at most
// store.MaxCachedHeader bytes; a message without an empty line is all
// header).
type headerCapture struct {
	buf   []byte
	total int64
}

func (h *headerCapture) add(p []byte) {
	h.total += int64(len(p))
	if room := store.MaxCachedHeader + 2 - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
}

// header returns the captured header, or nil when it is not cacheable.
func (h *headerCapture) header() []byte {
	if end := headerEnd(h.buf); end >= 0 {
		return bytes.Clone(h.buf[:end])
	}
	if h.total <= store.MaxCachedHeader {
		return bytes.Clone(h.buf)
	}
	return nil
}

// headerEnd returns the length of the header in b, through the empty line
// ("\r\n" or "\n" at the start or after a "\n") that ends it, or -1.
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(b, []byte("\n")) {
		return 1
	}
	end := -1
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		end = i + 2
	}
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && (end < 0 || i+3 < end) {
		end = i + 3
	}
	return end
}

// SetHeaderSummary sets the function that makes, at delivery, the summary
// of a message header kept beside it (see Summaries); nil: none.
func (s *Store) SetHeaderSummary(fn func(header []byte) []byte) {
	if fn == nil {
		s.summary.Store(nil)
		return
	}
	s.summary.Store(&fn)
}

func (s *Store) summarize(hdr []byte) []byte {
	fn := s.summary.Load()
	if fn == nil || hdr == nil {
		return nil
	}
	return (*fn)(hdr)
}

// Headers returns the headers of the messages of a mailbox (by ID) whose
// UIDs are given, as captured at delivery, in the order of uids: nil for
// a message that is gone or whose header was not cached.
func (s *Store) Headers(ctx context.Context, user string, mailboxID uint64, uids []uint32) ([][]byte, error) {
	return s.headers(ctx, user, mailboxID, uids, "header")
}

// Summaries is Headers for the summaries made by the function given to
// SetHeaderSummary: nil for messages delivered without one.
func (s *Store) Summaries(ctx context.Context, user string, mailboxID uint64, uids []uint32) ([][]byte, error) {
	return s.headers(ctx, user, mailboxID, uids, "summary")
}

// headers reads a column of the bodies of messages in one query, with no
// transaction (one round trip; SEARCH on a header field made four per
// 1000 messages: BEGIN, the user check, the query, COMMIT): the user is
// looked up only when no row came back. UIDs that are dense (as SEARCH
// and FETCH ask for them: runs of a mailbox's messages) are read as one
// range of the primary key, which is one index descent where = ANY of a
// thousand UIDs filters every row of the mailbox against the array; the
// rows beyond uids are dropped here.
func (s *Store) headers(ctx context.Context, user string, mailboxID uint64, uids []uint32, column string) ([][]byte, error) {
	out := make([][]byte, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	if s.hdrCache != nil {
		if err := s.cachedHeaders(ctx, user, mailboxID, uids, column, out); err != nil {
			return nil, fmt.Errorf("read headers of mailbox %d of %q: %w", mailboxID, user, err)
		}
		return out, nil
	}
	lo, hi := slices.Min(uids), slices.Max(uids)
	var rows pgx.Rows
	var err error
	const sel = `SELECT m.uid, b.%[1]s FROM messages m
		JOIN mailboxes mb ON mb.id = m.mailbox_id JOIN users u ON u.id = mb.user_id
		JOIN bodies b ON b.id = m.body_id
		WHERE u.name = $1 AND m.mailbox_id = $2 AND %[2]s AND b.%[1]s IS NOT NULL`
	if int64(hi)-int64(lo) < 2*int64(len(uids)) {
		rows, err = s.pool.Query(ctx, fmt.Sprintf(sel, column, "m.uid BETWEEN $3 AND $4"), user, int64(mailboxID), int64(lo), int64(hi))
	} else {
		rows, err = s.pool.Query(ctx, fmt.Sprintf(sel, column, "m.uid = ANY($3)"), user, int64(mailboxID), toInt64s(uids))
	}
	if err == nil {
		want := make(map[uint32][]int, len(uids)) // UID -> indexes in out
		for i, u := range uids {
			want[u] = append(want[u], i)
		}
		var uid int64
		var v []byte
		found := 0
		_, err = pgx.ForEachRow(rows, []any{&uid, &v}, func() error {
			found++
			// v is the row's own: pgx copies what it scans into []byte.
			for _, i := range want[uint32(uid)] {
				out[i] = v
			}
			return nil
		})
		if err == nil && found == 0 {
			err = noMailbox(ctx, s.pool, user, nil)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read headers of mailbox %d of %q: %w", mailboxID, user, err)
	}
	return out, nil
}

// cachedHeaders is headers through the node's cache (headercache.go).
// Which body each UID has comes from the mailbox's body map when its
// change stamp is the one read now (one row), from the whole mailbox
// read in one statement otherwise (when it holds at most maxMapMessages:
// the map is made), or from the UIDs asked; the headers of the bodies
// not cached come from the database in a second statement. The same
// checks as headers: the user's mailbox, the messages still there. The
// values put in out are the cache's, which no one changes.
func (s *Store) cachedHeaders(ctx context.Context, user string, mailboxID uint64, uids []uint32, column string, out [][]byte) error {
	key := mailboxKey{user, mailboxID}
	bm := s.hdrCache.bodyMap(key)
	if bm != nil {
		var xid, validity int64
		err := s.pool.QueryRow(ctx, `SELECT mb.change_xid, mb.uidvalidity FROM mailboxes mb JOIN users u ON u.id = mb.user_id
			WHERE u.name = $1 AND mb.id = $2`, user, int64(mailboxID)).Scan(&xid, &validity)
		if errors.Is(err, pgx.ErrNoRows) {
			return noMailbox(ctx, s.pool, user, nil)
		}
		if err != nil {
			return err
		}
		if xid != bm.xid || validity != bm.validity {
			bm = nil
		}
	}
	if bm == nil {
		var err error
		if bm, err = s.readBodyMap(ctx, user, mailboxID); err != nil {
			return err
		}
		if bm == nil { // the mailbox is not there, or too large for a map
			return s.headersByUID(ctx, user, mailboxID, uids, column, out)
		}
		s.hdrCache.putBodyMap(key, bm)
	}
	summary := column == "summary"
	missing := map[int64][]int{} // body id -> indexes in out
	for i, u := range uids {
		body, ok := bm.bodies[u]
		if !ok {
			continue
		}
		if v, ok := s.hdrCache.get(headerKey{body, summary}); ok {
			out[i] = v
		} else {
			missing[body] = append(missing[body], i)
		}
	}
	return s.readHeaders(ctx, column, missing, out)
}

// readBodyMap reads the body map of a mailbox of at most maxMapMessages
// in one statement (one snapshot: the stamp is that of the messages
// read); nil when the mailbox is larger, or not there.
func (s *Store) readBodyMap(ctx context.Context, user string, mailboxID uint64) (*bodyMap, error) {
	rows, err := s.pool.Query(ctx, `SELECT mb.change_xid, mb.uidvalidity, mb.messages, m.uid, m.body_id
		FROM mailboxes mb JOIN users u ON u.id = mb.user_id
		LEFT JOIN messages m ON m.mailbox_id = mb.id AND mb.messages <= $3
		WHERE u.name = $1 AND mb.id = $2`, user, int64(mailboxID), maxMapMessages)
	if err != nil {
		return nil, err
	}
	bm := &bodyMap{bodies: map[uint32]int64{}}
	var n int64
	var uid, body *int64
	found := false
	_, err = pgx.ForEachRow(rows, []any{&bm.xid, &bm.validity, &n, &uid, &body}, func() error {
		found = true
		if uid != nil && body != nil {
			bm.bodies[uint32(*uid)] = *body
		}
		return nil
	})
	if err != nil || !found || n > int64(maxMapMessages) {
		return nil, err
	}
	return bm, nil
}

// headersByUID is cachedHeaders for a mailbox without a map: the body of
// each UID asked from the database.
func (s *Store) headersByUID(ctx context.Context, user string, mailboxID uint64, uids []uint32, column string, out [][]byte) error {
	lo, hi := slices.Min(uids), slices.Max(uids)
	var rows pgx.Rows
	var err error
	const sel = `SELECT m.uid, m.body_id FROM messages m
		JOIN mailboxes mb ON mb.id = m.mailbox_id JOIN users u ON u.id = mb.user_id
		WHERE u.name = $1 AND m.mailbox_id = $2 AND %s`
	if int64(hi)-int64(lo) < 2*int64(len(uids)) {
		rows, err = s.pool.Query(ctx, fmt.Sprintf(sel, "m.uid BETWEEN $3 AND $4"), user, int64(mailboxID), int64(lo), int64(hi))
	} else {
		rows, err = s.pool.Query(ctx, fmt.Sprintf(sel, "m.uid = ANY($3)"), user, int64(mailboxID), toInt64s(uids))
	}
	if err != nil {
		return err
	}
	want := make(map[uint32][]int, len(uids)) // UID -> indexes in out
	for i, u := range uids {
		want[u] = append(want[u], i)
	}
	summary := column == "summary"
	missing := map[int64][]int{} // body id -> indexes in out
	var uid, body int64
	found := 0
	_, err = pgx.ForEachRow(rows, []any{&uid, &body}, func() error {
		found++
		idx := want[uint32(uid)]
		if len(idx) == 0 {
			return nil
		}
		if v, ok := s.hdrCache.get(headerKey{body, summary}); ok {
			for _, i := range idx {
				out[i] = v
			}
			return nil
		}
		missing[body] = append(missing[body], idx...)
		return nil
	})
	if err != nil {
		return err
	}
	if found == 0 {
		return noMailbox(ctx, s.pool, user, nil)
	}
	return s.readHeaders(ctx, column, missing, out)
}

// readHeaders reads column of the bodies in missing into the cache and
// out, in one statement. A body of a message expunged since is still
// there (released, for the sweeper's grace): its header is the one it
// had.
func (s *Store) readHeaders(ctx context.Context, column string, missing map[int64][]int, out [][]byte) error {
	if len(missing) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(missing))
	for id := range missing {
		ids = append(ids, id)
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf("SELECT id, %s FROM bodies WHERE id = ANY($1)", column), ids)
	if err != nil {
		return err
	}
	summary := column == "summary"
	var body int64
	var v []byte
	_, err = pgx.ForEachRow(rows, []any{&body, &v}, func() error {
		// v is the row's own: pgx copies what it scans into []byte.
		s.hdrCache.put(headerKey{body, summary}, v)
		for _, i := range missing[body] {
			out[i] = v
		}
		return nil
	})
	return err
}
