package cloudflare_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	libcf "github.com/libdns/cloudflare"
	"github.com/libdns/libdns"

	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
)

// redirect points libdns/cloudflare's fixed base URL at the emulator.
type redirect struct{ base string }

func (r redirect) Do(req *http.Request) (*http.Response, error) {
	u := strings.Replace(req.URL.String(), "https://api.cloudflare.com/client/v4", r.base, 1)
	nr, err := http.NewRequestWithContext(req.Context(), req.Method, u, req.Body)
	if err != nil {
		return nil, err
	}
	nr.Header = req.Header
	return http.DefaultClient.Do(nr)
}

// TestLibdnsPitfalls drives the emulator with github.com/libdns/cloudflare
// itself and checks that it reproduces the library's documented behaviour
// against the real API (DEPENDENCIES.md): deleting one SRV deletes every SRV
// at that name, and SetRecords fails when a name holds several records.
func TestLibdnsPitfalls(t *testing.T) {
	t.Parallel()
	s := cfemu.New(t)
	s.AddZone("example.org")
	lib := &libcf.Provider{APIToken: s.Token, HTTPClient: redirect{s.URL}}
	ctx := context.Background()
	srv := func(prio uint16) libdns.Record {
		return libdns.SRV{Service: "imaps", Transport: "tcp", Name: "@", Priority: prio, Weight: 1, Port: 993, Target: "mx1.example.org.", TTL: time.Hour}
	}
	if _, err := lib.AppendRecords(ctx, "example.org", []libdns.Record{srv(0), srv(10)}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Records("example.org")); n != 2 {
		t.Fatalf("%d records after append, want 2", n)
	}
	if _, err := lib.DeleteRecords(ctx, "example.org", []libdns.Record{srv(10)}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Records("example.org")); n != 0 {
		t.Fatalf("%d records after deleting one SRV with libdns, want 0 (its known pitfall)", n)
	}

	mx := func(p uint16) libdns.Record {
		return libdns.MX{Name: "@", Preference: p, Target: "mx.example.org.", TTL: time.Hour}
	}
	if _, err := lib.AppendRecords(ctx, "example.org", []libdns.Record{mx(10), mx(20)}); err != nil {
		t.Fatal(err)
	}
	if _, err := lib.SetRecords(ctx, "example.org", []libdns.Record{mx(10), mx(30)}); err == nil {
		t.Fatal("SetRecords on a multi-value RRset succeeded; the real library fails here")
	}
	recs, err := lib.GetRecords(ctx, "example.org")
	if err != nil || len(recs) != 2 {
		t.Fatalf("GetRecords = %v, %v", recs, err)
	}
}

func TestPaginationAndFilters(t *testing.T) {
	t.Parallel()
	s := cfemu.New(t)
	id := s.AddZone("example.org")
	for i := 0; i < 12; i++ {
		s.Seed("example.org", cfemu.Record{Name: "h" + strconv.Itoa(i), Type: "A", Content: "192.0.2." + strconv.Itoa(i+1), TTL: 3600})
	}
	s.Seed("example.org", cfemu.Record{Name: "@", Type: "TXT", Content: `"v=spf1 -all"`, TTL: 3600})
	get := func(q string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", s.URL+"/zones/"+id+"/dns_records?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, tc := range []struct {
		q                 string
		count, total, pgs float64
	}{
		{"page=1&per_page=5", 5, 13, 3},
		{"page=3&per_page=5", 3, 13, 3},
		{"page=4&per_page=5", 0, 13, 3},
		{"type=TXT", 1, 1, 1},
		{"name=h3.example.org&type=A", 1, 1, 1},
		{"content.contains=spf1", 1, 1, 1},
	} {
		status, m := get(tc.q)
		info, _ := m["result_info"].(map[string]any)
		if status != 200 || info == nil || info["count"] != tc.count || info["total_count"] != tc.total || info["total_pages"] != tc.pgs {
			t.Errorf("GET ?%s = %d %v, want count %v total %v pages %v", tc.q, status, info, tc.count, tc.total, tc.pgs)
		}
	}
	if n := s.Count("GET /client/v4/zones/{zone}/dns_records"); n != 6 {
		t.Errorf("counted %d list calls, want 6", n)
	}
}

// TestPatchPutAndWrites changes a record in place as the API documents it:
// PATCH keeps the fields left out (proxied, content), PUT resets them to
// their defaults; each change is kept in Writes with the records after it.
func TestPatchPutAndWrites(t *testing.T) {
	t.Parallel()
	s := cfemu.New(t)
	zid := s.AddZone("example.org")
	id := s.Seed("example.org", cfemu.Record{Name: "www", Type: "A", Content: "192.0.2.1", TTL: 3600, Proxied: true})
	send := func(method, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+"/zones/"+zid+"/dns_records/"+id, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, tc := range []struct {
		method, body string
		want         cfemu.Record // Content, TTL, Proxied
	}{
		{"PATCH", `{"ttl":300}`, cfemu.Record{Content: "192.0.2.1", TTL: 300, Proxied: true}},
		{"PATCH", `{"content":"192.0.2.2"}`, cfemu.Record{Content: "192.0.2.2", TTL: 300, Proxied: true}},
		{"PUT", `{"type":"A","name":"www","content":"192.0.2.3"}`, cfemu.Record{Content: "192.0.2.3", TTL: 1, Proxied: false}},
	} {
		if status, m := send(tc.method, tc.body); status != http.StatusOK {
			t.Fatalf("%s %s = %d %v", tc.method, tc.body, status, m)
		}
		recs := s.Records("example.org")
		if len(recs) != 1 || recs[0].ID != id || recs[0].Content != tc.want.Content || recs[0].TTL != tc.want.TTL || recs[0].Proxied != tc.want.Proxied {
			t.Errorf("after %s %s records = %+v, want id %s content %s ttl %d proxied %v", tc.method, tc.body, recs, id, tc.want.Content, tc.want.TTL, tc.want.Proxied)
		}
	}
	if status, _ := send("PATCH", `{"ttl":5}`); status != http.StatusBadRequest {
		t.Errorf("PATCH with TTL 5 = %d, want 400", status)
	}
	ws := s.Writes("example.org")
	if len(ws) != 3 {
		t.Fatalf("Writes = %d, want 3 (the refused PATCH is not one)", len(ws))
	}
	for i, w := range ws {
		if !strings.HasSuffix(w.Call, "/dns_records/"+id) || len(w.Records) != 1 {
			t.Errorf("write %d = %+v", i, w)
		}
	}
	if ws[0].Records[0].TTL != 300 || ws[1].Records[0].Content != "192.0.2.2" {
		t.Errorf("Writes do not hold the records after each call: %+v", ws)
	}
}
