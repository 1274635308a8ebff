package dav_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/dav"
	"github.com/mailctl/mailctl/server/davpg"
	"github.com/mailctl/mailctl/server/pgstore"
)

// TestOnPostgres runs the handler tests that do not depend on the store
// against server/davpg, the PostgreSQL backend of the nodes that share a
// database (the other tests run them on the bbolt store): one private
// cluster and database.
func TestOnPostgres(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := pgstore.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// One database, emptied before each test (the tests run one at a
	// time): a new database each would double the run time.
	onPG := func(t *testing.T, opts dav.Options) *testServer {
		t.Helper()
		if _, err := pool.Exec(t.Context(), "TRUNCATE dav_users, dav_collections CASCADE"); err != nil {
			t.Fatal(err)
		}
		return newServerOn(t, davpg.New(pool), opts)
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, serverMaker)
	}{
		{"CalDAVClient", testCalDAVClient},
		{"CardDAVClient", testCardDAVClient},
		{"OtherUsersCollections", testOtherUsersCollections},
		{"PutLimits", testPutLimits},
		{"Mkcalendar", testMkcalendar},
		{"ExportTar", testExportTar},
		{"CurlDiscoveryAndReports", testCurlDiscoveryAndReports},
		{"CollectionSyncProperties", testCollectionSyncProperties},
		{"CurlProppatch", testCurlProppatch},
		{"VdirsyncerMetasync", testVdirsyncerMetasync},
		{"CalendarQueryStreamed", testCalendarQueryStreamed},
		{"AddressBookQueryStreamed", testAddressBookQueryStreamed},
		{"ReportPropsAndLimit", testReportPropsAndLimit},
		{"PropfindDepth1Streamed", testPropfindDepth1Streamed},
		{"MultigetStreamed", testMultigetStreamed},
		{"SyncCollectionStreamed", testSyncCollectionStreamed},
		{"ConcurrentWritesAndSync", testConcurrentWritesAndSync},
		{"VdirsyncerTwoWay", testVdirsyncerTwoWay},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, onPG) })
	}
	t.Run("VdirsyncerNodePair", func(t *testing.T) {
		a := onPG(t, dav.Options{}) // empties the database once
		b := newServerOn(t, davpg.New(pool), dav.Options{})
		testVdirsyncerNodePair(t, a, b)
	})
}

// vdirsyncerConfig writes a vdirsyncer configuration in dir syncing
// alice's calendars with dir/cal through the server at url.
func vdirsyncerConfig(t *testing.T, dir, url, ca string) string {
	t.Helper()
	cfg := filepath.Join(dir, "config")
	c := fmt.Sprintf("[general]\nstatus_path = %q\n\n", filepath.Join(dir, "status")) +
		"[pair cal]\na = \"cal_local\"\nb = \"cal_remote\"\ncollections = [\"from b\"]\nconflict_resolution = \"b wins\"\n\n" +
		fmt.Sprintf("[storage cal_local]\ntype = \"filesystem\"\npath = %q\nfileext = \".ics\"\n\n", filepath.Join(dir, "cal")) +
		fmt.Sprintf("[storage cal_remote]\ntype = \"caldav\"\nurl = %q\nusername = \"alice@example.org\"\npassword = %q\nverify = %q\n",
			url+"/", passwords["alice@example.org"], ca)
	if err := os.WriteFile(cfg, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testVdirsyncerNodePair: two laptops running vdirsyncer (the Debian
// package), one syncing with node a, the other with node b, two servers
// on one database. What one laptop adds, edits or deletes reaches the
// other; then the first laptop is pointed at node b (a load balancer
// switched it) with its sync state from node a, and its next syncs find
// nothing to do: same items, ETags and no duplicate on either side.
func testVdirsyncerNodePair(t *testing.T, a, b *testServer) {
	if _, err := exec.LookPath("vdirsyncer"); err != nil {
		t.Fatal("vdirsyncer is required (apt-get install vdirsyncer)")
	}
	top := t.TempDir()
	ca := filepath.Join(top, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	dir1, dir2 := filepath.Join(top, "laptop1"), filepath.Join(top, "laptop2")
	for _, d := range []string{dir1, dir2} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg1, cfg2 := vdirsyncerConfig(t, dir1, a.URL, ca), vdirsyncerConfig(t, dir2, b.URL, ca)
	calPath := "/dav/alice@example.org/calendars/default/"
	if resp, _ := a.do(t, "alice@example.org", "PUT", calPath+"srv1.ics", event("srv1", "Made on node a"), map[string]string{"Content-Type": "text/calendar"}); resp.StatusCode/100 != 2 {
		t.Fatalf("PUT on a: %s", resp.Status)
	}
	for _, cfg := range []string{cfg1, cfg2} {
		vdirsyncer(t, cfg, "discover")
		vdirsyncer(t, cfg, "sync")
	}
	local1, local2 := filepath.Join(dir1, "cal", "default"), filepath.Join(dir2, "cal", "default")
	want := map[string]string{"srv1": "Made on node a"}
	sameItems(t, "laptop 2 (node b) after the first sync", localItems(t, local2, "SUMMARY:"), want)

	// Laptop 1 adds an event and edits srv1; laptop 2 gets both via b.
	if err := os.WriteFile(filepath.Join(local1, "l1.ics"), []byte(event("l1", "From laptop 1")), 0o600); err != nil {
		t.Fatal(err)
	}
	editLocal(t, local1, "srv1", "Made on node a", "Edited on laptop 1")
	vdirsyncer(t, cfg1, "sync")
	vdirsyncer(t, cfg2, "sync")
	want = map[string]string{"srv1": "Edited on laptop 1", "l1": "From laptop 1"}
	sameItems(t, "laptop 2 after laptop 1's changes", localItems(t, local2, "SUMMARY:"), want)

	// Laptop 2 deletes l1 and edits srv1; laptop 1 gets both via a.
	ents, _ := os.ReadDir(local2)
	for _, e := range ents {
		if body, _ := os.ReadFile(filepath.Join(local2, e.Name())); strings.Contains(string(body), "UID:l1") {
			os.Remove(filepath.Join(local2, e.Name()))
		}
	}
	editLocal(t, local2, "srv1", "Edited on laptop 1", "Edited on laptop 2")
	vdirsyncer(t, cfg2, "sync")
	vdirsyncer(t, cfg1, "sync")
	want = map[string]string{"srv1": "Edited on laptop 2"}
	sameItems(t, "laptop 1 after laptop 2's changes", localItems(t, local1, "SUMMARY:"), want)
	sameItems(t, "node a", a.serverItems(t, dav.Calendars, "SUMMARY:"), want)

	// Laptop 1 switched to node b, with the state it got from node a.
	objsBefore, err := b.st.Objects(t.Context(), "alice@example.org", dav.Calendars, dav.DefaultCollection)
	if err != nil {
		t.Fatal(err)
	}
	cfg1 = vdirsyncerConfig(t, dir1, b.URL, ca)
	vdirsyncer(t, cfg1, "discover") // vdirsyncer asks it after a change of URL
	vdirsyncer(t, cfg1, "sync")
	vdirsyncer(t, cfg1, "sync")
	sameItems(t, "laptop 1 after the switch to node b", localItems(t, local1, "SUMMARY:"), want)
	objsAfter, err := a.st.Objects(t.Context(), "alice@example.org", dav.Calendars, dav.DefaultCollection)
	if err != nil {
		t.Fatal(err)
	}
	if len(objsAfter) != len(objsBefore) || len(objsAfter) != 1 || objsAfter[0].ETag != objsBefore[0].ETag {
		t.Fatalf("the switch of node rewrote the calendar: %d objects (ETag %v) before, %d after (%v)", len(objsBefore), objsBefore, len(objsAfter), objsAfter)
	}
}

// editLocal replaces a SUMMARY in the local copy of the event uid.
func editLocal(t *testing.T, dir, uid, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		body, _ := os.ReadFile(p)
		if strings.Contains(string(body), "UID:"+uid) {
			if err := os.WriteFile(p, []byte(strings.Replace(string(body), "SUMMARY:"+from, "SUMMARY:"+to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no local event %s in %s", uid, dir)
}
