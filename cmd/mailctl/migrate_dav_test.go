package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/auth"
)

const migrateDAVHCL = `
provider "zonefile" "z" {
  dir = "zones"
}
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  tls {
    acme_email = "admin@example.org"
  }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
user "alice@example.org" {
  password_hash = %q
}
migration "radicale" {
  mail      = false
  calendars = true
  contacts  = true
  dav_source {
    url = %q
  }
  dav_target {
    url = %q
  }
  user "alice@example.org" {
    login           = "alice"
    password        = env("ALICE_OLD_PASSWORD")
    target_password = env("ALICE_PASSWORD")
  }
}
`

// TestMigrateCommandDAV runs `mailctl migrate` from a migration block that
// copies only calendars and contacts from one Radicale to another: a dry
// run writes nothing, a run copies every object, a second run copies none,
// and a wrong source password exits 1 without showing it.
func TestMigrateCommandDAV(t *testing.T) {
	src := testenv.StartRadicale(t, testenv.RadicaleUser{Name: "alice", Password: "old-pw"})
	dst := testenv.StartRadicale(t, testenv.RadicaleUser{Name: "alice@example.org", Password: "new-pw"})
	ctx := context.Background()
	hc := webdav.HTTPClientWithBasicAuth(&http.Client{Timeout: 30 * time.Second}, "alice", "old-pw")
	cal, _ := caldav.NewClient(hc, src.URL)
	card, _ := carddav.NewClient(hc, src.URL)
	src.MakeCollection(t, "alice", "old-pw", "/alice/cal/", "calendar", "Personal")
	src.MakeCollection(t, "alice", "old-pw", "/alice/book/", "addressbook", "Friends")
	for i := range 3 {
		c := ical.NewCalendar()
		c.Props.SetText(ical.PropVersion, "2.0")
		c.Props.SetText(ical.PropProductID, "-//test//EN")
		ev := ical.NewEvent()
		ev.Props.SetText(ical.PropUID, fmt.Sprintf("e%d@old", i))
		ev.Props.SetDateTime(ical.PropDateTimeStamp, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		ev.Props.SetDateTime(ical.PropDateTimeStart, time.Date(2026, 1, 2+i, 10, 0, 0, 0, time.UTC))
		c.Children = append(c.Children, ev.Component)
		if _, err := cal.PutCalendarObject(ctx, fmt.Sprintf("/alice/cal/%d.ics", i), c); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		v := vcard.Card{}
		v.SetValue(vcard.FieldVersion, "3.0")
		v.SetValue(vcard.FieldUID, fmt.Sprintf("c%d@old", i))
		v.SetValue(vcard.FieldFormattedName, fmt.Sprintf("Friend %d", i))
		v.SetName(&vcard.Name{FamilyName: "Friend"})
		if _, err := card.PutAddressObject(ctx, fmt.Sprintf("/alice/book/%d.vcf", i), v); err != nil {
			t.Fatal(err)
		}
	}

	hash, err := auth.HashPassword("new-pw", auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), fmt.Appendf(nil, migrateDAVHCL, hash, src.URL, dst.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"ALICE_OLD_PASSWORD": "old-pw", "ALICE_PASSWORD": "new-pw"}
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		e := &env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: dir,
			Getenv: func(k string) string { return secrets[k] }}
		code := run(ctx, append([]string{"-chdir", dir, "migrate"}, args...), e)
		return code, out.String(), errb.String()
	}
	targetObjects := func() int {
		tc, _ := caldav.NewClient(webdav.HTTPClientWithBasicAuth(&http.Client{Timeout: 30 * time.Second}, "alice@example.org", "new-pw"), dst.URL)
		n := 0
		for _, coll := range []string{"/alice@example.org/cal/", "/alice@example.org/book/"} {
			infos, err := tc.ReadDir(ctx, coll, false)
			if err != nil {
				continue // not there (yet)
			}
			for _, fi := range infos {
				if !fi.IsDir {
					n++
				}
			}
		}
		return n
	}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		stdout  []string
		objects int
	}{
		{"dry run", []string{"-dry-run"}, 0, []string{"alice@example.org: mail not copied", "calendars and contacts: would copy 5 objects"}, 0},
		{"copy", nil, 0, []string{"calendars and contacts: copied 5 objects", `calendar "/alice/cal/" -> "/alice@example.org/cal/": 3 objects, copied 3`,
			`address book "/alice/book/" -> "/alice@example.org/book/": 2 objects, copied 2`}, 5},
		{"second run", nil, 0, []string{"calendars and contacts: copied 0 objects", "skipped 5"}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, out)
				}
			}
			if got := targetObjects(); got != tc.objects {
				t.Errorf("target holds %d objects, want %d", got, tc.objects)
			}
		})
	}
	t.Run("wrong source password", func(t *testing.T) {
		secrets["ALICE_OLD_PASSWORD"] = "wrong-secret"
		code, out, _ := cli()
		if code != 1 || !strings.Contains(out, "calendars and contacts error: source calendars: find the principal") || !strings.Contains(out, "401") {
			t.Errorf("exit code = %d, stdout:\n%s\nwant 1 and the login failure", code, out)
		}
		if strings.Contains(out, "wrong-secret") {
			t.Errorf("the password appears in the output:\n%s", out)
		}
	})
}
