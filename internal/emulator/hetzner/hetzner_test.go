package hetzner_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/mailctl/mailctl/internal/emulator/hetzner"
)

func call(t *testing.T, s *hetzner.Server, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.Endpoint+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, path, b, err)
	}
	return resp.StatusCode, m
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := hetzner.New(t)
	id := s.AddServer("mx1", "203.0.113.10", "")
	body := `{"ip":"203.0.113.10","dns_ptr":"mx1.example.org"}`
	for _, tc := range []struct {
		name, token, method, path string
		status                    int
		code                      string
	}{
		{"no token", "", "GET", "/servers", 401, "unauthorized"},
		{"wrong token", "nope", "GET", "/servers", 401, "unauthorized"},
		{"read-only reads", s.ReadOnlyToken, "GET", "/servers", 200, ""},
		{"read-only writes", s.ReadOnlyToken, "POST", fmt.Sprintf("/servers/%d/actions/change_dns_ptr", id), 403, "forbidden"},
		{"unknown server", s.Token, "GET", "/servers/7", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := call(t, s, tc.token, tc.method, tc.path, body)
			if status != tc.status || errCode(m) != tc.code {
				t.Fatalf("%s %s = %d %v, want %d %q", tc.method, tc.path, status, m, tc.status, tc.code)
			}
		})
	}
	if got := s.PTR("203.0.113.10"); got != hetzner.DefaultPTR(netip.MustParseAddr("203.0.113.10")) {
		t.Fatalf("PTR changed by refused calls: %q", got)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	s := hetzner.New(t)
	for i := range 5 {
		s.AddServer(fmt.Sprintf("s%d", i), fmt.Sprintf("198.51.100.%d", i+1), "")
	}
	for _, tc := range []struct {
		query      string
		n          int
		next, last any
	}{
		{"", 5, nil, 1.0},
		{"?per_page=2", 2, 2.0, 3.0},
		{"?per_page=2&page=3", 1, nil, 3.0},
		{"?per_page=2&page=9", 0, nil, 3.0},
		{"?name=s3", 1, nil, 1.0},
	} {
		status, m := call(t, s, s.Token, "GET", "/servers"+tc.query, "")
		servers, _ := m["servers"].([]any)
		pg := m["meta"].(map[string]any)["pagination"].(map[string]any)
		if status != 200 || len(servers) != tc.n || pg["next_page"] != tc.next || pg["last_page"] != tc.last || pg["total_entries"] == nil {
			t.Errorf("GET /servers%s = %d, %d servers, pagination %v; want %d servers, next %v, last %v", tc.query, status, len(servers), pg, tc.n, tc.next, tc.last)
		}
	}
}

// TestChangeDNSPtr follows an action from running to success and checks
// that the PTR changes only when it completes.
func TestChangeDNSPtr(t *testing.T) {
	t.Parallel()
	s := hetzner.New(t)
	s.SetActionPolls(2)
	id := s.AddServer("mx1", "203.0.113.10", "2001:db8:1:2::/64")
	path := fmt.Sprintf("/servers/%d/actions/change_dns_ptr", id)

	status, m := call(t, s, s.Token, "POST", path, `{"ip":"2001:db8:1:2::25","dns_ptr":"mx1.example.org"}`)
	act, _ := m["action"].(map[string]any)
	if status != 201 || act["status"] != "running" || act["command"] != "change_dns_ptr" {
		t.Fatalf("POST = %d %v", status, m)
	}
	if got := s.PTR("2001:db8:1:2::25"); got != "" {
		t.Fatalf("PTR = %q while the action runs, want unchanged", got)
	}
	aid := int64(act["id"].(float64))
	wantStatus := []string{"running", "success"}
	for i, want := range wantStatus {
		_, m := call(t, s, s.Token, "GET", fmt.Sprintf("/actions?id=%d", aid), "")
		acts := m["actions"].([]any)
		if got := acts[0].(map[string]any)["status"]; got != want {
			t.Fatalf("poll %d: status %v, want %s", i+1, got, want)
		}
	}
	if got := s.PTR("2001:db8:1:2::25"); got != "mx1.example.org" {
		t.Fatalf("PTR after success = %q", got)
	}
	// The change shows on the server and on its Primary IP.
	_, m = call(t, s, s.Token, "GET", "/primary_ips?ip=2001:db8:1:2::/64", "")
	ips := m["primary_ips"].([]any)
	if len(ips) != 1 || !strings.Contains(fmt.Sprint(ips[0]), "mx1.example.org") {
		t.Fatalf("primary IP = %v", ips)
	}

	for _, tc := range []struct{ body, field string }{
		{`{"ip":"203.0.113.11","dns_ptr":"mx1.example.org"}`, "ip"},
		{`{"ip":"2001:db8:1:3::1","dns_ptr":"mx1.example.org"}`, "ip"},
		{`{"dns_ptr":"mx1.example.org"}`, "ip"},
		{`{"ip":"203.0.113.10","dns_ptr":"not a name"}`, "dns_ptr"},
	} {
		status, m := call(t, s, s.Token, "POST", path, tc.body)
		if status != 400 || errCode(m) != "invalid_input" || !strings.Contains(fmt.Sprint(m), tc.field) {
			t.Errorf("POST %s = %d %v, want 400 invalid_input on %s", tc.body, status, m, tc.field)
		}
	}

	// Reset: IPv4 goes back to the default name, IPv6 loses its entry.
	s.SetActionPolls(0)
	for _, ip := range []string{"203.0.113.10", "2001:db8:1:2::25"} {
		if status, m := call(t, s, s.Token, "POST", path, `{"ip":"`+ip+`","dns_ptr":null}`); status != 201 {
			t.Fatalf("reset %s = %d %v", ip, status, m)
		}
	}
	if got, want := s.PTR("203.0.113.10"), "static.10.113.0.203.clients.your-server.de"; got != want {
		t.Errorf("IPv4 PTR after reset = %q, want %q", got, want)
	}
	if got := s.PTR("2001:db8:1:2::25"); got != "" {
		t.Errorf("IPv6 PTR after reset = %q, want none", got)
	}

	s.FailNextAction("action_failed", "rDNS backend unavailable")
	_, m = call(t, s, s.Token, "POST", path, `{"ip":"203.0.113.10","dns_ptr":"x.example.org"}`)
	act = m["action"].(map[string]any)
	if act["status"] != "error" || !strings.Contains(fmt.Sprint(act["error"]), "rDNS backend unavailable") {
		t.Errorf("failed action = %v", act)
	}
	if got := s.PTR("203.0.113.10"); got == "x.example.org" {
		t.Errorf("a failed action changed the PTR")
	}
	if n := s.RunningActions(); n != 0 {
		t.Errorf("%d actions still running", n)
	}
}

// TestOnPTR: the hook sees each completed change before the poll that
// reports it finished returns, and nothing for a failed action.
func TestOnPTR(t *testing.T) {
	t.Parallel()
	s := hetzner.New(t)
	s.SetActionPolls(1)
	id := s.AddServer("mx1", "203.0.113.10", "2001:db8:1:2::/64")
	path := fmt.Sprintf("/servers/%d/actions/change_dns_ptr", id)
	var mu sync.Mutex
	var seen []string
	s.OnPTR(func(ip netip.Addr, ptr string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, ip.String()+"="+ptr)
	})
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(seen, ",")
	}
	_, m := call(t, s, s.Token, "POST", path, `{"ip":"203.0.113.10","dns_ptr":"mx1.example.org"}`)
	aid := int64(m["action"].(map[string]any)["id"].(float64))
	if g := got(); g != "" {
		t.Fatalf("hook called before the action completed: %s", g)
	}
	_, m = call(t, s, s.Token, "GET", fmt.Sprintf("/actions/%d", aid), "")
	if st := m["action"].(map[string]any)["status"]; st != "success" {
		t.Fatalf("action status %v", st)
	}
	if g := got(); g != "203.0.113.10=mx1.example.org" {
		t.Fatalf("hook calls = %q", g)
	}
	s.FailNextAction("action_failed", "rDNS backend unavailable")
	_, m = call(t, s, s.Token, "POST", path, `{"ip":"203.0.113.10","dns_ptr":"x.example.org"}`)
	aid = int64(m["action"].(map[string]any)["id"].(float64))
	call(t, s, s.Token, "GET", fmt.Sprintf("/actions/%d", aid), "")
	if g := got(); g != "203.0.113.10=mx1.example.org" {
		t.Fatalf("hook called for a failed action: %q", g)
	}
}
