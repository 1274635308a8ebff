package testenv

import (
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Radicale is a private Radicale CalDAV/CardDAV server (Debian package
// radicale) started for one test: htpasswd users (plain passwords: the
// Debian package has no python3-bcrypt), filesystem storage in a temporary
// directory, owner_only rights (each user sees /<user>/ alone), plain HTTP
// on 127.0.0.1.
type Radicale struct {
	// URL is the server's root, "http://127.0.0.1:PORT/"; a user's
	// principal and home set is URL + user + "/".
	URL string
	// Dir holds the configuration, the users file and the collections.
	Dir string
	// PID is the server's process id (for memory measurements).
	PID int
}

// RadicaleUser is a user of the private Radicale.
type RadicaleUser struct{ Name, Password string }

// StartRadicale writes a configuration for users, starts Radicale on a free
// loopback port and waits (up to 20 s, logging every 2 s) until it answers
// HTTP. It stops the server when the test ends. A missing binary fails the
// test: the CI installs the Debian package radicale.
func StartRadicale(t testing.TB, users ...RadicaleUser) *Radicale {
	t.Helper()
	bin, err := exec.LookPath("radicale")
	if err != nil {
		bin = "/usr/bin/radicale"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("radicale not found (install the Debian package radicale): %v", err)
		}
	}
	dir := t.TempDir()
	var pw strings.Builder
	for _, u := range users {
		if strings.ContainsAny(u.Name+u.Password, ":\n") || u.Name == "" {
			t.Fatalf("testenv: radicale user %q: no empty name, ':' or newline", u.Name)
		}
		fmt.Fprintf(&pw, "%s:%s\n", u.Name, u.Password)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(pw.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 { // a port taken between the probe and the bind: try another
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r, err := startRadicale(t, bin, dir, port)
		if err == nil {
			return r
		}
		lastErr = err
	}
	t.Fatalf("start radicale: %v", lastErr)
	return nil
}

func startRadicale(t testing.TB, bin, dir string, port int) (*Radicale, error) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(dir, "config")
	err := os.WriteFile(conf, fmt.Appendf(nil, `[server]
hosts = %s
max_connections = 20
timeout = 30

[auth]
type = htpasswd
htpasswd_filename = %s
htpasswd_encryption = plain
delay = 0

[rights]
type = owner_only

[storage]
filesystem_folder = %s

[web]
type = none

[logging]
level = warning
mask_passwords = True
`, addr, filepath.Join(dir, "users"), filepath.Join(dir, "collections")), 0o600)
	if err != nil {
		return nil, err
	}
	var out syncBuffer
	c, err := startChild(&out, bin, "--config", conf)
	if err != nil {
		return nil, err
	}
	r := &Radicale{URL: "http://" + addr + "/", Dir: dir, PID: c.cmd.Process.Pid}
	hc := &http.Client{Timeout: time.Second}
	start, lastLog := time.Now(), time.Now()
	err = c.waitReady(20*time.Second, func() bool {
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			t.Logf("radicale on %s: not answering yet after %s", addr, time.Since(start).Round(time.Second))
		}
		resp, err := hc.Get(r.URL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("radicale on %s: %w: %s", addr, err, out.String())
	}
	t.Cleanup(c.stop)
	return r, nil
}

// MakeCollection creates the calendar (kind "calendar") or address book
// (kind "addressbook") at path (absolute, under /<user>/) with an extended
// MKCOL (RFC 5689), logged in as user.
func (r *Radicale) MakeCollection(t testing.TB, user, password, path, kind, displayName string) {
	t.Helper()
	var rt, ns string
	switch kind {
	case "calendar":
		rt, ns = `<C:calendar/>`, `xmlns:C="urn:ietf:params:xml:ns:caldav"`
	case "addressbook":
		rt, ns = `<C:addressbook/>`, `xmlns:C="urn:ietf:params:xml:ns:carddav"`
	default:
		t.Fatalf("testenv: collection kind %q: want calendar or addressbook", kind)
	}
	body := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<D:mkcol xmlns:D="DAV:" %s><D:set><D:prop><D:resourcetype><D:collection/>%s</D:resourcetype><D:displayname>%s</D:displayname></D:prop></D:set></D:mkcol>`,
		ns, rt, xmlEscape(displayName))
	req, err := http.NewRequest("MKCOL", strings.TrimSuffix(r.URL, "/")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/xml; charset=utf-8")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("MKCOL %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("MKCOL %s: %s", path, resp.Status)
	}
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
