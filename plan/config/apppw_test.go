package config_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestAppPasswordBlocks(t *testing.T) {
	t.Parallel()
	cfg, diags := load(t, base+`
user "bob@example.org" {
  password_hash   = "`+hash+`"
  password_scopes = []
  app_password "phone" {
    hash   = "`+hash+`"
    scopes = ["imap", "smtp"]
  }
  app_password "laptop" {
    hash = "`+hash+`"
  }
}
`)
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	bob := cfg.Users[1]
	if bob.PasswordScopes == nil || len(bob.PasswordScopes) != 0 {
		t.Errorf("password_scopes = %#v, want an empty non-nil list", bob.PasswordScopes)
	}
	if cfg.Users[0].PasswordScopes != nil {
		t.Errorf("alice's absent password_scopes = %#v, want nil (every scope)", cfg.Users[0].PasswordScopes)
	}
	if len(bob.AppPasswords) != 2 || bob.AppPasswords[0].Name != "phone" || bob.AppPasswords[1].Name != "laptop" {
		t.Fatalf("app passwords = %+v", bob.AppPasswords)
	}
	if got := strings.Join(bob.AppPasswords[1].Scopes, ","); got != "imap,smtp,dav" {
		t.Errorf("default scopes = %q, want imap,smtp,dav", got)
	}
	if h := bob.AppPasswords[0].Hash; !h.Sensitive || h.String() != "(sensitive)" || h.Str != hash {
		t.Errorf("app password hash = %+v, want the sensitive hash", h)
	}
}

func TestAppPasswordRules(t *testing.T) {
	t.Parallel()
	costly := `$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ`
	cases := []struct {
		name, body string
		want       []string // "line:Summary", line within the user block (1 = the user line)
	}{
		{"bad scope", `app_password "phone" {
  hash   = "` + hash + `"
  scopes = ["imap", "pop3"]
}`, []string{"4:Invalid scope"}},
		{"empty scopes", `app_password "phone" {
  hash   = "` + hash + `"
  scopes = []
}`, []string{"4:No scopes"}},
		{"bad hash", `app_password "phone" { hash = "secret" }`, []string{"2:Invalid app password hash"}},
		{"no hash", `app_password "phone" { }`, []string{"2:Missing required argument"}},
		{"costly hash", `app_password "phone" { hash = "` + costly + `" }`, []string{"2:Costly app password hash"}},
		{"bad name", `app_password "my phone" { hash = "` + hash + `" }`, []string{"2:Invalid app password name"}},
		{"duplicate", `app_password "phone" { hash = "` + hash + `" }
app_password "Phone" { hash = "` + hash + `" }`, []string{"3:Duplicate app password"}},
		{"bad password scope", `password_scopes = ["web"]`, []string{"2:Invalid scope", "2:No imap login", "2:No smtp login"}},
		{"main password disabled, no app password", `password_scopes = []`, []string{"2:No imap login", "2:No smtp login"}},
		{"imap app password only", `password_scopes = []
app_password "phone" {
  hash   = "` + hash + `"
  scopes = ["imap"]
}`, []string{"2:No smtp login"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			head := base + "user \"bob@example.org\" {\n  password_hash = \"" + hash + "\"\n"
			userLine := strings.Count(head, "\n") // the user line
			_, diags := load(t, head+tc.body+"\n}\n")
			var want []string
			for _, w := range tc.want {
				var n int
				var summary string
				fmt.Sscanf(w, "%d:", &n)
				_, summary, _ = strings.Cut(w, ":")
				want = append(want, fmt.Sprintf("%d:%s", userLine-1+n, summary))
			}
			if got := summaries(diags); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("diagnostics = %q\nwant %q", got, want)
			}
		})
	}
}

func TestRecipientDelimiterAttribute(t *testing.T) {
	t.Parallel()
	cfg, diags := load(t, base)
	if diags.HasErrors() || cfg.Servers[0].RecipientDelimiter != nil {
		t.Fatalf("absent recipient_delimiter: %v, %v", diags, cfg.Servers[0].RecipientDelimiter)
	}
	for _, tc := range []struct {
		value string
		ok    bool
	}{{`"+-"`, true}, {`""`, true}, {`"x"`, false}, {`"++"`, false}} {
		src := strings.Replace(base, `hostname = "mx1.example.org"`, `hostname = "mx1.example.org"
  recipient_delimiter = `+tc.value, 1)
		cfg, diags := load(t, src)
		if tc.ok {
			if diags.HasErrors() || cfg.Servers[0].RecipientDelimiter == nil || `"`+*cfg.Servers[0].RecipientDelimiter+`"` != tc.value {
				t.Errorf("recipient_delimiter = %s: %v", tc.value, diags)
			}
			continue
		}
		if got := summaries(diags); len(got) != 1 || !strings.HasSuffix(got[0], ":Invalid recipient delimiter") {
			t.Errorf("recipient_delimiter = %s: diagnostics %q, want Invalid recipient delimiter", tc.value, got)
		}
	}
}
