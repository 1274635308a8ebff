package dav_test

import (
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/dav"
)

// vdirsyncer runs vdirsyncer with cfg; stdin answers its questions.
func vdirsyncer(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	cmd := exec.Command("vdirsyncer", append([]string{"-c", cfg}, args...)...)
	cmd.Stdin = strings.NewReader(strings.Repeat("y\n", 10))
	cmd.Env = append(os.Environ(), "HOME="+filepath.Dir(cfg))
	done := make(chan struct{})
	timer := time.AfterFunc(60*time.Second, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	close(done)
	if err != nil {
		t.Fatalf("vdirsyncer %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// localItems reads a vdirsyncer filesystem collection: UID -> the line
// starting with field (SUMMARY: or FN:).
func localItems(t *testing.T, dir, field string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	items := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var uid, val string
		for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
			if v, ok := strings.CutPrefix(l, "UID:"); ok {
				uid = v
			}
			if v, ok := strings.CutPrefix(l, field); ok {
				val = v
			}
		}
		items[uid] = val
	}
	return items
}

// serverItems reads a collection from the store the same way.
func (s *testServer) serverItems(t *testing.T, kind dav.Kind, field string) map[string]string {
	t.Helper()
	objs, err := s.st.Objects(t.Context(), "alice@example.org", kind, dav.DefaultCollection)
	if err != nil {
		t.Fatal(err)
	}
	items := map[string]string{}
	for _, o := range objs {
		var uid, val string
		for _, l := range strings.Split(strings.ReplaceAll(string(o.Data), "\r\n", "\n"), "\n") {
			if v, ok := strings.CutPrefix(l, "UID:"); ok {
				uid = v
			}
			if v, ok := strings.CutPrefix(l, field); ok {
				val = v
			}
		}
		items[uid] = val
	}
	return items
}

func sameItems(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// TestVdirsyncerTwoWay: vdirsyncer (the Debian package) syncs alice's
// default calendar and address book with local directories, discovering
// them from the server's root through /.well-known; changes on both sides
// (new, changed, deleted items) converge.
func TestVdirsyncerTwoWay(t *testing.T) { testVdirsyncerTwoWay(t, newServer) }

func testVdirsyncerTwoWay(t *testing.T, newServer serverMaker) {
	if _, err := exec.LookPath("vdirsyncer"); err != nil {
		t.Fatal("vdirsyncer is required (apt-get install vdirsyncer)")
	}
	s := newServer(t, dav.Options{})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	var b strings.Builder
	fmt.Fprintf(&b, "[general]\nstatus_path = %q\n\n", filepath.Join(dir, "status"))
	for _, p := range []struct{ name, typ, ext string }{{"cal", "caldav", ".ics"}, {"card", "carddav", ".vcf"}} {
		fmt.Fprintf(&b, "[pair %s]\na = \"%s_local\"\nb = \"%s_remote\"\ncollections = [\"from b\"]\nconflict_resolution = \"b wins\"\n\n", p.name, p.name, p.name)
		fmt.Fprintf(&b, "[storage %s_local]\ntype = \"filesystem\"\npath = %q\nfileext = %q\n\n", p.name, filepath.Join(dir, p.name), p.ext)
		fmt.Fprintf(&b, "[storage %s_remote]\ntype = %q\nurl = %q\nusername = \"alice@example.org\"\npassword = %q\nverify = %q\n\n",
			p.name, p.typ, s.URL+"/", passwords["alice@example.org"], ca)
	}
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// The server side starts with one event and one contact.
	put := func(path, body, ctype string) {
		t.Helper()
		resp, _ := s.do(t, "alice@example.org", "PUT", path, body, map[string]string{"Content-Type": ctype})
		if resp.StatusCode/100 != 2 {
			t.Fatalf("PUT %s: %s", path, resp.Status)
		}
	}
	calPath := "/dav/alice@example.org/calendars/default/"
	cardPath := "/dav/alice@example.org/contacts/default/"
	put(calPath+"srv1.ics", event("srv1", "From the server"), "text/calendar")
	put(cardPath+"srvc.vcf", card("srvc", "Server Contact"), "text/vcard")
	put(cardPath+"srvd.vcf", card("srvd", "Kept Contact"), "text/vcard")

	vdirsyncer(t, cfg, "discover")
	vdirsyncer(t, cfg, "sync")
	localCal := filepath.Join(dir, "cal", "default")
	localCard := filepath.Join(dir, "card", "default")
	sameItems(t, "local calendar after first sync", localItems(t, localCal, "SUMMARY:"), map[string]string{"srv1": "From the server"})
	sameItems(t, "local contacts after first sync", localItems(t, localCard, "FN:"), map[string]string{"srvc": "Server Contact", "srvd": "Kept Contact"})

	// Local side: a new event, a changed one, a new contact.
	if err := os.WriteFile(filepath.Join(localCal, "loc1.ics"), []byte(event("loc1", "From the laptop")), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(localCal)
	for _, e := range ents {
		p := filepath.Join(localCal, e.Name())
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "UID:srv1") {
			os.WriteFile(p, []byte(strings.Replace(string(b), "SUMMARY:From the server", "SUMMARY:Edited on the laptop", 1)), 0o600)
		}
	}
	if err := os.WriteFile(filepath.Join(localCard, "locc.vcf"), []byte(card("locc", "Laptop Contact")), 0o600); err != nil {
		t.Fatal(err)
	}
	// Server side at the same time: another event, a contact deleted.
	put(calPath+"srv2.ics", event("srv2", "Second from the server"), "text/calendar")
	if resp, _ := s.do(t, "alice@example.org", "DELETE", cardPath+"srvc.vcf", "", nil); resp.StatusCode/100 != 2 {
		t.Fatalf("DELETE contact: %s", resp.Status)
	}

	vdirsyncer(t, cfg, "sync")
	wantCal := map[string]string{"srv1": "Edited on the laptop", "srv2": "Second from the server", "loc1": "From the laptop"}
	wantCard := map[string]string{"locc": "Laptop Contact", "srvd": "Kept Contact"}
	sameItems(t, "server calendar", s.serverItems(t, dav.Calendars, "SUMMARY:"), wantCal)
	sameItems(t, "local calendar", localItems(t, localCal, "SUMMARY:"), wantCal)
	sameItems(t, "server contacts", s.serverItems(t, dav.AddressBooks, "FN:"), wantCard)
	sameItems(t, "local contacts", localItems(t, localCard, "FN:"), wantCard)

	// A second sync with nothing changed changes nothing.
	vdirsyncer(t, cfg, "sync")
	sameItems(t, "server calendar after an idle sync", s.serverItems(t, dav.Calendars, "SUMMARY:"), wantCal)
}
