package cloudflare_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	cfemu "github.com/mailctl/mailctl/internal/emulator/cloudflare"
)

// postBatch sends body as a batch and returns the status and the envelope.
func postBatch(t *testing.T, s *cfemu.Server, zid, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/zones/"+zid+"/dns_records/batch", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, env
}

// TestBatchOrderAndAtomicity: deletes run before patches and posts (a
// record deleted and posted again in one batch is no duplicate); one
// failing operation fails the batch, changes nothing and answers the
// first error; a batch over the plan's limit is refused whole.
func TestBatchOrderAndAtomicity(t *testing.T) {
	t.Parallel()
	s := cfemu.New(t)
	zid := s.AddZone("example.org")
	www := s.Seed("example.org", cfemu.Record{Name: "www", Type: "A", Content: "192.0.2.1", TTL: 300})
	mail := s.Seed("example.org", cfemu.Record{Name: "mail", Type: "CNAME", Content: "mx.example.net", TTL: 300})

	// The posts come last although listed first: the delete of www makes
	// room for the same record posted again, and the patch of mail to an
	// A record happens before the post of a second A at mail.
	st, env := postBatch(t, s, zid, fmt.Sprintf(`{
		"posts": [{"type": "A", "name": "www", "content": "192.0.2.1", "ttl": 600}, {"type": "A", "name": "mail", "content": "192.0.2.3", "ttl": 300}],
		"patches": [{"id": %q, "type": "A", "content": "192.0.2.2"}],
		"deletes": [{"id": %q}]}`, mail, www))
	if st != http.StatusOK || env["success"] != true {
		t.Fatalf("batch = %d %v", st, env)
	}
	res := env["result"].(map[string]any)
	if len(res["deletes"].([]any)) != 1 || len(res["patches"].([]any)) != 1 || len(res["posts"].([]any)) != 2 {
		t.Errorf("batch result %v, want 1 delete, 1 patch, 2 posts", res)
	}
	after := s.Records("example.org")
	if len(after) != 3 || len(s.Writes("example.org")) != 1 {
		t.Fatalf("after the batch: %d records, %d writes; want 3 and 1: %+v", len(after), len(s.Writes("example.org")), after)
	}

	// The third operation fails (an identical record exists): nothing of
	// the batch is kept.
	st, env = postBatch(t, s, zid, `{"posts": [
		{"type": "TXT", "name": "@", "content": "v=spf1 -all"},
		{"type": "A", "name": "new", "content": "192.0.2.9"},
		{"type": "A", "name": "mail", "content": "192.0.2.3"}]}`)
	errs, _ := env["errors"].([]any)
	if st != http.StatusBadRequest || env["success"] != false || len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), "identical record already exists") {
		t.Errorf("failing batch = %d %v, want 400 and the first error", st, env)
	}
	if got := s.Records("example.org"); len(got) != 3 || len(s.Writes("example.org")) != 1 {
		t.Errorf("a failed batch changed the zone: %+v", got)
	}

	// 201 operations are over the Free plan's limit; a limit of 3,500 takes them.
	var posts []string
	for i := range 201 {
		posts = append(posts, fmt.Sprintf(`{"type": "A", "name": "h%d", "content": "192.0.2.1"}`, i))
	}
	body := `{"posts": [` + strings.Join(posts, ",") + `]}`
	if st, env := postBatch(t, s, zid, body); st != http.StatusBadRequest || !strings.Contains(fmt.Sprint(env["errors"]), "at most 200") {
		t.Errorf("batch of 201 = %d %v, want refused for its size", st, env)
	}
	if got := len(s.Records("example.org")); got != 3 {
		t.Errorf("refused batch left %d records", got)
	}
	s.SetBatchLimit(3500)
	if st, env := postBatch(t, s, zid, body); st != http.StatusOK {
		t.Errorf("batch of 201 with a limit of 3,500 = %d %v", st, env)
	}
}
