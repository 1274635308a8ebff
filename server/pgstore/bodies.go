package pgstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/server/store"
)

var _ store.BodyBatcher = (*Store)(nil)

// OpenBodies reads, with one query, the bodies of msgs that are one chunk
// long (store.BodyBatcher): SEARCH BODY made one round trip per message
// through OpenBody. Larger bodies, and those of messages gone, are left
// nil for OpenBody, which streams them a chunk at a time.
func (s *Store) OpenBodies(ctx context.Context, msgs []store.Message) ([]store.Body, error) {
	out := make([]store.Body, len(msgs))
	ids := make([]int64, 0, len(msgs))
	at := make(map[int64][]int, len(msgs)) // message row -> indexes in msgs
	for i, m := range msgs {
		id := int64(m.Ref)
		if _, ok := at[id]; !ok {
			ids = append(ids, id)
		}
		at[id] = append(at[id], i)
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT m.id, b.size, c.data
		FROM messages m JOIN bodies b ON b.id = m.body_id
		JOIN body_chunks c ON c.body_id = b.id AND c.chunk_no = 0
		WHERE m.id = ANY($1) AND b.size <= b.chunk_size`, ids)
	if err != nil {
		return nil, fmt.Errorf("read %d message bodies: %w", len(ids), err)
	}
	var id, size int64
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &size, &data}, func() error {
		if int64(len(data)) != size {
			return nil // not whole in its first chunk: OpenBody reads it
		}
		// data is the row's own: pgx copies what it scans into []byte.
		for _, i := range at[id] {
			out[i] = memBody{bytes.NewReader(data)}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %d message bodies: %w", len(ids), err)
	}
	return out, nil
}

// memBody is a body read whole (OpenBodies).
type memBody struct{ *bytes.Reader }

func (memBody) Close() error { return nil }
