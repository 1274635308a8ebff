package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/config"
)

func TestSpamValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		spam config.Spam
		want string // "" for valid
	}{
		{"on with defaults", config.Spam{Rspamd: true}, ""},
		{"all set", config.Spam{Rspamd: true, URL: "http://10.0.0.2:11333", ControllerURL: "https://r.example.org/ctl", RejectScore: 15, JunkScore: 6, Timeout: config.Duration(5 * time.Second)}, ""},
		{"bad url", config.Spam{Rspamd: true, URL: "127.0.0.1:11333"}, "spam.url: "},
		{"bad controller", config.Spam{Rspamd: true, ControllerURL: "ftp://x"}, "spam.controller_url: "},
		{"negative score", config.Spam{Rspamd: true, RejectScore: -1}, "spam.reject_score: "},
		{"junk above reject", config.Spam{Rspamd: true, RejectScore: 10, JunkScore: 12}, "spam.junk_score: 12 must be below reject_score 10"},
		{"long timeout", config.Spam{Rspamd: true, Timeout: config.Duration(time.Hour)}, "spam.timeout: "},
	} {
		c := valid(t)
		s := tc.spam
		c.Spam = &s
		err := c.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestSpamFilterDefaults(t *testing.T) {
	t.Parallel()
	c := valid(t)
	if c.SpamFilter() != nil {
		t.Fatal("no spam block: filter on")
	}
	c.Spam = &config.Spam{Rspamd: false, URL: "http://x:1"}
	if c.SpamFilter() != nil {
		t.Fatal("rspamd = false: filter on")
	}
	c.Spam = &config.Spam{Rspamd: true, JunkScore: 6}
	got := c.SpamFilter()
	want := config.Spam{Rspamd: true, URL: config.DefaultRspamdURL, ControllerURL: config.DefaultRspamdControllerURL,
		JunkScore: 6, Timeout: config.Duration(config.DefaultRspamdTimeout)}
	if got == nil || *got != want {
		t.Fatalf("SpamFilter() = %+v, want %+v", got, want)
	}
	// Turning it on needs a restart.
	before := valid(t).RestartDigests()
	if s := config.RestartSettings(before, c.RestartDigests()); len(s) != 1 || s[0] != "spam" {
		t.Errorf("restart settings %v, want [spam]", s)
	}
}
