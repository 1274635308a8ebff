package dav_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/dav"
)

var passwords = map[string]string{
	"alice@example.org": "alice-secret",
	"bob@example.org":   "bob-secret",
}

func testAuth(ctx context.Context, user, password string, remote net.Addr) (string, error) {
	user = strings.ToLower(user)
	if user == "locked@example.org" {
		return "", &auth.LockoutError{RetryIn: 90 * time.Second}
	}
	if p, ok := passwords[user]; ok && p == password {
		return user, nil
	}
	return "", errors.New("invalid credentials")
}

type testServer struct {
	*httptest.Server
	st dav.Backend
}

// serverMaker starts a test server on a new, empty store: newServer's
// bbolt one, or one of the other backends (backends_test.go). The tests
// that do not depend on the store take one.
type serverMaker func(t *testing.T, opts dav.Options) *testServer

// newServer serves a new bbolt store.
func newServer(t *testing.T, opts dav.Options) *testServer {
	t.Helper()
	st, err := dav.Open(context.Background(), filepath.Join(t.TempDir(), dav.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newServerOn(t, st, opts)
}

// newServerOn serves st.
func newServerOn(t *testing.T, st dav.Backend, opts dav.Options) *testServer {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewTLSServer(dav.New(st, testAuth, opts))
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, st: st}
}

func (s *testServer) httpClient(user string) webdav.HTTPClient {
	return webdav.HTTPClientWithBasicAuth(s.Client(), user, passwords[user])
}

func (s *testServer) calClient(t *testing.T, user string) *caldav.Client {
	t.Helper()
	c, err := caldav.NewClient(s.httpClient(user), s.URL+"/dav/")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *testServer) cardClient(t *testing.T, user string) *carddav.Client {
	t.Helper()
	c, err := carddav.NewClient(s.httpClient(user), s.URL+"/dav/")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends a raw request as user and returns the status and body.
func (s *testServer) do(t *testing.T, user, method, path, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, passwords[user])
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func event(uid, summary string) string {
	return strings.ReplaceAll(fmt.Sprintf(`BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//mailctl//test//EN
BEGIN:VEVENT
UID:%s
DTSTAMP:20260101T000000Z
DTSTART:20260110T100000Z
DTEND:20260110T110000Z
SUMMARY:%s
END:VEVENT
END:VCALENDAR
`, uid, summary), "\n", "\r\n")
}

func card(uid, name string) string {
	return strings.ReplaceAll(fmt.Sprintf(`BEGIN:VCARD
VERSION:3.0
UID:%s
FN:%s
N:%s;;;;
EMAIL:%s@example.net
END:VCARD
`, uid, name, name, uid), "\n", "\r\n")
}
