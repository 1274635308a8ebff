package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

// benchWords are the words of bench/anchors/imap-fetch.py's messages.
var benchWords = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor
incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud
exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure
in reprehenderit voluptate velit esse cillum fugiat nulla pariatur`)

// benchMessage is message i of bench/anchors/imap-fetch.py (make_msg):
// about size bytes of plain text, the line needle<i> first.
func benchMessage(i, size int) []byte {
	rng := mrand.New(mrand.NewPCG(uint64(i), 1))
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender %d <sender%d@example.test>\r\nTo: Bench User <bench@bench.test>\r\n"+
		"Subject: bench message %d\r\nDate: Mon, 01 Jan 2024 00:%02d:%02d +0000\r\nMessage-ID: <bench.%d@example.test>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nneedle%d\r\n",
		i%50, i%50, i, (i/60)%60, i%60, i, i)
	var line []string
	n := 0
	for b.Len() < size {
		w := benchWords[rng.IntN(len(benchWords))]
		line = append(line, w)
		n += len(w) + 1
		if n > 72 {
			b.WriteString(strings.Join(line, " ") + "\r\n")
			line, n = line[:0], 0
		}
	}
	return b.Bytes()
}

type importer interface {
	ImportUser(ctx context.Context, user string, quotaBytes int64) error
	ImportMailbox(ctx context.Context, user string, mb store.Mailbox, next func() (store.Message, io.Reader, error)) (bool, error)
}

// importBench fills alice's INBOX of st with n benchMessage of size bytes.
func importBench(tb testing.TB, st importer, n, size int) {
	ctx := context.Background()
	if err := st.ImportUser(ctx, alice, 0); err != nil {
		tb.Fatal(err)
	}
	mb := store.Mailbox{Name: "INBOX", UIDValidity: 1700000000, UIDNext: uint32(n + 1), ModSeq: uint64(n), Messages: n, RecentUID: uint32(n + 1), Subscribed: true}
	i := 0
	date := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := st.ImportMailbox(ctx, alice, mb, func() (store.Message, io.Reader, error) {
		if i == n {
			return store.Message{}, nil, io.EOF
		}
		i++
		return store.Message{UID: uint32(i), ModSeq: uint64(i), InternalDate: date}, bytes.NewReader(benchMessage(i, size)), nil
	}); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSearchBody measures SEARCH BODY on 2000 messages of 10 KiB
// (issue 20's benchmark) and its parts on PostgreSQL: the whole search
// on both stores (the first three logged: no VACUUM has run, as in
// bench/pg.sh), the bodies read in batches, strpos over the chunks, and
// over lowered texts in tables compressed with pglz or lz4, out of line
// or in the row. BENCH_APPEND=1: the messages APPENDed through IMAP
// rather than imported.
func BenchmarkSearchBody(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the Debian PostgreSQL package: Linux only")
	}
	const n, size = 2000, 10 << 10
	ctx := context.Background()
	pg := benchPG(b)
	pg.SetSearchText(imap.SearchText) // as imap.New does
	if os.Getenv("BENCH_APPEND") != "" {
		if err := pg.EnsureUser(ctx, alice, 0); err != nil {
			b.Fatal(err)
		}
		c := dialIMAP(b, serveIMAP(b, pg), nil)
		for i := 1; i <= n; i++ {
			m := benchMessage(i, size)
			cmd := c.Append("INBOX", int64(len(m)), nil)
			cmd.Write(m)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		importBench(b, pg, n, size)
	}
	emb, err := store.Open(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	importBench(b, emb, n, size)

	for _, tc := range []struct {
		name string
		st   store.Backend
	}{{"imap-embedded", emb}, {"imap-postgres", pg}} {
		b.Run(tc.name, func(b *testing.B) {
			c := dialIMAP(b, serveIMAP(b, tc.st), nil)
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				b.Fatal(err)
			}
			for k := range 3 {
				start := time.Now()
				if _, err := c.UIDSearch(&goimap.SearchCriteria{Body: []string{"needle1242"}}, nil).Wait(); err != nil {
					b.Fatal(err)
				}
				b.Logf("search %d: %v", k+1, time.Since(start))
			}
			for b.Loop() {
				got, err := c.UIDSearch(&goimap.SearchCriteria{Body: []string{"needle1242"}}, nil).Wait()
				if err != nil || len(got.AllUIDs()) != 1 {
					b.Fatalf("%v %v", got, err)
				}
			}
		})
	}
	_, msgs, err := pg.Messages(ctx, alice, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("openbodies", func(b *testing.B) {
		for b.Loop() {
			for i := 0; i < len(msgs); i += 256 {
				bodies, err := pg.OpenBodies(ctx, msgs[i:min(i+256, len(msgs))])
				if err != nil {
					b.Fatal(err)
				}
				for _, x := range bodies {
					x.Close()
				}
			}
		}
	})
	b.Run("sql-position-chunks", func(b *testing.B) {
		for b.Loop() {
			var k int
			if err := pg.pool.QueryRow(ctx, `SELECT count(*) FROM messages m JOIN body_chunks c ON c.body_id = m.body_id AND c.chunk_no = 0
				WHERE m.mailbox_id = (SELECT min(id) FROM mailboxes) AND position('needle1242'::bytea in c.data) > 0`).Scan(&k); err != nil || k != 1 {
				b.Fatal(k, err)
			}
		}
	})
	for _, comp := range []string{"pglz", "lz4", "lz4main"} {
		tbl := "t_" + comp
		ddl := "CREATE TABLE " + tbl + " (id bigint PRIMARY KEY, tb bytea COMPRESSION " + comp + ", tt text COMPRESSION " + comp + ")"
		if comp == "lz4main" {
			ddl = "CREATE TABLE " + tbl + " (id bigint PRIMARY KEY, tb bytea COMPRESSION lz4, tt text COMPRESSION lz4) WITH (toast_tuple_target = 8160);" +
				"ALTER TABLE " + tbl + " ALTER tb SET STORAGE MAIN, ALTER tt SET STORAGE MAIN"
		}
		if _, err := pg.pool.Exec(ctx, ddl); err != nil {
			b.Fatal(err)
		}
		for i := 1; i <= n; i++ {
			m := benchMessage(i, size)
			body := bytes.ToLower(m[bytes.Index(m, []byte("\r\n\r\n"))+4:])
			if _, err := pg.pool.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1, $2, $3)", i, body, string(body)); err != nil {
				b.Fatal(err)
			}
		}
		pg.pool.Exec(ctx, "VACUUM ANALYZE "+tbl)
		var colsize, heap, toast int64
		pg.pool.QueryRow(ctx, "SELECT avg(pg_column_size(tt))::bigint, pg_relation_size('"+tbl+"'), pg_total_relation_size('"+tbl+"') FROM "+tbl).Scan(&colsize, &heap, &toast)
		b.Logf("%s: column %d bytes, heap %d, total %d", tbl, colsize, heap, toast)
		for _, q := range []string{"position('needle1242'::bytea in tb) > 0", "strpos(tt, 'needle1242') > 0"} {
			b.Run("sql-"+comp+"-"+strings.Fields(q)[0], func(b *testing.B) {
				for b.Loop() {
					var k int
					if err := pg.pool.QueryRow(ctx, "SELECT count(*) FROM "+tbl+" WHERE "+q).Scan(&k); err != nil || k != 1 {
						b.Fatal(k, err)
					}
				}
			})
		}
	}
}
