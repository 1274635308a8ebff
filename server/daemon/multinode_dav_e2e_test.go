package daemon_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
	"github.com/mailctl/mailctl/server/dav"
)

// davOn sends one DAV request as alice to node n and returns the status,
// the ETag and the body.
func davOn(t *testing.T, n *pgNode, method, path, body string, hdr map[string]string) (int, string, string) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n.pool, ServerName: "mail.example.test"}}}
	req, err := http.NewRequest(method, "https://"+n.addr("https")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice@example.test", "alice-pw")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.cfg.Store.Node, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("ETag"), string(b)
}

const calEvent = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailctl//test//EN\r\nBEGIN:VEVENT\r\nUID:shared-1\r\n" +
	"DTSTAMP:20260101T000000Z\r\nDTSTART:20260110T100000Z\r\nDTEND:20260110T110000Z\r\nSUMMARY:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// TestNodesShareCalendars (issue 20): two nodes on one PostgreSQL
// database serve the same calendars. An event PUT on node A is read on
// node B; B's update with A's ETag as If-Match wins and A's stale
// If-Match then gets 412; a calendar name set by PROPPATCH on B shows
// in a PROPFIND on A; the calendar export asked of A has B's version;
// a sync token from A, asked of B after a deletion
// there, reports the deletion.
func TestNodesShareCalendars(t *testing.T) {
	urlFile, _ := pgDatabase(t)
	a := startNode(t, "a", urlFile)
	b := startNode(t, "b", urlFile)
	const col = "/dav/alice@example.test/calendars/default/"
	const ev = col + "shared-1.ics"
	put := func(n *pgNode, summary string, hdr map[string]string) (int, string) {
		hdr["Content-Type"] = "text/calendar"
		code, etag, body := davOn(t, n, "PUT", ev, strings.ReplaceAll(calEvent, "%s", summary), hdr)
		if code/100 != 2 && code != http.StatusPreconditionFailed {
			t.Fatalf("PUT on %s: %d %s", n.cfg.Store.Node, code, body)
		}
		return code, etag
	}
	syncBody := func(token string) string {
		return `<?xml version="1.0"?><sync-collection xmlns="DAV:"><sync-token>` + token +
			`</sync-token><sync-level>1</sync-level><prop><getetag/></prop></sync-collection>`
	}
	tokenRe := regexp.MustCompile(`<(?:D:)?sync-token>([^<]+)</`)
	code, _, body := davOn(t, a, "REPORT", col, syncBody(""), map[string]string{"Content-Type": "application/xml"})
	m := tokenRe.FindStringSubmatch(body)
	if code != http.StatusMultiStatus || m == nil {
		t.Fatalf("initial sync-collection on A: %d %s", code, body)
	}
	tokenA := m[1]

	code, etagA := put(a, "made on A", map[string]string{"If-None-Match": "*"})
	if code != http.StatusCreated {
		t.Fatalf("create on A: %d", code)
	}
	code, etag, body := davOn(t, b, "GET", ev, "", nil)
	if code != http.StatusOK || etag != etagA || !strings.Contains(body, "SUMMARY:made on A") {
		t.Fatalf("GET on B: %d ETag %s (A said %s)\n%s", code, etag, etagA, body)
	}
	if code, _ := put(b, "changed on B", map[string]string{"If-Match": etagA}); code/100 != 2 {
		t.Fatalf("update on B with A's ETag: %d", code)
	}
	if code, _ := put(a, "stale on A", map[string]string{"If-Match": etagA}); code != http.StatusPreconditionFailed {
		t.Fatalf("update on A with the replaced ETag: %d, want 412", code)
	}
	if _, _, body := davOn(t, a, "GET", ev, "", nil); !strings.Contains(body, "SUMMARY:changed on B") {
		t.Fatalf("A serves:\n%s", body)
	}

	code, _, body = davOn(t, b, "PROPPATCH", col, `<?xml version="1.0"?><propertyupdate xmlns="DAV:"><set><prop><displayname>Shared</displayname></prop></set></propertyupdate>`,
		map[string]string{"Content-Type": "application/xml"})
	if code != http.StatusMultiStatus {
		t.Fatalf("PROPPATCH on B: %d %s", code, body)
	}
	code, _, body = davOn(t, a, "PROPFIND", col, `<?xml version="1.0"?><propfind xmlns="DAV:"><prop><displayname/></prop></propfind>`,
		map[string]string{"Depth": "0", "Content-Type": "application/xml"})
	if code != http.StatusMultiStatus || !strings.Contains(body, "Shared</") {
		t.Fatalf("PROPFIND on A after B's PROPPATCH: %d %s", code, body)
	}

	// The calendar export of the control socket reads the database too.
	var tarball bytes.Buffer
	if err := daemon.ExportDAV(context.Background(), a.socket, "alice@example.test", &tarball); err != nil {
		t.Fatalf("export on A: %v", err)
	}
	tr := tar.NewReader(&tarball)
	var exported string
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Name == "calendars/default.ics" {
			b, _ := io.ReadAll(tr)
			exported = string(b)
		}
	}
	if !strings.Contains(exported, "SUMMARY:changed on B") {
		t.Fatalf("calendars/default.ics of the export on A:\n%s", exported)
	}

	if code, _, body := davOn(t, b, "DELETE", ev, "", nil); code/100 != 2 {
		t.Fatalf("DELETE on B: %d %s", code, body)
	}
	code, _, body = davOn(t, b, "REPORT", col, syncBody(tokenA), map[string]string{"Content-Type": "application/xml"})
	if code != http.StatusMultiStatus || !strings.Contains(body, "shared-1.ics") || !strings.Contains(body, "404") {
		t.Fatalf("sync-collection on B from A's token: %d, want the deletion of shared-1.ics\n%s", code, body)
	}

	for _, n := range []*pgNode{a, b} {
		n.signal(syscall.SIGTERM)
		if err := n.wait(40 * time.Second); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	}
}

// TestNodesImportLocalCalendars: a node that served calendars from its
// data directory (dav/dav.db) before its move onto PostgreSQL copies them
// into the database at its first start there, so another node serves
// them too, and keeps the file as dav.db.imported (or, beside the file of
// an earlier import, dav.db.imported.TIME).
func TestNodesImportLocalCalendars(t *testing.T) {
	urlFile, _ := pgDatabase(t)
	var davFile string
	a := startNodeWith(t, "a", urlFile, func(cfg *config.Config) {
		davFile = filepath.Join(cfg.DataDir, "dav", dav.FileName)
		// The file an earlier import left (a restore brought a dav.db
		// back since): it must be kept as it is.
		if err := os.MkdirAll(filepath.Dir(davFile), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(davFile+".imported", []byte("earlier"), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		st, err := dav.Open(ctx, davFile)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.EnsureUser(ctx, "alice@example.test"); err != nil {
			t.Fatal(err)
		}
		data := strings.ReplaceAll(calEvent, "%s", "from the old dav.db")
		if _, _, err := st.PutObject(ctx, "alice@example.test", dav.Calendars, dav.DefaultCollection, "shared-1.ics", []byte(data), dav.Conditions{}); err != nil {
			t.Fatal(err)
		}
	})
	b := startNode(t, "b", urlFile)
	code, _, body := davOn(t, b, "GET", "/dav/alice@example.test/calendars/default/shared-1.ics", "", nil)
	if code != http.StatusOK || !strings.Contains(body, "SUMMARY:from the old dav.db") {
		t.Fatalf("GET on B of the event of A's dav.db: %d\n%s", code, body)
	}
	if _, err := os.Stat(davFile); !os.IsNotExist(err) {
		t.Errorf("%s still there after the import (%v)", davFile, err)
	}
	if b, err := os.ReadFile(davFile + ".imported"); err != nil || string(b) != "earlier" {
		t.Errorf("the file of the earlier import was replaced (%d bytes now, %v)", len(b), err)
	}
	if m, _ := filepath.Glob(davFile + ".imported.*"); len(m) != 1 {
		t.Errorf("the imported dav.db is not kept beside the earlier one: %v", m)
	}
	for _, n := range []*pgNode{a, b} {
		n.signal(syscall.SIGTERM)
		if err := n.wait(40 * time.Second); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	}
}
