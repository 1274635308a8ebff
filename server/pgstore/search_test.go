package pgstore

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestPostgresReads runs the tests of the batched reads (issue 20's
// benchmark) against a private PostgreSQL cluster of their own.
func TestPostgresReads(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	testenv.StartPostgres(t).RunOnDatabases(t, []testenv.DatabaseTest{
		{Name: "SearchBodyBatched", Fn: testSearchBodyBatched},
		{Name: "FetchBodyBatched", Fn: testFetchBodyBatched},
		{Name: "HeadersOneQuery", Fn: testHeadersOneQuery},
	})
}

// countingStore counts the OpenBody calls of server/imap on a Store (its
// other methods, OpenBodies among them, are the Store's).
type countingStore struct {
	*Store
	opens atomic.Int64
}

func (c *countingStore) OpenBody(ctx context.Context, m store.Message) (store.Body, error) {
	c.opens.Add(1)
	return c.Store.OpenBody(ctx, m)
}

// searchMessages makes n messages from seed: plain text, quoted-printable
// and multipart ones, some larger than chunk (read by OpenBody, a chunk at
// a time), the words searched for spread among them.
func searchMessages(seed uint64, n, chunk int) []string {
	rng := mrand.New(mrand.NewPCG(seed, 0))
	words := []string{"alpha", "Bravo", "charlie", "delta", "écho"}
	var out []string
	for i := range n {
		w := words[rng.IntN(len(words))]
		filler := strings.Repeat(fmt.Sprintf("line %d of filler text\r\n", i), 1+rng.IntN(20))
		hdr := fmt.Sprintf("From: bob@example.test\r\nTo: alice@example.test\r\nSubject: message %d\r\n", i)
		var m string
		switch k := rng.IntN(10); {
		case k < 6:
			m = hdr + "\r\n" + filler + "the word " + w + " here\r\n"
		case k < 7:
			m = hdr + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				filler + "the w=\r\nord " + w + " here\r\n"
		case k < 8:
			m = hdr + "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n" +
				filler + "--b1\r\nContent-Type: text/plain\r\n\r\nattached " + w + "\r\n--b1--\r\n"
		case k < 9:
			m = hdr + "\r\n" + filler + strings.Repeat("x", chunk) + " and " + w + "\r\n" // several chunks
		default:
			m = hdr + "\r\n" + filler // none of the words
		}
		out = append(out, m)
	}
	return out
}

// sameMessages delivers searchMessages(seed, n, chunk) to alice's INBOX
// on a pgstore of chunk-byte chunks and on an embedded store, and counts
// the messages larger than a chunk.
func sameMessages(t *testing.T, url string, seed uint64, n, chunk int) (pg *Store, emb *store.Store, large int64) {
	pg = newUser(t, url, 0)
	pg.chunkSize = chunk
	emb, err := store.Open(ctxT(t), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	if err := emb.EnsureUser(ctxT(t), alice, 0); err != nil {
		t.Fatal(err)
	}
	for _, m := range searchMessages(seed, n, chunk) {
		deliver(t, pg, "INBOX", m)
		if _, err := emb.Deliver(ctxT(t), alice, "INBOX", strings.NewReader(m), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if len(m) > chunk {
			large++
		}
	}
	return pg, emb, large
}

// testSearchBodyBatched: SEARCH BODY and TEXT over a few hundred messages
// on a pgstore-backed IMAP server find the same UIDs as on the embedded
// store, and read the bodies in batches: OpenBody is called only for the
// bodies larger than a chunk (it was called for every message).
func testSearchBodyBatched(t *testing.T, url string) {
	const n, chunk = 300, 2000
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	pg, emb, large := sameMessages(t, url, seed, n, chunk)
	// One message expunged in the middle: gone from both.
	expungeUIDs(t, pg, "INBOX", 7)
	if _, err := emb.SetFlags(ctxT(t), alice, "INBOX", []uint32{7}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if got, err := emb.Expunge(ctxT(t), alice, "INBOX", []uint32{7}); err != nil || len(got) != 1 {
		t.Fatal(err)
	}

	counted := &countingStore{Store: pg}
	addrPG, addrEmb := serveIMAP(t, counted), serveIMAP(t, emb)
	cPG, cEmb := dialIMAP(t, addrPG, nil), dialIMAP(t, addrEmb, nil)
	for _, c := range []*imapclient.Client{cPG, cEmb} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, crit := range []goimap.SearchCriteria{
		{Body: []string{"alpha"}},
		{Body: []string{"BRAVO"}},
		{Body: []string{"écho"}},
		{Text: []string{"charlie"}},
		{Body: []string{"delta"}, NotFlag: []goimap.Flag{goimap.FlagSeen}},
		{Body: []string{"nowhere at all"}},
	} {
		before := counted.opens.Load()
		got, err := cPG.UIDSearch(&crit, nil).Wait()
		if err != nil {
			t.Fatalf("seed %d: UID SEARCH %+v on pgstore: %v", seed, crit, err)
		}
		opens := counted.opens.Load() - before
		want, err := cEmb.UIDSearch(&crit, nil).Wait()
		if err != nil {
			t.Fatalf("seed %d: UID SEARCH %+v on the embedded store: %v", seed, crit, err)
		}
		g, w := got.AllUIDs(), want.AllUIDs()
		if !slices.Equal(g, w) {
			t.Errorf("seed %d: UID SEARCH %+v: pgstore %v, embedded %v", seed, crit, g, w)
		}
		if !slices.Equal(crit.Body, []string{"nowhere at all"}) && len(w) == 0 {
			t.Errorf("seed %d: UID SEARCH %+v found nothing on either store", seed, crit)
		}
		if opens > large {
			t.Errorf("seed %d: UID SEARCH %+v: %d OpenBody calls for %d messages, want at most the %d larger than a chunk",
				seed, crit, opens, n-1, large)
		}
	}
}

// testFetchBodyBatched: FETCH 1:* BODY.PEEK[] BODYSTRUCTURE on a
// pgstore-backed IMAP server answers the same bytes as on the embedded
// store, and reads the bodies in batches: OpenBody is called only for the
// bodies larger than a chunk (it was called for every message).
func testFetchBodyBatched(t *testing.T, url string) {
	const n, chunk = 300, 2000
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	pg, emb, large := sameMessages(t, url, seed, n, chunk)
	counted := &countingStore{Store: pg}
	addrPG, addrEmb := serveIMAP(t, counted), serveIMAP(t, emb)
	fetch := func(addr string) []string {
		c := dialIMAP(t, addr, nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		section := &goimap.FetchItemBodySection{Peek: true}
		var all goimap.SeqSet
		all.AddRange(1, n)
		msgs, err := c.Fetch(all, &goimap.FetchOptions{
			UID: true, BodySection: []*goimap.FetchItemBodySection{section}, BodyStructure: &goimap.FetchItemBodyStructure{},
		}).Collect()
		if err != nil {
			t.Fatalf("seed %d: FETCH: %v", seed, err)
		}
		var out []string
		for _, m := range msgs {
			mt := ""
			if m.BodyStructure != nil {
				mt = m.BodyStructure.MediaType()
			}
			out = append(out, fmt.Sprintf("%d %s %s", m.UID, mt, m.FindBodySection(section)))
		}
		return out
	}
	before := counted.opens.Load()
	got := fetch(addrPG)
	opens := counted.opens.Load() - before
	want := fetch(addrEmb)
	if len(got) != n || !slices.Equal(got, want) {
		t.Errorf("seed %d: FETCH 1:* BODY.PEEK[] on pgstore differs from the embedded store's (%d and %d messages)", seed, len(got), len(want))
	}
	if opens > large {
		t.Errorf("seed %d: FETCH of %d messages: %d OpenBody calls, want at most the %d larger than a chunk", seed, n, opens, large)
	}
}

// statementCounter counts the statements sent by a pool (BEGIN and COMMIT
// included: pgx sends them as statements).
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// testHeadersOneQuery: Headers (SEARCH on header fields, 1000 messages at
// a time) is one statement, where it was four (BEGIN, the user check, the
// query, COMMIT), and gives the same headers, in the order asked, for a
// dense run of UIDs with some expunged, duplicates and UIDs beyond the
// last; an unknown user is still ErrNoSuchUser.
func testHeadersOneQuery(t *testing.T, url string) {
	s := newUser(t, url, 0)
	var uids []uint32
	for i := range 40 {
		uids = append(uids, deliver(t, s, "INBOX", msg(fmt.Sprintf("n%d", i))))
	}
	expungeUIDs(t, s, "INBOX", uids[3], uids[20])
	mb := mailboxOf(t, s, "INBOX")

	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var count statementCounter
	cfg.ConnConfig.Tracer = &count
	pool, err := pgxpool.NewWithConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	traced := &Store{pool: pool, chunkSize: bodyChunk}

	ask := append(slices.Clone(uids[:30]), uids[5], uids[39]+1, uids[0])
	hs, err := traced.Headers(ctxT(t), alice, mb.ID, ask)
	if err != nil {
		t.Fatal(err)
	}
	if n := count.n.Load(); n != 1 {
		t.Errorf("Headers of %d UIDs: %d statements, want 1", len(ask), n)
	}
	for i, u := range ask {
		var want string
		switch {
		case u == uids[3] || u == uids[20] || u > uids[39]:
			want = ""
		default:
			k := slices.Index(uids, u)
			want = strings.SplitAfter(msg(fmt.Sprintf("n%d", k)), "\r\n\r\n")[0]
		}
		if string(hs[i]) != want {
			t.Errorf("Headers: UID %d (#%d): %q, want %q", u, i, hs[i], want)
		}
	}
	if _, err := traced.Headers(ctxT(t), "nobody@example.test", mb.ID, ask); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("Headers of an unknown user: %v, want ErrNoSuchUser", err)
	}
}
