package pgstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	_ "github.com/emersion/go-message/charset" // charsets, as in mailctl (server/sieve)

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/store"
)

// TestPostgresBodySearch runs the tests of SEARCH BODY and TEXT answered
// by the database (bodysearch.go) against a private cluster.
func TestPostgresBodySearch(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	testenv.StartPostgres(t).RunOnDatabases(t, []testenv.DatabaseTest{
		{Name: "SameAsEmbedded", Fn: testTextSearchSameAsEmbedded},
		{Name: "FollowsCopies", Fn: testTextSearchFollowsCopies},
		{Name: "Upgraded", Fn: testTextSearchUpgraded},
	})
}

// bodyReadCounter counts the bodies that server/imap reads from a Store,
// through OpenBody or in batches (OpenBodies).
type bodyReadCounter struct {
	*Store
	reads atomic.Int64
}

func (c *bodyReadCounter) OpenBody(ctx context.Context, m store.Message) (store.Body, error) {
	c.reads.Add(1)
	return c.Store.OpenBody(ctx, m)
}

func (c *bodyReadCounter) OpenBodies(ctx context.Context, msgs []store.Message) ([]store.Body, error) {
	bodies, err := c.Store.OpenBodies(ctx, msgs)
	for _, b := range bodies {
		if b != nil {
			c.reads.Add(1)
		}
	}
	return bodies, err
}

// textCorpus is messages whose text SEARCH must decode and fold as the
// embedded store does.
func textCorpus() []string {
	h := func(subject string, more ...string) string {
		return "From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n" + strings.Join(more, "")
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return []string{
		// 1 plain ASCII, the needle in another case
		h("plain") + "\r\nThe Quick brown FOX jumps\r\nover the lazy dog\r\n",
		// 2 quoted-printable, a soft line break inside a word, UTF-8
		h("qp", "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n") +
			"\r\nthe w=\r\nord Gr=C3=BC=C3=9Fe and caf=C3=A9\r\n",
		// 3 base64, UTF-8, upper case beyond ASCII
		h("b64", "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n") +
			"\r\n" + b64("ÉCHO from the base64 part, Grüße\r\n") + "\r\n",
		// 4 ISO-8859-1, quoted-printable
		h("latin1", "Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n") +
			"\r\nun caf=E9 cr=E8me, 100% s=FBr\r\n",
		// 5 multipart: text, HTML, an attachment holding the needles
		h("multi", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n") + "\r\npreamble fox\r\n" +
			"--b1\r\nContent-Type: text/plain\r\n\r\nfirst part, sure_thing\r\n" +
			"--b1\r\nContent-Type: text/html; charset=utf-8\r\nX-Part-Note: partheader\r\n\r\n<p>Second <b>part</b> C:\\path\\to</p>\r\n" +
			"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64("attachment fox caf\u00e9 quick") + "\r\n" +
			"--b1--\r\n",
		// 6 a needle across a line break; the subject encoded (RFC 2047)
		h("=?UTF-8?B?"+b64("Ünïcode subject word")+"?=") + "\r\nhello\r\nworld and the lazy\r\ndog\r\n",
		// 7 a forwarded message (message/rfc822, searched as text)
		h("fwd", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b2\r\n") + "\r\n" +
			"--b2\r\nContent-Type: text/plain\r\n\r\nsee below\r\n" +
			"--b2\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner quick text\r\n--b2--\r\n",
		// 8 a KELVIN SIGN (folds to ASCII k), a NUL, invalid UTF-8
		h("odd", "Content-Type: text/plain; charset=utf-8\r\n") + "\r\n\u212aelvin a\x00b \xff\xfe end\r\n",
		// 9 nothing of the needles; 8bit UTF-8
		h("none", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n") + "\r\nrien à voir, écho\r\n",
		// 10 one part, not text: BODY and TEXT search its header only
		h("image", "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n") + "\r\n" + b64("fox quick") + "\r\n",
		// 11 larger than a chunk (4000 bytes here): read by the node
		h("large") + "\r\n" + strings.Repeat("filler line of the large message\r\n", 150) + "quick FOX at the end\r\n",
		// 12 kept text removed below (as written before schema 8): read by the node
		h("legacy") + "\r\nlegacy quick fox, 100% sure\r\n",
	}
}

// textCriteria are SEARCH keys on message text.
func textCriteria() []goimap.SearchCriteria {
	body := func(p ...string) goimap.SearchCriteria { return goimap.SearchCriteria{Body: p} }
	text := func(p ...string) goimap.SearchCriteria { return goimap.SearchCriteria{Text: p} }
	return []goimap.SearchCriteria{
		body("quick"), body("QUICK FOX"), body("fox"), text("fox"),
		body("word"), body("the word"), body("grüße"), body("GRÜSSE"), body("écho"), body("ÉCHO"),
		body("café"), body("crème"), body("caf"),
		body("100%"), body("%"), body("_"), body("sure_thing"), body("e_t"), body(`c:\path`), body(`\`),
		body("hello\r\nworld"), body("lazy\r\ndog"), body("lazy dog"),
		body("subject"), text("subject"), text("ünïcode"), text("ÜNÏCODE SUBJECT"),
		body("partheader"), text("partheader"), text("x-part-note"), text("bob@example.test"),
		body("inner"), text("inner quick"),
		body("kelvin"), body("\u212aelvin"), body("a"), body("b \ufffd"), body("\ufffd"),
		body("image"), text("image/png"), body("png"),
		body("preamble"), body("attachment"),
		body("nowhere at all"), body(""), text(""),
		body("quick", "fox"), body("quick", "lazy"),
		{Not: []goimap.SearchCriteria{body("fox")}},
		{Not: []goimap.SearchCriteria{text("subject")}},
		{Or: [][2]goimap.SearchCriteria{{body("grüße"), text("partheader")}}},
		{Or: [][2]goimap.SearchCriteria{{body("nowhere"), {Not: []goimap.SearchCriteria{body("quick")}}}}},
		{Body: []string{"fox"}, NotFlag: []goimap.Flag{goimap.FlagSeen}},
		{Body: []string{"fox"}, Flag: []goimap.Flag{goimap.FlagFlagged}},
		body("a\x01b"), // never sent to the database (textSep): all read
	}
}

// searchBoth runs each of crits as UID SEARCH on cPG and cEmb (the
// mailbox selected on both) and fails when their UIDs differ; it returns
// how many bodies pg read for each search and how many searches found
// something.
func searchBoth(t *testing.T, cPG, cEmb *imapclient.Client, pg *bodyReadCounter, crits []goimap.SearchCriteria) (reads []int64, nonEmpty int) {
	t.Helper()
	for _, crit := range crits {
		before := pg.reads.Load()
		got, err := cPG.UIDSearch(&crit, nil).Wait()
		if err != nil {
			t.Fatalf("UID SEARCH %+v on pgstore: %v", crit, err)
		}
		reads = append(reads, pg.reads.Load()-before)
		want, err := cEmb.UIDSearch(&crit, nil).Wait()
		if err != nil {
			t.Fatalf("UID SEARCH %+v on the embedded store: %v", crit, err)
		}
		if g, w := got.AllUIDs(), want.AllUIDs(); !slices.Equal(g, w) {
			t.Errorf("UID SEARCH %q: pgstore %v, embedded %v", critString(crit), g, w)
		} else if len(w) > 0 {
			nonEmpty++
		}
	}
	return reads, nonEmpty
}

// newEmbedded is an embedded store with user alice.
func newEmbedded(t *testing.T) *store.Store {
	emb, err := store.Open(ctxT(t), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	if err := emb.EnsureUser(ctxT(t), alice, 0); err != nil {
		t.Fatal(err)
	}
	return emb
}

// testTextSearchSameAsEmbedded: SEARCH BODY and TEXT, answered by the
// database from the texts kept at delivery, find the same UIDs as on the
// embedded store for messages in quoted-printable, base64, ISO-8859-1 and
// UTF-8, multipart, with needles across line breaks, in headers or
// bodies, with % _ and backslashes, under NOT and OR; the bodies are not
// read, but for the two messages without a kept text (larger than a
// chunk, written before schema 8). Before, every body was read.
func testTextSearchSameAsEmbedded(t *testing.T, url string) {
	pg := &bodyReadCounter{Store: newUser(t, url, 0)}
	pg.chunkSize = 4000
	emb := newEmbedded(t)
	// The servers first: they give the stores the function that makes
	// the texts, as serve does before any delivery.
	addrPG, addrEmb := serveIMAP(t, pg), serveIMAP(t, emb)
	corpus := textCorpus()
	for i, m := range corpus {
		var flags []string
		if i%3 == 0 {
			flags = []string{store.FlagSeen, store.FlagFlagged}
		}
		deliver(t, pg.Store, "INBOX", m, flags...)
		if _, err := emb.Deliver(ctxT(t), alice, "INBOX", strings.NewReader(m), flags, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, url, `DELETE FROM body_texts WHERE body_id = (SELECT body_id FROM messages WHERE uid = $1
		AND mailbox_id = (SELECT id FROM mailboxes WHERE name = 'INBOX'))`, len(corpus))
	if n := countRows(t, pg.Store, "body_texts"); n != len(corpus)-2 {
		t.Fatalf("%d kept texts for %d messages, want all but the large one and the one removed", n, len(corpus))
	}
	cPG, cEmb := dialIMAP(t, addrPG, nil), dialIMAP(t, addrEmb, nil)
	for _, c := range []*imapclient.Client{cPG, cEmb} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	crits := textCriteria()
	reads, nonEmpty := searchBoth(t, cPG, cEmb, pg, crits)
	for i, crit := range crits {
		max := int64(2)
		if slices.Equal(crit.Body, []string{"a\x01b"}) {
			max = int64(len(corpus))
		}
		if reads[i] > max {
			t.Errorf("UID SEARCH %q read %d bodies, want at most %d (those without a kept text)", critString(crit), reads[i], max)
		}
	}
	if nonEmpty < len(crits)*2/3 {
		t.Errorf("only %d of %d searches found something", nonEmpty, len(crits))
	}
	// The two read by the first search have their text kept since.
	if n := countRows(t, pg.Store, "body_texts"); n != len(corpus) {
		t.Errorf("%d kept texts after the searches, want %d", n, len(corpus))
	}
}

// testTextSearchUpgraded: on a database whose messages were written
// without kept texts (before schema 8), the first SEARCH BODY reads them
// all and keeps their texts, the next read none; all find what the
// embedded store finds.
func testTextSearchUpgraded(t *testing.T, url string) {
	pg := &bodyReadCounter{Store: newUser(t, url, 0)}
	emb := newEmbedded(t)
	corpus := textCorpus()
	for _, m := range corpus { // before any server: no text kept
		deliver(t, pg.Store, "INBOX", m)
		if _, err := emb.Deliver(ctxT(t), alice, "INBOX", strings.NewReader(m), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := countRows(t, pg.Store, "body_texts"); n != 0 {
		t.Fatalf("%d kept texts before any server", n)
	}
	addrPG, addrEmb := serveIMAP(t, pg), serveIMAP(t, emb)
	cPG, cEmb := dialIMAP(t, addrPG, nil), dialIMAP(t, addrEmb, nil)
	for _, c := range []*imapclient.Client{cPG, cEmb} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	crits := textCriteria()
	crits = crits[:len(crits)-1] // not the needle that is never sent
	first, _ := searchBoth(t, cPG, cEmb, pg, crits[:1])
	if first[0] != int64(len(corpus)) {
		t.Errorf("first SEARCH read %d bodies, want all %d", first[0], len(corpus))
	}
	if n := countRows(t, pg.Store, "body_texts"); n != len(corpus) {
		t.Errorf("%d kept texts after the first search, want %d", n, len(corpus))
	}
	reads, _ := searchBoth(t, cPG, cEmb, pg, crits)
	for i, crit := range crits {
		if reads[i] != 0 {
			t.Errorf("UID SEARCH %q after the first read %d bodies, want none", critString(crit), reads[i])
		}
	}
}

// testTextSearchFollowsCopies: the kept texts follow COPY and MOVE (the
// bodies are shared) and stay right after EXPUNGE of the originals:
// SEARCH in the destination finds what the embedded store finds, without
// reading a body.
func testTextSearchFollowsCopies(t *testing.T, url string) {
	pg := &bodyReadCounter{Store: newUser(t, url, 0)}
	emb := newEmbedded(t)
	addrPG, addrEmb := serveIMAP(t, pg), serveIMAP(t, emb)
	corpus := textCorpus()[:10]
	cPG, cEmb := dialIMAP(t, addrPG, nil), dialIMAP(t, addrEmb, nil)
	for _, c := range []*imapclient.Client{cPG, cEmb} {
		if err := c.Create("Other", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		for _, m := range corpus {
			cmd := c.Append("INBOX", int64(len(m)), nil)
			if _, err := cmd.Write([]byte(m)); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		var some, rest goimap.SeqSet
		some.AddRange(1, 5)
		rest.AddRange(6, 10)
		if _, err := c.Copy(some, "Other").Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Move(rest, "Other").Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Store(some, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Expunge().Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("Other", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	crits := textCriteria()
	crits = crits[:len(crits)-1] // not the needle that is never sent
	reads, nonEmpty := searchBoth(t, cPG, cEmb, pg, crits)
	for i, crit := range crits {
		if reads[i] != 0 {
			t.Errorf("UID SEARCH %q in the copies read %d bodies, want none", critString(crit), reads[i])
		}
	}
	if nonEmpty < len(crits)/2 {
		t.Errorf("only %d of %d searches found something", nonEmpty, len(crits))
	}
}

// critString is a short form of c for messages.
func critString(c goimap.SearchCriteria) string {
	var parts []string
	for _, p := range c.Body {
		parts = append(parts, fmt.Sprintf("BODY %q", p))
	}
	for _, p := range c.Text {
		parts = append(parts, fmt.Sprintf("TEXT %q", p))
	}
	for _, f := range c.Flag {
		parts = append(parts, "KEYWORD "+string(f))
	}
	for _, f := range c.NotFlag {
		parts = append(parts, "UNKEYWORD "+string(f))
	}
	for _, n := range c.Not {
		parts = append(parts, "NOT ("+critString(n)+")")
	}
	for _, o := range c.Or {
		parts = append(parts, "OR ("+critString(o[0])+") ("+critString(o[1])+")")
	}
	return strings.Join(parts, " ")
}
