package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

// SEARCH BODY and TEXT (store.TextSearcher): the texts they match, made
// by the IMAP server's function (SetSearchText) when a body of at most a
// chunk is written, are kept in the table body_texts (schema 8), one row
// per body, shared by its copies like the body; SearchText asks the
// database which messages of a mailbox contain the needles (strpos on
// the kept texts), and only the messages without a row are read by the
// node. The bench of issue 20 (2000 messages of 10 KiB) sent 20 MB to the
// node for each SEARCH BODY.
//
// The texts are PostgreSQL text, which must be valid in the database's
// encoding: they are kept only on a database in UTF8 (what the IMAP
// server makes: every text is valid UTF-8 once lowered, NUL excepted,
// which it replaces) or SQL_ASCII (bytes as they come); on another, no
// text is kept and every search reads the bodies, as before.

var _ store.TextSearcher = (*Store)(nil)

// SetSearchText sets the function that makes the texts kept for SEARCH
// BODY and TEXT when a body is written (store.TextSearcher); nil: none.
func (s *Store) SetSearchText(fn func(msg []byte) (head, body string)) {
	if fn == nil {
		s.searchText.Store(nil)
		return
	}
	s.searchText.Store(&fn)
}

// keepsText reads the database's encoding on a connection of the pool (a
// parameter the server reports at connection, no query): texts are kept
// only in UTF8 and SQL_ASCII.
func keepsText(ctx context.Context, s *Store) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: open: %w", err)
	}
	defer c.Release()
	switch c.Conn().PgConn().ParameterStatus("server_encoding") {
	case "UTF8", "SQL_ASCII":
		s.textOK = true
	}
	return nil
}

// textOf returns the texts to keep of a body written whole (nil, nil:
// none), as arguments of an INSERT INTO body_texts.
func (s *Store) textOf(msg []byte) (head, body *string) {
	fn := s.searchText.Load()
	if fn == nil || !s.textOK {
		return nil, nil
	}
	h, b := (*fn)(msg)
	return &h, &b
}

// insertTextCTE is the part of a statement that writes a body's texts,
// for statements whose CTE b inserts the body (RETURNING id): $H and $T
// are replaced by the parameters of the texts (textOf), NULL for none.
const insertTextCTE = `t AS (INSERT INTO body_texts (body_id, head, body) SELECT id, $H, $T FROM b WHERE $T::text IS NOT NULL)`

// withTextCTE returns insertTextCTE with the parameters $h and $t.
func withTextCTE(h, t int) string {
	return strings.NewReplacer("$H", "$"+strconv.Itoa(h), "$T", "$"+strconv.Itoa(t)).Replace(insertTextCTE)
}

// SearchText tells which needles the kept texts of the messages of a
// mailbox contain (store.TextSearcher), in one statement: the database
// returns only the messages that contain one, or have no kept text; the
// others are known to contain none. UIDs that are dense are read as one
// range of the primary key, as in headers.
func (s *Store) SearchText(ctx context.Context, user string, mailboxID uint64, uids []uint32, needles []store.TextNeedle) ([]store.TextResult, error) {
	out := make([]store.TextResult, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	if len(needles) > store.MaxTextNeedles {
		return nil, fmt.Errorf("search text of mailbox %d of %q: %d needles, at most %d", mailboxID, user, len(needles), store.MaxTextNeedles)
	}
	if !s.textOK || len(needles) == 0 {
		return out, nil // none known: the node reads them all
	}
	lo, hi := slices.Min(uids), slices.Max(uids)
	args := []any{user, int64(mailboxID)}
	where := "m.uid = ANY($3)"
	if int64(hi)-int64(lo) < 2*int64(len(uids)) {
		where = "m.uid BETWEEN $3 AND $4"
		args = append(args, int64(lo), int64(hi))
	} else {
		args = append(args, toInt64s(uids))
	}
	// found: bit k for needles[k], each a strpos on the kept texts.
	var found strings.Builder
	for k, n := range needles {
		if k > 0 {
			found.WriteString(" | ")
		}
		args = append(args, n.Text)
		p := "$" + strconv.Itoa(len(args))
		cond := "strpos(t.body, " + p + ") > 0"
		if n.Header {
			cond = "(strpos(t.head, " + p + ") > 0 OR " + cond + ")"
		}
		fmt.Fprintf(&found, "((%s)::int::bigint << %d)", cond, k)
	}
	// OFFSET 0 keeps the subquery whole: found is computed once a row.
	q := `SELECT uid, known, found FROM (
		SELECT m.uid, t.body_id IS NOT NULL AS known, coalesce(` + found.String() + `, 0) AS found
		FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id JOIN users u ON u.id = mb.user_id
		LEFT JOIN body_texts t ON t.body_id = m.body_id
		WHERE u.name = $1 AND m.mailbox_id = $2 AND ` + where + ` OFFSET 0) x
		WHERE NOT known OR found <> 0`
	for i := range out {
		out[i].Known = true // unless a row says otherwise
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err == nil {
		at := make(map[uint32][]int, len(uids)) // UID -> indexes in out
		for i, u := range uids {
			at[u] = append(at[u], i)
		}
		var uid, bits int64
		var known bool
		n := 0
		_, err = pgx.ForEachRow(rows, []any{&uid, &known, &bits}, func() error {
			n++
			for _, i := range at[uint32(uid)] {
				out[i] = store.TextResult{Known: known, Found: uint64(bits)}
			}
			return nil
		})
		if err == nil && n == 0 {
			err = noMailbox(ctx, s.pool, user, nil)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("search text of mailbox %d of %q: %w", mailboxID, user, err)
	}
	return out, nil
}

// KeepText keeps the texts of bodies that had none (store.TextSearcher),
// in one statement: the messages that were read by a search because
// their body was written before schema 8 get their text then, so that an
// upgraded database needs no migration that parses every message (which
// SQL cannot do: the texts are made by the IMAP server's rules).
func (s *Store) KeepText(ctx context.Context, msgs []store.Message, texts []store.KeptText) error {
	if !s.textOK || len(msgs) == 0 {
		return nil
	}
	ids := make([]int64, len(msgs))
	heads := make([]string, len(msgs))
	bodies := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i], heads[i], bodies[i] = int64(m.Ref), texts[i].Head, texts[i].Body
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO body_texts (body_id, head, body)
		SELECT m.body_id, v.h, v.b FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v (id, h, b)
		JOIN messages m ON m.id = v.id
		ON CONFLICT (body_id) DO NOTHING`, ids, heads, bodies); err != nil {
		return fmt.Errorf("keep the search text of %d messages: %w", len(msgs), err)
	}
	return nil
}
