package ovh_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	ovhemu "github.com/mailctl/mailctl/internal/emulator/ovh"
)

// doRaw sends a signed call and returns the status and the raw body.
func doRaw(t *testing.T, s *ovhemu.Server, method, path, body, ck string) (int, string) {
	t.Helper()
	u := s.Endpoint + path
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("X-Ovh-Application", s.ApplicationKey)
	req.Header.Set("X-Ovh-Consumer", ck)
	req.Header.Set("X-Ovh-Timestamp", ts)
	req.Header.Set("X-Ovh-Signature", ovhemu.Signature(s.ApplicationSecret, ck, method, u, []byte(body), ts))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReverse(t *testing.T) {
	t.Parallel()
	s := ovhemu.New(t)
	s.AddIPBlock("203.0.113.10/32")
	s.AddIPBlock("2001:db8:1:2::/64")
	s.AddIPBlock("198.51.100.0/28")
	ck := s.ConsumerKey
	v4 := "/ip/" + url.PathEscape("203.0.113.10/32") + "/reverse"
	v6 := "/ip/" + url.PathEscape("2001:db8:1:2::/64") + "/reverse"

	t.Run("list blocks filtered by ip", func(t *testing.T) {
		for _, tc := range []struct{ filter, want string }{
			{"", `["203.0.113.10/32","2001:db8:1:2::/64","198.51.100.0/28"]`},
			{"?ip=203.0.113.10", `["203.0.113.10/32"]`},
			{"?ip=2001:db8:1:2::25", `["2001:db8:1:2::/64"]`},
			{"?ip=198.51.100.3", `["198.51.100.0/28"]`},
			{"?ip=192.0.2.1", `[]`},
		} {
			status, body := doRaw(t, s, "GET", "/ip"+tc.filter, "", ck)
			if status != 200 || strings.TrimSpace(body) != tc.want {
				t.Errorf("GET /ip%s = %d %s, want %s", tc.filter, status, body, tc.want)
			}
		}
	})

	t.Run("refused until the name resolves", func(t *testing.T) {
		body := `{"ipReverse":"203.0.113.10","reverse":"mx1.example.org."}`
		status, resp := doRaw(t, s, "POST", v4, body, ck)
		want := ovhemu.NotResolvingMessage(netip.MustParseAddr("203.0.113.10"), "mx1.example.org.")
		if status != 400 || !strings.Contains(resp, want) {
			t.Fatalf("POST before the A record = %d %s, want 400 %q", status, resp, want)
		}
		if got := s.Reverse("203.0.113.10"); got != "" {
			t.Fatalf("reverse stored after a refusal: %q", got)
		}
		s.AddForward("MX1.example.org.", "203.0.113.10")
		if status, resp := doRaw(t, s, "POST", v4, body, ck); status != 200 {
			t.Fatalf("POST after AddForward = %d %s", status, resp)
		}
		status, resp = doRaw(t, s, "GET", v4+"/203.0.113.10", "", ck)
		var got map[string]string
		json.Unmarshal([]byte(resp), &got)
		if status != 200 || got["reverse"] != "mx1.example.org." || got["ipReverse"] != "203.0.113.10" {
			t.Fatalf("GET reverse = %d %s", status, resp)
		}
	})

	t.Run("zone records resolve", func(t *testing.T) {
		s.AddZone("example.net")
		s.Seed("example.net", ovhemu.Record{SubDomain: "mail", FieldType: "AAAA", Target: "2001:db8:1:2::25", TTL: 60})
		// No trailing dot: OVH adds it.
		body := `{"ipReverse":"2001:db8:1:2:0:0:0:25","reverse":"Mail.example.net"}`
		if status, resp := doRaw(t, s, "POST", v6, body, ck); status != 200 {
			t.Fatalf("POST = %d %s", status, resp)
		}
		if got := s.Reverse("2001:db8:1:2::25"); got != "mail.example.net." {
			t.Fatalf("Reverse = %q, want mail.example.net.", got)
		}
		status, resp := doRaw(t, s, "GET", v6, "", ck)
		if status != 200 || strings.TrimSpace(resp) != `["2001:db8:1:2::25"]` {
			t.Fatalf("GET list = %d %s", status, resp)
		}
	})

	t.Run("resolver hook and switch", func(t *testing.T) {
		s.SetResolver(func(host string) []netip.Addr {
			if host == "hook.example.org" {
				return []netip.Addr{netip.MustParseAddr("198.51.100.3")}
			}
			return nil
		})
		defer s.SetResolver(nil)
		blk := "/ip/" + url.PathEscape("198.51.100.0/28") + "/reverse"
		if status, resp := doRaw(t, s, "POST", blk, `{"ipReverse":"198.51.100.3","reverse":"hook.example.org."}`, ck); status != 200 {
			t.Fatalf("POST with hook = %d %s", status, resp)
		}
		if status, _ := doRaw(t, s, "POST", blk, `{"ipReverse":"198.51.100.4","reverse":"hook.example.org."}`, ck); status != 400 {
			t.Fatalf("POST for another address = %d, want 400", status)
		}
		s.SetForwardCheck(false)
		defer s.SetForwardCheck(true)
		if status, resp := doRaw(t, s, "POST", blk, `{"ipReverse":"198.51.100.4","reverse":"x.example.org."}`, ck); status != 200 {
			t.Fatalf("POST with the check off = %d %s", status, resp)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, body, ck string
			status                 int
			msg                    string
		}{
			{"GET", "/ip/" + url.PathEscape("192.0.2.0/24") + "/reverse", "", ck, 404, "does not exist"},
			{"GET", v4 + "/203.0.113.11", "", ck, 404, "ipReverse = 203.0.113.11"},
			{"POST", v4, `{"ipReverse":"203.0.113.11","reverse":"a.example.org."}`, ck, 400, "not in block"},
			{"POST", v4, `{"ipReverse":"203.0.113.10","reverse":"bad name."}`, ck, 400, "Invalid reverse"},
			{"POST", v4, `{"ipReverse":"203.0.113.10","reverse":"mx1.example.org."}`, s.ReadOnlyConsumerKey, 403, "NOT_GRANTED_CALL"},
		} {
			status, resp := doRaw(t, s, tc.method, tc.path, tc.body, tc.ck)
			if status != tc.status || !strings.Contains(resp, tc.msg) {
				t.Errorf("%s %s %s = %d %s, want %d %q", tc.method, tc.path, tc.body, status, resp, tc.status, tc.msg)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		if status, resp := doRaw(t, s, "DELETE", v4+"/203.0.113.10", "", ck); status != 200 {
			t.Fatalf("DELETE = %d %s", status, resp)
		}
		if got := s.Reverse("203.0.113.10"); got != "" {
			t.Fatalf("Reverse after DELETE = %q", got)
		}
	})

	calls := s.Calls()
	if calls["POST /1.0/ip/{block}/reverse"] == 0 || calls["GET /1.0/ip"] != 5 {
		t.Errorf("calls = %v", calls)
	}
	if got := s.Reverse("198.51.100.5"); got != "" {
		t.Errorf("Reverse of an unset address = %q, want empty", got)
	}
}
