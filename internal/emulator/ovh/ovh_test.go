package ovh_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	ovhemu "github.com/mailctl/mailctl/internal/emulator/ovh"
)

// do sends a signed call as an OVH client does, with optional tampering.
func do(t *testing.T, s *ovhemu.Server, method, path, body, ak, as, ck string, ts int64, tamper func(*http.Request)) (int, map[string]any) {
	t.Helper()
	url := s.Endpoint + path
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	tss := strconv.FormatInt(ts, 10)
	req.Header.Set("X-Ovh-Application", ak)
	req.Header.Set("X-Ovh-Consumer", ck)
	req.Header.Set("X-Ovh-Timestamp", tss)
	req.Header.Set("X-Ovh-Signature", ovhemu.Signature(as, ck, method, url, []byte(body), tss))
	if tamper != nil {
		tamper(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func TestSignatureChecks(t *testing.T) {
	t.Parallel()
	s := ovhemu.New(t)
	s.AddZone("example.org")
	now := time.Now().Unix()
	ak, as, ck := s.ApplicationKey, s.ApplicationSecret, s.ConsumerKey
	body := `{"fieldType":"A","subDomain":"www","target":"192.0.2.1","ttl":3600}`
	for _, tc := range []struct {
		name       string
		ak, as, ck string
		ts         int64
		tamper     func(*http.Request)
		wantStatus int
		wantCode   string
	}{
		{"valid", ak, as, ck, now, nil, 200, ""},
		{"unknown application", "x", as, ck, now, nil, 403, "INVALID_KEY"},
		{"wrong secret", ak, "x", ck, now, nil, 400, "INVALID_SIGNATURE"},
		{"unknown consumer", ak, as, "x", now, nil, 403, "INVALID_CREDENTIAL"},
		{"old timestamp", ak, as, ck, now - 3600, nil, 400, "QUERY_TIME_OUT"},
		{"body changed after signing", ak, as, ck, now, func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(body, "192.0.2.1", "192.0.2.66", 1)))
			r.ContentLength = -1
		}, 400, "INVALID_SIGNATURE"},
		{"read-only key writing", ak, as, s.ReadOnlyConsumerKey, now, nil, 403, "NOT_GRANTED_CALL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := do(t, s, "POST", "/domain/zone/example.org/record", body, tc.ak, tc.as, tc.ck, tc.ts, tc.tamper)
			if status != tc.wantStatus || (tc.wantCode != "" && m["errorCode"] != tc.wantCode) {
				t.Fatalf("POST = %d %v, want %d %s", status, m, tc.wantStatus, tc.wantCode)
			}
		})
	}
	if n := len(s.Records("example.org")); n != 1 {
		t.Fatalf("zone holds %d records, want only the valid call's", n)
	}
	if calls := s.Count("POST /1.0/domain/zone/{zone}/record"); calls != 7 {
		t.Fatalf("counted %d calls, want 7", calls)
	}
}

func TestRecordRules(t *testing.T) {
	t.Parallel()
	s := ovhemu.New(t)
	s.AddZone("example.org")
	now := time.Now().Unix()
	post := func(body string) (int, map[string]any) {
		return do(t, s, "POST", "/domain/zone/example.org/record", body, s.ApplicationKey, s.ApplicationSecret, s.ConsumerKey, now, nil)
	}
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"fieldType":"A","subDomain":"a","target":"192.0.2.1","ttl":30}`, 400},
		{`{"fieldType":"CNAME","subDomain":"","target":"x.example.net.","ttl":3600}`, 400},
		{`{"fieldType":"AAAA","subDomain":"a","target":"192.0.2.1","ttl":3600}`, 400},
		{`{"fieldType":"TXT","subDomain":"t","target":"\"quoted\" text","ttl":60}`, 200},
	} {
		if status, m := post(tc.body); status != tc.status {
			t.Errorf("POST %s = %d %v, want %d", tc.body, status, m, tc.status)
		}
	}
	recs := s.Records("example.org")
	if len(recs) != 1 || recs[0].Target != "quoted text" {
		t.Fatalf("records = %+v, want one TXT with quotes stripped", recs)
	}
}

// TestUpdateInPlace: PUT changes subDomain, target and ttl of a record,
// keeping its id; fieldType, id and zone are read-only (OVH: "Try to alter
// read-only properties"), the same values are accepted; a CNAME cannot be
// moved beside another record; each change is kept in Writes.
func TestUpdateInPlace(t *testing.T) {
	t.Parallel()
	s := ovhemu.New(t)
	s.AddZone("example.org")
	mx := s.Seed("example.org", ovhemu.Record{FieldType: "MX", Target: "1 smtp.google.com.", TTL: 3600})
	cname := s.Seed("example.org", ovhemu.Record{FieldType: "CNAME", SubDomain: "autoconfig", Target: "mx1.example.org.", TTL: 3600})
	now := time.Now().Unix()
	put := func(id int64, body string) (int, map[string]any) {
		return do(t, s, "PUT", "/domain/zone/example.org/record/"+strconv.FormatInt(id, 10), body, s.ApplicationKey, s.ApplicationSecret, s.ConsumerKey, now, nil)
	}
	for _, tc := range []struct {
		name   string
		id     int64
		body   string
		status int
		msg    string
		want   ovhemu.Record // the MX record afterwards
	}{
		{"TTL only", mx, `{"ttl":300}`, 200, "",
			ovhemu.Record{FieldType: "MX", Target: "1 smtp.google.com.", TTL: 300}},
		{"target and TTL, same fieldType sent", mx, `{"fieldType":"MX","subDomain":"","target":"10 mx1.example.org.","ttl":600}`, 200, "",
			ovhemu.Record{FieldType: "MX", Target: "10 mx1.example.org.", TTL: 600}},
		{"fieldType changed", mx, `{"fieldType":"TXT","target":"v=spf1 -all"}`, 400, "Try to alter read-only properties: fieldType",
			ovhemu.Record{FieldType: "MX", Target: "10 mx1.example.org.", TTL: 600}},
		{"id changed", mx, `{"id":1,"ttl":60}`, 400, "Try to alter read-only properties: id",
			ovhemu.Record{FieldType: "MX", Target: "10 mx1.example.org.", TTL: 600}},
		{"TTL under 60", mx, `{"ttl":30}`, 400, "minimum TTL",
			ovhemu.Record{FieldType: "MX", Target: "10 mx1.example.org.", TTL: 600}},
		{"CNAME moved to the apex MX's name", cname, `{"subDomain":"www"}`, 200, "",
			ovhemu.Record{FieldType: "MX", Target: "10 mx1.example.org.", TTL: 600}},
		{"CNAME moved beside the MX", cname, `{"subDomain":""}`, 400, "CNAME",
			ovhemu.Record{FieldType: "MX", Target: "10 mx1.example.org.", TTL: 600}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.Writes("example.org"))
			status, m := put(tc.id, tc.body)
			if msg, _ := m["message"].(string); status != tc.status || !strings.Contains(msg, tc.msg) {
				t.Fatalf("PUT %s = %d %v, want %d %q", tc.body, status, m, tc.status, tc.msg)
			}
			writes := s.Writes("example.org")
			if wantN := before + map[bool]int{true: 1}[status == 200]; len(writes) != wantN {
				t.Fatalf("%d writes after the PUT, want %d", len(writes), wantN)
			}
			var got ovhemu.Record
			for _, r := range s.Records("example.org") {
				if r.ID == mx {
					got = r
				}
			}
			tc.want.ID, tc.want.Zone = mx, "example.org"
			if got != tc.want {
				t.Errorf("MX record = %+v, want %+v", got, tc.want)
			}
			if status == 200 {
				w := writes[len(writes)-1]
				if w.Call != "PUT /1.0/domain/zone/example.org/record/"+strconv.FormatInt(tc.id, 10) || len(w.Records) != 2 {
					t.Errorf("last write = %+v, want this PUT with the zone's 2 records", w)
				}
			}
		})
	}
}
