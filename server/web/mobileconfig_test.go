package web_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/web"
)

// davStub stands for server/dav: it answers with the path it got.
var davStub = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "dav:"+r.Method+" "+r.URL.Path)
})

func newDAVServer(t *testing.T, dav http.Handler, https string) *httptest.Server {
	t.Helper()
	cfg := testConfig()
	cfg.Listen.HTTPS = https
	srv := httptest.NewTLSServer(web.New(cfg, web.Options{DAV: dav, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDAVMountAndAutoconfig(t *testing.T) {
	srv := newDAVServer(t, davStub, ":8443")
	for _, p := range []string{"/dav/alice@example.test/calendars/", "/.well-known/caldav", "/.well-known/carddav"} {
		if got := do(t, srv, "PROPFIND", "mail.example.test", p, ""); got.status != 200 || got.body != "dav:PROPFIND "+p {
			t.Errorf("PROPFIND %s: %d %q, want it passed to the DAV handler", p, got.status, got.body)
		}
	}
	got := do(t, srv, "GET", "autoconfig.example.test", "/mail/config-v1.1.xml", "")
	for _, want := range []string{
		`<addressBook type="carddav">`, `<serverURL>https://mail.example.test:8443/.well-known/carddav</serverURL>`,
		`<calendar type="caldav">`, `<serverURL>https://mail.example.test:8443/.well-known/caldav</serverURL>`,
		`<authentication>http-basic</authentication>`,
	} {
		if !strings.Contains(got.body, want) {
			t.Errorf("autoconfig lacks %s:\n%s", want, got.body)
		}
	}
	// Without the DAV handler: neither served nor advertised.
	plain := newDAVServer(t, nil, ":443")
	if got := do(t, plain, "PROPFIND", "mail.example.test", "/dav/", ""); got.status != 404 {
		t.Errorf("/dav/ without DAV: %d, want 404", got.status)
	}
	if got := do(t, plain, "GET", "autoconfig.example.test", "/mail/config-v1.1.xml", ""); strings.Contains(got.body, "caldav") {
		t.Errorf("autoconfig advertises CalDAV the server does not serve:\n%s", got.body)
	}
}

// TestMobileconfig reads the profile with Python's plistlib, as a check
// that it is a well-formed property list, and looks at what an iPhone
// would configure from it.
func TestMobileconfig(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is required")
	}
	srv := newDAVServer(t, davStub, ":443")
	got := do(t, srv, "GET", "mail.example.test", "/mail.mobileconfig?emailaddress=Alice%40Example.test", "")
	if got.status != 200 || got.ctype != "application/x-apple-aspen-config" {
		t.Fatalf("GET /mail.mobileconfig: %d %q\n%s", got.status, got.ctype, got.body)
	}
	cmd := exec.Command("python3", "-c", "import plistlib,sys,json; json.dump(plistlib.loads(sys.stdin.buffer.read()), sys.stdout)")
	cmd.Stdin = strings.NewReader(got.body)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("plistlib refuses the profile: %v: %s\n%s", err, stderr.String(), got.body)
	}
	var profile struct {
		PayloadType    string
		PayloadUUID    string
		PayloadContent []map[string]any
	}
	if err := json.Unmarshal(out, &profile); err != nil {
		t.Fatal(err)
	}
	if profile.PayloadType != "Configuration" || len(profile.PayloadContent) != 3 {
		t.Fatalf("profile = %s", out)
	}
	byType := map[string]map[string]any{}
	uuids := map[any]bool{profile.PayloadUUID: true}
	for _, p := range profile.PayloadContent {
		byType[p["PayloadType"].(string)] = p
		uuids[p["PayloadUUID"]] = true
	}
	if len(uuids) != 4 {
		t.Errorf("payload UUIDs not distinct: %v", uuids)
	}
	checks := []struct {
		typ, key string
		want     any
	}{
		{"com.apple.mail.managed", "EmailAddress", "alice@example.test"},
		{"com.apple.mail.managed", "IncomingMailServerHostName", "mail.example.test"},
		{"com.apple.mail.managed", "IncomingMailServerPortNumber", 993.0},
		{"com.apple.mail.managed", "OutgoingMailServerPortNumber", 465.0},
		{"com.apple.mail.managed", "IncomingMailServerUseSSL", true},
		{"com.apple.caldav.account", "CalDAVHostName", "mail.example.test"},
		{"com.apple.caldav.account", "CalDAVPort", 443.0},
		{"com.apple.caldav.account", "CalDAVUsername", "alice@example.test"},
		{"com.apple.caldav.account", "CalDAVPrincipalURL", "https://mail.example.test/dav/alice@example.test/"},
		{"com.apple.carddav.account", "CardDAVHostName", "mail.example.test"},
		{"com.apple.carddav.account", "CardDAVUseSSL", true},
		{"com.apple.carddav.account", "CardDAVUsername", "alice@example.test"},
	}
	for _, c := range checks {
		if got := byType[c.typ][c.key]; got != c.want {
			t.Errorf("%s %s = %v, want %v", c.typ, c.key, got, c.want)
		}
	}
	// The same address gets the same UUIDs: reinstalling replaces.
	again := do(t, srv, "GET", "mail.example.test", "/mail.mobileconfig?emailaddress=alice%40example.test", "")
	if again.body != got.body {
		t.Errorf("second download differs")
	}
	for _, tc := range []struct {
		query  string
		status int
	}{{"", 400}, {"?emailaddress=not-an-address", 400}, {"?emailaddress=x%40nowhere.test", 404}} {
		if r := do(t, srv, "GET", "mail.example.test", "/mail.mobileconfig"+tc.query, ""); r.status != tc.status || strings.Count(strings.TrimSpace(r.body), "\n") > 0 {
			t.Errorf("GET /mail.mobileconfig%s: %d %q, want %d and one line", tc.query, r.status, r.body, tc.status)
		}
	}
}
