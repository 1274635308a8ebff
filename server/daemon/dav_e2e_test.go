package daemon_test

import (
	"archive/tar"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const davEvent = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:kept\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260110T100000Z\r\nSUMMARY:Survives a restore\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// TestDAVServeBackupRestore: `mailctl serve` answers CalDAV on its HTTPS
// listener with the mail password (argon2id, through server/auth), the
// /.well-known/caldav redirect, and a calendar object survives
// `serve backup`, a wiped data directory and `serve restore` with its
// ETag and sync token; `serve export -dav` writes it as .ics.
func TestDAVServeBackupRestore(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	cfgPath := filepath.Join(t.TempDir(), "server.json")
	writeConfig(t, cfgPath, baseConfig(t, dataDir))
	s := startServer(t, cfgPath)
	client := func() *http.Client {
		return &http.Client{
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots(t, dataDir), ServerName: "mail.example.test"}},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	do := func(method, path, password, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+s.addr("https")+path, strings.NewReader(body))
		req.SetBasicAuth("alice@example.test", password)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	obj := "/dav/alice@example.test/calendars/default/kept.ics"
	if resp, _ := do("PUT", obj, "wrong-pw", davEvent, "Content-Type", "text/calendar"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("PUT with a wrong password: %s, want 401", resp.Status)
	}
	resp, _ := do("PUT", obj, "alice-pw", davEvent, "Content-Type", "text/calendar")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusCreated || etag == "" {
		t.Fatalf("PUT: %s", resp.Status)
	}
	if resp, _ := do("GET", "/.well-known/caldav", "", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/dav/" {
		t.Fatalf("/.well-known/caldav: %s %q", resp.Status, resp.Header.Get("Location"))
	}
	syncReq := `<sync-collection xmlns="DAV:"><sync-token/><sync-level>1</sync-level><prop><getetag/></prop></sync-collection>`
	_, ms := do("REPORT", "/dav/alice@example.test/calendars/default/", "alice-pw", syncReq, "Content-Type", "application/xml")
	i, j := strings.Index(ms, "<D:sync-token>"), strings.Index(ms, "</D:sync-token>")
	if i < 0 || j < i {
		t.Fatalf("sync-collection: no token\n%s", ms)
	}
	token := ms[i+len("<D:sync-token>") : j]

	backupFile := filepath.Join(t.TempDir(), "backup.tar.gz")
	out, err := os.Create(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mailctlBin, "serve", "backup", "-config", cfgPath)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("serve backup: %v %s", err, stderr.String())
	}
	out.Close()
	s.signal(syscall.SIGTERM)
	if err := s.wait(40 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(mailctlBin, "serve", "restore", "-config", cfgPath, backupFile).CombinedOutput(); err != nil {
		t.Fatalf("serve restore: %v: %s", err, b)
	}
	s = startServer(t, cfgPath)
	resp, body := do("GET", obj, "alice-pw", "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != etag || !strings.Contains(body, "Survives a restore") {
		t.Fatalf("GET after restore: %s etag %q (was %q)\n%s", resp.Status, resp.Header.Get("ETag"), etag, body)
	}
	// serve export -dav: the calendar as one .ics, the contacts as .vcf.
	var tarOut, tarErr strings.Builder
	export := exec.Command(mailctlBin, "serve", "export", "-dav", "-user", "alice@example.test", "-config", cfgPath)
	export.Stdout, export.Stderr = &tarOut, &tarErr
	if err := export.Run(); err != nil {
		t.Fatalf("serve export -dav: %v: %s", err, tarErr.String())
	}
	files := map[string]string{}
	tr := tar.NewReader(strings.NewReader(tarOut.String()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("serve export -dav output: %v", err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	if !strings.Contains(files["calendars/default.ics"], "SUMMARY:Survives a restore") || len(files) != 2 {
		t.Errorf("serve export -dav files: %q", files)
	}
	if b, err := exec.Command(mailctlBin, "serve", "export", "-dav", "-user", "nobody@example.test", "-config", cfgPath).CombinedOutput(); err == nil || strings.Count(strings.TrimSpace(string(b)), "\n") > 0 {
		t.Errorf("serve export -dav of an unknown user: %v %q, want an error in one line", err, b)
	}

	resp, ms = do("REPORT", "/dav/alice@example.test/calendars/default/", "alice-pw",
		strings.Replace(syncReq, "<sync-token/>", "<sync-token>"+token+"</sync-token>", 1), "Content-Type", "application/xml")
	if resp.StatusCode != http.StatusMultiStatus || strings.Contains(ms, "<D:response>") {
		t.Fatalf("sync-collection with the token from before the backup: %s, want 207 and no changes\n%s", resp.Status, ms)
	}
}
