package dav_test

import (
	"context"
	"runtime"
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
}
