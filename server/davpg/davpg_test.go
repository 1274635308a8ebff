package davpg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/carddav"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/dav"
	"github.com/mailctl/mailctl/server/davpg"
	"github.com/mailctl/mailctl/server/pgstore"
)

// TestPostgres runs the package's tests against one private PostgreSQL
// cluster (started once: it takes seconds), a database each.
func TestPostgres(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	testenv.StartPostgres(t).RunOnDatabases(t, []testenv.DatabaseTest{
		{Name: "StoreSemantics", Fn: testStoreSemantics},
		{Name: "TwoNodesConditionalWrites", Fn: testTwoNodesConditionalWrites},
		{Name: "Import", Fn: testImport},
		{Name: "SyncAcrossNodes", Fn: testSyncAcrossNodes},
	})
}

// node opens a store on url as one mailctl node would: its own pool on
// the migrated database.
func node(t *testing.T, url string) *davpg.Store {
	t.Helper()
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return davpg.New(pool)
}

const alice, bob = "alice@example.org", "bob@example.org"

// testStoreSemantics: what the handler relies on, on two nodes' stores
// of one database: conditions, sync tokens across a deletion, collection
// properties, per-user isolation, a collection made again.
func testStoreSemantics(t *testing.T, url string) {
	ctx := t.Context()
	a, b := node(t, url), node(t, url)
	for _, s := range []*davpg.Store{a, b} {
		if err := s.EnsureUser(ctx, alice); err != nil {
			t.Fatal(err)
		}
	}
	cols, err := b.Collections(ctx, alice, dav.Calendars)
	if err != nil || len(cols) != 1 || cols[0].Name != dav.DefaultCollection || cols[0].DisplayName != "Calendar" {
		t.Fatalf("default calendars after EnsureUser on two nodes: %+v, %v", cols, err)
	}
	const col = dav.DefaultCollection
	c0, _ := a.Collection(ctx, alice, dav.Calendars, col)
	o1, created, err := a.PutObject(ctx, alice, dav.Calendars, col, "x.ics", []byte("one"), dav.Conditions{IfNoneMatch: "*"})
	if err != nil || !created || o1.ETag != dav.ETagOf([]byte("one")) {
		t.Fatalf("create: %+v %v %v", o1, created, err)
	}
	if _, _, err := b.PutObject(ctx, alice, dav.Calendars, col, "x.ics", []byte("two"), dav.Conditions{IfNoneMatch: "*"}); !errors.Is(err, dav.ErrPrecondition) {
		t.Fatalf("If-None-Match: * on an existing object from the other node: %v, want precondition failed", err)
	}
	if _, _, err := b.PutObject(ctx, alice, dav.Calendars, col, "x.ics", []byte("two"), dav.Conditions{IfMatch: "nope"}); !errors.Is(err, dav.ErrPrecondition) {
		t.Fatalf("stale If-Match: %v", err)
	}
	o2, created, err := b.PutObject(ctx, alice, dav.Calendars, col, "x.ics", []byte("two"), dav.Conditions{IfMatch: o1.ETag})
	if err != nil || created {
		t.Fatalf("update with If-Match: %v %v", created, err)
	}
	if got, err := a.Object(ctx, alice, dav.Calendars, col, "x.ics"); err != nil || string(got.Data) != "two" || got.ETag != o2.ETag {
		t.Fatalf("node a reads %q %s, %v; want node b's update", got.Data, got.ETag, err)
	}
	if _, _, err := a.PutObject(ctx, alice, dav.Calendars, col, "y.ics", []byte("y"), dav.Conditions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteObject(ctx, alice, dav.Calendars, col, "x.ics", dav.Conditions{IfMatch: o1.ETag}); !errors.Is(err, dav.ErrPrecondition) {
		t.Fatalf("delete with a stale If-Match: %v", err)
	}
	if err := a.DeleteObject(ctx, alice, dav.Calendars, col, "x.ics", dav.Conditions{IfMatch: o2.ETag}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteObject(ctx, alice, dav.Calendars, col, "x.ics", dav.Conditions{}); !errors.Is(err, dav.ErrNotFound) {
		t.Fatalf("delete of a deleted object: %v", err)
	}
	// A token from before the deletion reports it; the empty token lists
	// what exists.
	ch, c, err := b.Changes(ctx, alice, dav.Calendars, col, c0.SyncToken())
	if err != nil || len(ch) != 2 || ch[0].Name != "y.ics" || ch[0].Deleted || ch[1].Name != "x.ics" || !ch[1].Deleted || c.Seq != 4 {
		t.Fatalf("changes since the first token: %+v (seq %d), %v", ch, c.Seq, err)
	}
	if ch, _, err := a.Changes(ctx, alice, dav.Calendars, col, ""); err != nil || len(ch) != 1 || ch[0].Name != "y.ics" || string(ch[0].Object.Data) != "y" {
		t.Fatalf("initial sync: %+v, %v", ch, err)
	}
	if ch, _, err := a.Changes(ctx, alice, dav.Calendars, col, c.SyncToken()); err != nil || len(ch) != 0 {
		t.Fatalf("changes since the current token: %+v, %v", ch, err)
	}
	// Batches: up to n, above after, at most upTo.
	if ch, _, err := a.ChangesAfter(ctx, alice, dav.Calendars, col, c0.SyncToken(), 0, 3, 1); err != nil || len(ch) != 1 || ch[0].Seq != 3 {
		t.Fatalf("ChangesAfter(0, 3, 1): %+v, %v", ch, err)
	}
	for _, tok := range []string{"urn:x-mailctl:sync:" + c.Epoch + ":99", "urn:x-mailctl:sync:other:1", "garbage"} {
		if _, _, err := a.Changes(ctx, alice, dav.Calendars, col, tok); !errors.Is(err, dav.ErrBadToken) {
			t.Fatalf("token %q: %v, want invalid sync token", tok, err)
		}
	}
	// Properties.
	if err := b.UpdateCollection(ctx, alice, dav.Calendars, col, func(c *dav.Collection) {
		c.DisplayName, c.Description, c.Color = "Work", "the job", "#112233"
	}); err != nil {
		t.Fatal(err)
	}
	if c, err := a.Collection(ctx, alice, dav.Calendars, col); err != nil || c.DisplayName != "Work" || c.Description != "the job" || c.Color != "#112233" {
		t.Fatalf("properties: %+v, %v", c, err)
	}
	// Isolation: bob sees none of alice's, and cannot reach them by name.
	if err := a.EnsureUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if objs, err := a.Objects(ctx, bob, dav.Calendars, col); err != nil || len(objs) != 0 {
		t.Fatalf("bob's calendar: %+v, %v", objs, err)
	}
	// Collections: exists, delete, made again with a new epoch.
	if err := a.CreateCollection(ctx, alice, dav.Collection{Kind: dav.Calendars, Name: col}); !errors.Is(err, dav.ErrExists) {
		t.Fatalf("create an existing collection: %v", err)
	}
	if err := b.DeleteCollection(ctx, alice, dav.Calendars, col); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Object(ctx, alice, dav.Calendars, col, "y.ics"); !errors.Is(err, dav.ErrNotFound) {
		t.Fatalf("object of a deleted collection: %v", err)
	}
	if err := a.EnsureUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if cols, _ := b.Collections(ctx, alice, dav.Calendars); len(cols) != 0 {
		t.Fatalf("a deleted default calendar came back: %+v", cols)
	}
	if err := a.CreateCollection(ctx, alice, dav.Collection{Kind: dav.Calendars, Name: col}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Changes(ctx, alice, dav.Calendars, col, c.SyncToken()); !errors.Is(err, dav.ErrBadToken) {
		t.Fatalf("a token of the deleted incarnation: %v", err)
	}
	// A user whose first act is MKCALENDAR gets no default collections.
	if err := b.CreateCollection(ctx, "carol@example.org", dav.Collection{Kind: dav.Calendars, Name: "mine"}); err != nil {
		t.Fatal(err)
	}
	if err := a.EnsureUser(ctx, "carol@example.org"); err != nil {
		t.Fatal(err)
	}
	if cols, _ := a.Collections(ctx, "carol@example.org", dav.Calendars); len(cols) != 1 || cols[0].Name != "mine" {
		t.Fatalf("carol's calendars: %+v", cols)
	}
	// Byte order of names, as bbolt.
	for _, n := range []string{"b.ics", "B.ics", "a.ics", "é.ics"} {
		if _, _, err := a.PutObject(ctx, bob, dav.Calendars, col, n, []byte(n), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := b.ObjectsAfter(ctx, bob, dav.Calendars, col, "B.ics", 2)
	if err != nil || len(objs) != 2 || objs[0].Name != "a.ics" || objs[1].Name != "b.ics" {
		t.Fatalf("ObjectsAfter(B.ics, 2): %+v, %v", objs, err)
	}
}

var passwords = map[string]string{alice: "alice-secret", bob: "bob-secret"}

func testAuth(ctx context.Context, user, password string, remote net.Addr) (string, error) {
	if p, ok := passwords[user]; ok && p == password {
		return user, nil
	}
	return "", errors.New("invalid credentials")
}

// davNode serves DAV from a store of its own on url: one mailctl node.
func davNode(t *testing.T, url string) *httptest.Server {
	srv := httptest.NewServer(dav.New(node(t, url), testAuth, dav.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	return srv
}

func event(uid, summary string) string {
	return strings.ReplaceAll(fmt.Sprintf(`BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//mailctl//test//EN
BEGIN:VEVENT
UID:%s
DTSTAMP:20260101T000000Z
DTSTART:20260110T100000Z
DTEND:20260110T110000Z
SUMMARY:%s
END:VEVENT
END:VCALENDAR
`, uid, summary), "\n", "\r\n")
}

func do(t *testing.T, method, url, body string, hdr map[string]string) (int, string, string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(alice, passwords[alice])
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, "", ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.Trim(resp.Header.Get("ETag"), `"`), string(b)
}

// op is one successful conditional write: it consumed the state from
// (an ETag, or "" for no object) and made the state to.
type op struct {
	desc     string
	from, to string
}

// testTwoNodesConditionalWrites: clients on two nodes of one database
// read an object and write it back with If-Match (or create it with
// If-None-Match: *, or delete it with If-Match), at random (seeded). A
// lost update would show as two successful writes made from the same
// state; at the end the successful writes of each name must form one
// chain per incarnation of the object ending in what both nodes list.
func testTwoNodesConditionalWrites(t *testing.T, url string) {
	seed := uint64(time.Now().UnixNano())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d", seed)
		}
	})
	const (
		workers = 4
		ops     = 40
		names   = 3
		col     = "/dav/alice@example.org/calendars/default/"
	)
	nodes := []*httptest.Server{davNode(t, url), davNode(t, url)}
	var mu sync.Mutex
	done := map[string][]op{} // name -> successful writes
	conflicts := 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range ops {
				name := fmt.Sprintf("ev%d.ics", rng.IntN(names))
				n := nodes[rng.IntN(len(nodes))]
				code, etag, _ := do(t, "GET", n.URL+col+name, "", nil)
				var from string
				switch code {
				case http.StatusOK:
					from = etag
				case http.StatusNotFound:
				default:
					t.Errorf("GET %s: %d", name, code)
					return
				}
				// Another client may write between the GET and the write:
				// that is the race the conditions must catch.
				n = nodes[rng.IntN(len(nodes))]
				desc := fmt.Sprintf("w%d op%d", w, i)
				var to string
				if from != "" && rng.IntN(4) == 0 {
					code, _, _ = do(t, "DELETE", n.URL+col+name, "", map[string]string{"If-Match": `"` + from + `"`})
					desc += " DELETE"
				} else {
					hdr := map[string]string{"Content-Type": "text/calendar"}
					if from == "" {
						hdr["If-None-Match"] = "*"
					} else {
						hdr["If-Match"] = `"` + from + `"`
					}
					code, to, _ = do(t, "PUT", n.URL+col+name, event(strings.TrimSuffix(name, ".ics"), desc), hdr)
					desc += " PUT"
				}
				mu.Lock()
				switch {
				case code/100 == 2:
					done[name] = append(done[name], op{desc: desc, from: from, to: to})
				case code == http.StatusPreconditionFailed:
					conflicts++
				default:
					t.Errorf("%s %s: status %d", desc, name, code)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d conditional writes refused (412), seed %d", conflicts, seed)
	// What each node lists.
	lists := make([]map[string]string, len(nodes))
	for i, n := range nodes {
		lists[i] = map[string]string{}
		for k := range names {
			name := fmt.Sprintf("ev%d.ics", k)
			code, etag, _ := do(t, "GET", n.URL+col+name, "", nil)
			if code == http.StatusOK {
				lists[i][name] = etag
			}
		}
	}
	if fmt.Sprint(lists[0]) != fmt.Sprint(lists[1]) {
		t.Fatalf("the nodes disagree: %v and %v", lists[0], lists[1])
	}
	for name, ops := range done {
		// Each state is consumed at most once, except "no object" once
		// per creation; follow the chains from each creation.
		next := map[string]op{}
		creates := 0
		for _, o := range ops {
			if o.from == "" {
				creates++
				continue
			}
			if prev, ok := next[o.from]; ok {
				t.Fatalf("%s: lost update: %q and %q both succeeded from ETag %s", name, prev.desc, o.desc, o.from)
			}
			next[o.from] = o
		}
		seen, ends := 0, []string{}
		for _, o := range ops {
			if o.from != "" {
				continue
			}
			seen++
			cur := o
			for cur.to != "" {
				n, ok := next[cur.to]
				if !ok {
					break
				}
				seen++
				cur = n
			}
			ends = append(ends, cur.to)
		}
		if seen != len(ops) {
			t.Fatalf("%s: %d successful writes, %d on chains from a creation: %+v", name, len(ops), seen, ops)
		}
		live := []string{}
		for _, e := range ends {
			if e != "" {
				live = append(live, e)
			}
		}
		switch {
		case len(live) > 1:
			t.Fatalf("%s: %d incarnations not deleted: %v", name, len(live), live)
		case len(live) == 1 && lists[0][name] != live[0]:
			t.Fatalf("%s: last write made ETag %s, the nodes list %q", name, live[0], lists[0][name])
		case len(live) == 0 && lists[0][name] != "":
			t.Fatalf("%s: deleted, the nodes list ETag %s", name, lists[0][name])
		}
	}
}

// testImport: a node's dav.db copied into the database keeps every
// collection with its properties and every object with its ETag; an
// object the database already has under the same name stays; a second
// import copies nothing.
func testImport(t *testing.T, url string) {
	ctx := t.Context()
	src, err := dav.Open(ctx, filepath.Join(t.TempDir(), dav.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.EnsureUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := src.CreateCollection(ctx, alice, dav.Collection{Kind: dav.Calendars, Name: "work", DisplayName: "Work", Color: "#FF0000"}); err != nil {
		t.Fatal(err)
	}
	// bob deleted his default address book: it must not come back.
	if err := src.EnsureUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if err := src.DeleteCollection(ctx, bob, dav.AddressBooks, dav.DefaultCollection); err != nil {
		t.Fatal(err)
	}
	put := func(s dav.Backend, user string, kind dav.Kind, col, name, data string) {
		t.Helper()
		if _, _, err := s.PutObject(ctx, user, kind, col, name, []byte(data), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
	}
	put(src, alice, dav.Calendars, "work", "a.ics", "alice work a")
	put(src, alice, dav.Calendars, dav.DefaultCollection, "b.ics", "alice default b")
	put(src, alice, dav.AddressBooks, dav.DefaultCollection, "c.vcf", "alice card c")
	put(src, bob, dav.Calendars, dav.DefaultCollection, "b.ics", "bob default b")

	dst := node(t, url)
	// alice used another node already: her default calendar has a b.ics
	// of its own, which must stay.
	if err := dst.EnsureUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	put(dst, alice, dav.Calendars, dav.DefaultCollection, "b.ics", "already in the database")
	st, err := dst.Import(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if want := (davpg.ImportStats{Users: 2, Collections: 2, Objects: 3, Skipped: 1}); st != want {
		t.Fatalf("import: %+v, want %+v", st, want)
	}
	for _, user := range []string{alice, bob} {
		if err := dst.EnsureUser(ctx, user); err != nil {
			t.Fatal(err)
		}
		for _, kind := range []dav.Kind{dav.Calendars, dav.AddressBooks} {
			want, _ := src.Collections(ctx, user, kind)
			got, err := dst.Collections(ctx, user, kind)
			if err != nil || len(got) != len(want) {
				t.Fatalf("%s %s: %+v, want %+v (%v)", user, kind, got, want, err)
			}
			for i := range want {
				if got[i].Name != want[i].Name || got[i].DisplayName != want[i].DisplayName || got[i].Color != want[i].Color {
					t.Fatalf("%s %s: %+v, want %+v", user, kind, got[i], want[i])
				}
				wo, _ := src.Objects(ctx, user, kind, want[i].Name)
				for _, o := range wo {
					g, err := dst.Object(ctx, user, kind, want[i].Name, o.Name)
					keep := user == alice && o.Name == "b.ics"
					switch {
					case err != nil:
						t.Fatalf("%s %s/%s: %v", user, want[i].Name, o.Name, err)
					case keep && string(g.Data) != "already in the database":
						t.Fatalf("the database's own b.ics was replaced by %q", g.Data)
					case !keep && g.ETag != o.ETag:
						t.Fatalf("%s %s/%s: ETag %s, want %s", user, want[i].Name, o.Name, g.ETag, o.ETag)
					}
				}
			}
		}
	}
	if st, err := dst.Import(ctx, src); err != nil || st.Objects != 0 || st.Collections != 0 || st.Skipped != 4 {
		t.Fatalf("second import: %+v, %v", st, err)
	}
}

// testSyncAcrossNodes: clients PUT and DELETE at random (seeded) through
// two nodes while another keeps a view of the calendar by sync-collection
// alone, asking each time a node picked at random with the token the
// previous answer (maybe from the other node) gave; at the end the view
// equals what both nodes list, ETags included.
func testSyncAcrossNodes(t *testing.T, url string) {
	seed := uint64(time.Now().UnixNano())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d", seed)
		}
	})
	const (
		workers = 4
		ops     = 30
		names   = 8
		col     = "/dav/alice@example.org/calendars/default/"
	)
	ctx := t.Context()
	nodes := []*httptest.Server{davNode(t, url), davNode(t, url)}
	clients := make([]*carddav.Client, len(nodes))
	for i, n := range nodes {
		c, err := carddav.NewClient(webdav.HTTPClientWithBasicAuth(http.DefaultClient, alice, passwords[alice]), n.URL+"/dav/")
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	view := map[string]string{} // path -> ETag
	token := ""
	rng := rand.New(rand.NewPCG(seed, 99))
	apply := func() error {
		i := rng.IntN(len(clients))
		resp, err := clients[i].SyncCollection(ctx, col, &carddav.SyncQuery{SyncToken: token})
		if err != nil {
			return fmt.Errorf("sync on node %d since %q: %w", i, token, err)
		}
		for _, o := range resp.Updated {
			view[o.Path] = o.ETag
		}
		for _, p := range resp.Deleted {
			delete(view, p)
		}
		token = resp.SyncToken
		return nil
	}
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range ops {
				n := nodes[rng.IntN(len(nodes))]
				name := fmt.Sprintf("ev%d.ics", rng.IntN(names))
				var code int
				if rng.IntN(3) == 0 {
					code, _, _ = do(t, "DELETE", n.URL+col+name, "", nil)
				} else {
					code, _, _ = do(t, "PUT", n.URL+col+name, event(strings.TrimSuffix(name, ".ics"), fmt.Sprintf("w%d op%d", w, i)),
						map[string]string{"Content-Type": "text/calendar"})
				}
				if code/100 != 2 && code != http.StatusNotFound {
					t.Errorf("w%d op%d %s: status %d", w, i, name, code)
					return
				}
			}
		}()
	}
	done := make(chan error, 1)
	go func() {
		for range 15 {
			if err := apply(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		want := map[string]string{}
		for k := range names {
			name := fmt.Sprintf("ev%d.ics", k)
			if code, etag, _ := do(t, "GET", n.URL+col+name, "", nil); code == http.StatusOK {
				want[col+name] = etag
			}
		}
		if !maps.Equal(view, want) {
			t.Fatalf("sync-collection view %v != node %d's objects %v", view, i, want)
		}
	}
}
