package dav_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/dav"
)

// syncAnswer is a sync-collection answer: the objects with their etags,
// the names answered 404 (deleted), whether the collection was answered
// 507 (truncated by a limit), and the new token.
type syncAnswer struct {
	etags     map[string]string
	deleted   []string
	truncated bool
	token     string
}

func (s *testServer) syncCollection(t *testing.T, path, token, limit string) syncAnswer {
	t.Helper()
	if limit != "" {
		limit = `<D:limit><D:nresults>` + limit + `</D:nresults></D:limit>`
	}
	resp, body := s.do(t, alice, "REPORT", path,
		`<D:sync-collection xmlns:D="DAV:"><D:sync-token>`+token+`</D:sync-token><D:sync-level>1</D:sync-level>`+limit+`<D:prop><D:getetag/></D:prop></D:sync-collection>`,
		map[string]string{"Content-Type": "application/xml; charset=utf-8"})
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("sync-collection %s from %q: %s\n%s", path, token, resp.Status, body)
	}
	ms := parseMS(t, body)
	a := syncAnswer{etags: map[string]string{}, token: ms.SyncToken}
	for _, r := range ms.Responses {
		switch {
		case r.Href == path && strings.Contains(r.Status, " 507 "):
			a.truncated = true
		case strings.Contains(r.Status, " 404 "):
			a.deleted = append(a.deleted, strings.TrimPrefix(r.Href, path))
		default:
			props, _ := ms.found(r.Href)
			i, j := strings.Index(props, "getetag"), strings.Index(props, "</")
			if i < 0 || j < 0 {
				t.Fatalf("response for %s without getetag: %+v", r.Href, r)
			}
			etag := props[strings.Index(props, ">")+1 : j]
			a.etags[strings.TrimPrefix(r.Href, path)] = strings.Trim(etag, `"`)
		}
	}
	sort.Strings(a.deleted)
	return a
}

// TestSyncCollectionStreamed: sync-collection answers, now written a batch
// at a time, on a calendar of 300 events (several batches): the first
// sync lists every event with the store's etag; after changes, additions
// and deletions over HTTP, a sync from its token lists exactly those;
// with a limit, the answer ends with a 507 for the collection and a token
// from which the next sync lists the rest, and the pages together are the
// whole calendar.
func TestSyncCollectionStreamed(t *testing.T) { testSyncCollectionStreamed(t, newServer) }

func testSyncCollectionStreamed(t *testing.T, newServer serverMaker) {
	s := newServer(t, dav.Options{})
	const n = 300
	objs := map[string]string{}
	for i := 0; i < n; i++ {
		objs[fmt.Sprintf("e%03d.ics", i)] = event(fmt.Sprintf("u%d", i), fmt.Sprintf("event %d", i))
	}
	etags := seed(t, s, dav.Calendars, objs)

	first := s.syncCollection(t, calPath, "", "")
	if len(first.etags) != n || len(first.deleted) != 0 || first.truncated || first.token == "" {
		t.Fatalf("first sync: %d objects, %d deleted, truncated %v, token %q; want %d objects", len(first.etags), len(first.deleted), first.truncated, first.token, n)
	}
	for name, etag := range etags {
		if first.etags[name] != etag {
			t.Fatalf("first sync: %s etag %q, want %q", name, first.etags[name], etag)
		}
	}

	hdr := map[string]string{"Content-Type": "text/calendar"}
	for _, name := range []string{"e010.ics", "e150.ics", "e299.ics"} {
		if resp, _ := s.do(t, alice, "PUT", calPath+name, event("u-"+name, "changed"), hdr); resp.StatusCode/100 != 2 {
			t.Fatalf("PUT %s: %s", name, resp.Status)
		}
	}
	for _, name := range []string{"new1.ics", "new2.ics"} {
		if resp, _ := s.do(t, alice, "PUT", calPath+name, event("u-"+name, "new"), hdr); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %s", name, resp.Status)
		}
	}
	for _, name := range []string{"e000.ics", "e064.ics", "e128.ics", "e200.ics", "e250.ics"} {
		if resp, _ := s.do(t, alice, "DELETE", calPath+name, "", nil); resp.StatusCode/100 != 2 {
			t.Fatalf("DELETE %s: %s", name, resp.Status)
		}
	}
	delta := s.syncCollection(t, calPath, first.token, "")
	var changed []string
	for name := range delta.etags {
		changed = append(changed, name)
	}
	sort.Strings(changed)
	if got, want := strings.Join(changed, " "), "e010.ics e150.ics e299.ics new1.ics new2.ics"; got != want {
		t.Errorf("sync after the changes: changed %s, want %s", got, want)
	}
	if got, want := strings.Join(delta.deleted, " "), "e000.ics e064.ics e128.ics e200.ics e250.ics"; got != want {
		t.Errorf("sync after the changes: deleted %s, want %s", got, want)
	}
	if delta.token == first.token || delta.truncated {
		t.Errorf("sync after the changes: token %q (was %q), truncated %v", delta.token, first.token, delta.truncated)
	}
	if again := s.syncCollection(t, calPath, delta.token, ""); len(again.etags)+len(again.deleted) != 0 || again.token != delta.token {
		t.Errorf("sync with nothing changed: %+v, want nothing and the same token", again)
	}

	// Pages of 100 from an empty token: 297 objects now; the pages after
	// the first start from a token, so they also list the 5 deletions,
	// which come last in the change log: 100, 100, 97 + 3, 2.
	all := map[string]string{}
	token, pages, deleted := "", 0, 0
	for {
		page := s.syncCollection(t, calPath, token, "100")
		pages++
		for name, etag := range page.etags {
			all[name] = etag
		}
		deleted += len(page.deleted)
		if len(page.etags)+len(page.deleted) > 100 {
			t.Fatalf("page %d: %d objects, limit 100", pages, len(page.etags))
		}
		token = page.token
		if !page.truncated {
			break
		}
		if pages > 5 {
			t.Fatalf("more than 5 pages of 100 for %d changes", n+5)
		}
	}
	if len(all) != n-3 || deleted != 5 || pages != 4 {
		t.Errorf("paged sync: %d objects and %d deletions in %d pages, want %d and 5 in 4", len(all), deleted, pages, n-3)
	}
	for name, etag := range all {
		if want := delta.etags[name]; want != "" && etag != want {
			t.Errorf("paged sync: %s etag %q, want %q", name, etag, want)
		}
	}
	if token != delta.token {
		t.Errorf("paged sync ends with token %q, want the collection's %q", token, delta.token)
	}
	if zero := s.syncCollection(t, calPath, delta.token, "0"); len(zero.etags) != 0 || zero.token != delta.token {
		t.Errorf("limit 0 with nothing changed: %+v", zero)
	}
	if zero := s.syncCollection(t, calPath, "", "0"); len(zero.etags) != 0 || !zero.truncated {
		t.Errorf("limit 0 from an empty token: %+v, want no object and a 507", zero)
	}
}
