package config_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
)

// TestMigrationDAV: calendars and contacts are off by default and copied
// from Google's endpoints when on; dav_source and dav_target name other
// servers.
func TestMigrationDAV(t *testing.T) {
	t.Parallel()
	cfg, diags := load(t, migrationBase)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := cfg.Migrations[0].DAV; !got.Mail || got.Calendars || got.Contacts || got.Target != nil ||
		got.Source != (config.DAVEndpoint{CalDAV: config.DefaultCalDAVSource, CardDAV: config.DefaultCardDAVSource}) {
		t.Errorf("default DAV = %+v, want mail only, Google as the source", got)
	}
	src := base + `migration "radicale" {
  mail      = false
  calendars = true
  contacts  = true
  dav_source {
    url     = "https://dav.old.example/radicale/"
    ca_file = "old-ca.pem"
  }
  dav_target {
    caldav_url  = "http://127.0.0.1:5232/"
    carddav_url = "http://localhost:5232/"
  }
  user "alice@example.org" {
    login           = "alice"
    password        = "p"
    target_password = "t"
  }
}
`
	cfg, diags = load(t, src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got := cfg.Migrations[0].DAV
	if got.Mail || !got.Calendars || !got.Contacts ||
		got.Source != (config.DAVEndpoint{CalDAV: "https://dav.old.example/radicale/", CardDAV: "https://dav.old.example/radicale/", CAFile: "old-ca.pem"}) ||
		got.Target == nil || *got.Target != (config.DAVEndpoint{CalDAV: "http://127.0.0.1:5232/", CardDAV: "http://localhost:5232/"}) {
		t.Errorf("DAV = %+v (target %+v)", got, got.Target)
	}
}

func TestMigrationDAVRules(t *testing.T) {
	t.Parallel()
	user := "user \"alice@example.org\" {\n password = \"p\"\n target_password = \"t\"\n}\n"
	cases := []struct{ name, body, want string }{
		{"nothing", "mail = false\n" + user, "27:Nothing to migrate"},
		{"http remote", "calendars = true\ndav_source {\n url = \"http://dav.example.net/\"\n}\n" + user, "29:Invalid URL"},
		{"not a URL", "contacts = true\ndav_source {\n carddav_url = \"dav.example.net\"\n}\n" + user, "29:Invalid URL"},
		{"target without URL", "calendars = true\ndav_target {\n caldav_url = \"https://a.example/\"\n}\n" + user, "28:Missing required argument"},
		{"two sources", "dav_source {\n}\ndav_source {\n}\n" + user, "29:Duplicate block"},
		{"calendars not a bool", "calendars = \"yes please\"\n" + user, "27:Incorrect attribute value type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, diags := load(t, base+"migration \"google\" {\n"+tc.body+"}\n")
			if got := strings.Join(summaries(diags), "\n"); got != tc.want {
				t.Errorf("diagnostics = %q, want %q\n%s", got, tc.want, diags)
			}
		})
	}
}
