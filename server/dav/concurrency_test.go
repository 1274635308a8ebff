package dav_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-webdav/carddav"

	"github.com/mailctl/mailctl/server/dav"
)

// TestConcurrentWritesAndSync: several clients PUT and DELETE at random
// (seeded) while another keeps a view of the calendar by sync-collection
// alone; at each checkpoint the view must equal the store, ETags
// included. The seed is printed on failure.
func TestConcurrentWritesAndSync(t *testing.T) { testConcurrentWritesAndSync(t, newServer) }

func testConcurrentWritesAndSync(t *testing.T, newServer serverMaker) {
	seed := uint64(time.Now().UnixNano())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d", seed)
		}
	})
	const (
		user    = "alice@example.org"
		col     = "/dav/alice@example.org/calendars/default/"
		workers = 4
		rounds  = 3
		ops     = 25
		names   = 10
	)
	s := newServer(t, dav.Options{})
	ctx := context.Background()
	sc := s.cardClient(t, user)
	view := map[string]string{} // path -> etag
	token := ""
	apply := func() error {
		resp, err := sc.SyncCollection(ctx, col, &carddav.SyncQuery{SyncToken: token})
		if err != nil {
			return fmt.Errorf("sync since %q: %w", token, err)
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
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, workers+1)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(round*workers+w)))
				for i := range ops {
					p := fmt.Sprintf("%sev%d.ics", col, rng.IntN(names))
					var req *http.Request
					if rng.IntN(3) == 0 {
						req, _ = http.NewRequest("DELETE", s.URL+p, nil)
					} else {
						uid := strings.TrimSuffix(p[strings.LastIndexByte(p, '/')+1:], ".ics")
						req, _ = http.NewRequest("PUT", s.URL+p, strings.NewReader(event(uid, fmt.Sprintf("r%d w%d op%d", round, w, i))))
						req.Header.Set("Content-Type", "text/calendar")
					}
					req.SetBasicAuth(user, passwords[user])
					resp, err := s.Client().Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
						errs <- fmt.Errorf("%s %s: %s", req.Method, p, resp.Status)
						return
					}
				}
			}()
		}
		// The syncing client runs during the writes too.
		done := make(chan struct{})
		var syncErr error
		go func() {
			defer close(done)
			for range 10 {
				if err := apply(); err != nil {
					syncErr = err
					return
				}
			}
		}()
		wg.Wait()
		<-done
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if syncErr != nil {
			t.Fatal(syncErr)
		}
		if err := apply(); err != nil {
			t.Fatal(err)
		}
		objs, err := s.st.Objects(ctx, user, dav.Calendars, dav.DefaultCollection)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for _, o := range objs {
			want[col+o.Name] = o.ETag
		}
		if !maps.Equal(view, want) {
			t.Fatalf("round %d: sync-collection view %v != store %v", round, view, want)
		}
	}
}
