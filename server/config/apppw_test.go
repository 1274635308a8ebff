package config_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
)

func TestValidateAppPasswords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(u *config.User)
		want   []string
	}{
		{"bad scope", func(u *config.User) {
			u.AppPasswords = []config.AppPassword{{Name: "phone", Hash: testHash(t), Scopes: []string{"imap", "pop3"}}}
		}, []string{`users[0].app_passwords[0].scopes[1]: "pop3" is not one of imap, smtp`}},
		{"no scope", func(u *config.User) {
			u.AppPasswords = []config.AppPassword{{Name: "phone", Hash: testHash(t)}}
		}, []string{"users[0].app_passwords[0].scopes: needs at least one of imap, smtp"}},
		{"bad hash", func(u *config.User) {
			u.AppPasswords = []config.AppPassword{{Name: "phone", Hash: "$2y$10$x", Scopes: []string{"imap"}}}
		}, []string{"users[0].app_passwords[0].hash: auth: malformed argon2id hash"}},
		{"duplicate name", func(u *config.User) {
			u.AppPasswords = []config.AppPassword{{Name: "phone", Hash: testHash(t), Scopes: []string{"imap"}}, {Name: "Phone", Hash: testHash(t), Scopes: []string{"smtp"}}}
		}, []string{`users[0].app_passwords[1].name: "Phone" is duplicated`}},
		{"bad name", func(u *config.User) {
			u.AppPasswords = []config.AppPassword{{Name: "my phone", Hash: testHash(t), Scopes: []string{"imap"}}}
		}, []string{`users[0].app_passwords[0].name: "my phone" is not`}},
		{"bad password scope", func(u *config.User) { u.PasswordScopes = &[]string{"web"} }, []string{`users[0].password_scopes[0]: "web" is not one of imap, smtp`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid(t)
			tt.mutate(&c.Users[0])
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant a line containing %q", err, w)
				}
			}
		})
	}
}

// TestPasswordScopesJSON: an absent password_scopes lets the main password
// in everywhere, an empty list nowhere, and both survive the JSON file.
func TestPasswordScopesJSON(t *testing.T) {
	t.Parallel()
	c := valid(t)
	c.Users[0].PasswordScopes = &[]string{}
	c.Users[0].AppPasswords = []config.AppPassword{{Name: "phone", Hash: testHash(t), Scopes: []string{"smtp"}}}
	c.Users[1].PasswordScopes = nil
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"password_scopes"`); n != 1 {
		t.Errorf("%d password_scopes in %s, want 1 (alice's empty list)", n, b)
	}
	back, err := config.Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal) = %v", err)
	}
	if back.Digest() != c.Digest() {
		t.Errorf("digest changed through JSON")
	}
	a, err := auth.NewAuthenticator(back.AuthUsers(), auth.AuthenticatorOptions{FailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	from := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}
	// "secret" is testHash's password, for alice's main and app password alike;
	// it is not of the app password form, so only the main password is tried.
	if _, err := a.For(auth.ScopeIMAP).Authenticate(ctx, "alice@example.org", "secret", from); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("alice's main password (password_scopes = []) over IMAP = %v, want ErrInvalidCredentials", err)
	}
	if _, err := a.For(auth.ScopeIMAP).Authenticate(ctx, "bob@example.net", "secret", from); err != nil {
		t.Errorf("bob's main password (no password_scopes) over IMAP = %v, want success", err)
	}
}

func TestRecipientDelimiterConfig(t *testing.T) {
	t.Parallel()
	c := valid(t)
	if got := c.Delimiter(); got != "+" {
		t.Errorf("default Delimiter() = %q, want +", got)
	}
	for _, ok := range []string{"+", "+-", ""} {
		c.RecipientDelimiter = &ok
		if err := c.Validate(); err != nil {
			t.Errorf("recipient_delimiter %q: %v", ok, err)
		}
		if c.Delimiter() != ok {
			t.Errorf("Delimiter() = %q, want %q", c.Delimiter(), ok)
		}
	}
	bad := "x"
	c.RecipientDelimiter = &bad
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `recipient_delimiter: recipient delimiter "x": 'x' is not one of`) {
		t.Errorf("recipient_delimiter x: %v", err)
	}
}
