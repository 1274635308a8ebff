package main

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExportDAV: export -format dav writes the lab user's calendar as
// calendars/default.ics and contacts as contacts/default.vcf, live and
// from a backup (which keeps what was deleted after it); a user without
// calendars in the backup is a one-line error.
func TestExportDAV(t *testing.T) {
	l := startExportLab(t)
	src, _ := os.ReadFile(filepath.Join(l.dir, "mail.hcl"))
	m := regexp.MustCompile(`https\s*=\s*(\d+)`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no https port in mail.hcl")
	}
	base := "https://127.0.0.1:" + string(m[1]) + "/dav/alice@example.test/"
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	send := func(method, path, ctype, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.SetBasicAuth("alice@example.test", "lab-alice-password")
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %s", method, path, resp.Status)
		}
	}
	send("PUT", "calendars/default/ev.ics", "text/calendar",
		"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:ev\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260110T100000Z\r\nSUMMARY:Board meeting\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
	send("PUT", "contacts/default/c.vcf", "text/vcard", "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c\r\nFN:Carol Client\r\nEND:VCARD\r\n")

	tmp := t.TempDir()
	export := func(out string, args ...string) (string, int) {
		t.Helper()
		return mailctl(t, l.bin, append([]string{"-chdir", l.dir, "export", "-format", "dav", "-out", filepath.Join(tmp, out)}, args...)...)
	}
	read := func(out, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(tmp, out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if res, code := export("live", "-user", "alice@example.test"); code != 0 || !strings.Contains(res, "Exported 2 files") {
		t.Fatalf("export -format dav = %d:\n%s", code, res)
	}
	if ics := read("live", "calendars/default.ics"); !strings.Contains(ics, "SUMMARY:Board meeting") || !strings.HasPrefix(ics, "BEGIN:VCALENDAR") {
		t.Errorf("default.ics:\n%s", ics)
	}
	if vcf := read("live", "contacts/default.vcf"); !strings.Contains(vcf, "FN:Carol Client") {
		t.Errorf("default.vcf:\n%s", vcf)
	}

	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "backup", "-out", "bk"); code != 0 {
		t.Fatalf("backup = %d:\n%s", code, out)
	}
	files, _ := filepath.Glob(filepath.Join(l.dir, "bk", "*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	send("DELETE", "calendars/default/ev.ics", "", "")
	if res, code := export("after", "-user", "alice@example.test"); code != 0 || strings.Contains(read("after", "calendars/default.ics"), "Board meeting") {
		t.Fatalf("live export after the DELETE = %d:\n%s", code, res)
	}
	if res, code := export("backup", "-user", "alice@example.test", "-from-backup", files[0]); code != 0 {
		t.Fatalf("export -format dav -from-backup = %d:\n%s", code, res)
	}
	if ics := read("backup", "calendars/default.ics"); !strings.Contains(ics, "SUMMARY:Board meeting") {
		t.Errorf("default.ics from the backup lacks the event deleted after it:\n%s", ics)
	}
	if res, code := export("bob", "-user", "bob@example.test", "-from-backup", files[0]); code != 1 || !strings.Contains(res, "no calendars or contacts of bob@example.test") || strings.Count(res, "\n") != 1 {
		t.Errorf("export -from-backup of bob = %d, want one line:\n%s", code, res)
	}
}
