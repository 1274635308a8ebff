package auth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestGenerateAppPassword(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		pw, hash, err := auth.GenerateAppPassword()
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4}$`).MatchString(pw) {
			t.Fatalf("app password %q is not four groups of four letters", pw)
		}
		if seen[pw] {
			t.Fatalf("app password %q drawn twice", pw)
		}
		seen[pw] = true
		norm, ok := auth.NormalizeAppPassword(strings.ToUpper(pw))
		if !ok || norm != strings.ReplaceAll(pw, " ", "") {
			t.Errorf("NormalizeAppPassword(%q) = %q, %v", strings.ToUpper(pw), norm, ok)
		}
		p, _, _, err := auth.ParseHash(hash)
		if err != nil || p.Memory != auth.AppParams.Memory {
			t.Errorf("hash %q: %+v, %v", hash, p, err)
		}
		if ok, err := auth.VerifyPassword(hash, norm); !ok || err != nil {
			t.Errorf("hash does not verify the normalised password: %v, %v", ok, err)
		}
	}
}

func TestAppPasswords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	phone, phoneHash, err := auth.GenerateAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	laptop, laptopHash, err := auth.GenerateAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.User{Address: "alice@example.org", PasswordHash: mustHash(t, "main-pw"), PasswordScopes: []string{auth.ScopeIMAP},
		AppPasswords: []auth.AppPassword{
			{Name: "phone", Hash: phoneHash, Scopes: []string{auth.ScopeIMAP, auth.ScopeSMTP}},
			{Name: "laptop", Hash: laptopHash, Scopes: []string{auth.ScopeIMAP}},
		}}
	var logs syncBuffer
	a, err := auth.NewAuthenticator([]auth.User{alice}, auth.AuthenticatorOptions{FailureDelay: -1, MaxFailures: 100,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	imap, smtp := a.For(auth.ScopeIMAP), a.For(auth.ScopeSMTP)
	from := addr("10.3.0.1")
	steps := []struct {
		name     string
		scoped   auth.Scoped
		pw       string
		ok       bool
		verified int64 // total so far
	}{
		{"phone over IMAP", imap, phone, true, 1},
		{"phone over IMAP remembered", imap, phone, true, 1},
		{"phone over SMTP", smtp, phone, true, 2},
		{"phone without spaces, upper case", smtp, strings.ToUpper(strings.ReplaceAll(phone, " ", "")), true, 3},
		{"laptop over IMAP", imap, laptop, true, 5},
		{"laptop over SMTP (imap only)", smtp, laptop, false, 7},
		{"main password over IMAP", imap, "main-pw", true, 8},
		{"main password over SMTP (imap only)", smtp, "main-pw", false, 9},
		{"wrong password: one verification", imap, "guess", false, 10},
		{"wrong app password: MaxAppPasswords cheap ones and the main one", imap, "abcd efgh ijkl mnop", false, 10 + auth.MaxAppPasswords + 1},
	}
	for _, s := range steps {
		_, err := s.scoped.Authenticate(ctx, "alice@example.org", s.pw, from)
		if (err == nil) != s.ok || err != nil && !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("%s: err = %v, want success %v", s.name, err, s.ok)
		}
		if v := a.Verifications(); v != s.verified {
			t.Errorf("%s: %d verifications in all, want %d", s.name, v, s.verified)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "app_password=phone") || !strings.Contains(out, "app_password=laptop") {
		t.Errorf("logs name no app password:\n%s", out)
	}
	if !strings.Contains(out, "the main password is not allowed for smtp") || !strings.Contains(out, "app password laptop is not allowed for smtp") {
		t.Errorf("logs do not say which credential was refused for smtp:\n%s", out)
	}
	for _, secret := range []string{phone, laptop, strings.ReplaceAll(phone, " ", ""), "main-pw", "$argon2id"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs hold %q:\n%s", secret, out)
		}
	}

	// Revocation: the laptop's block is deleted; its remembered login goes.
	alice.AppPasswords = alice.AppPasswords[:1]
	if err := a.Update([]auth.User{alice}); err != nil {
		t.Fatal(err)
	}
	if _, err := imap.Authenticate(ctx, "alice@example.org", laptop, from); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("revoked laptop password = %v, want ErrInvalidCredentials", err)
	}
	v := a.Verifications()
	if _, err := imap.Authenticate(ctx, "alice@example.org", phone, from); err != nil {
		t.Errorf("phone after the laptop's revocation = %v, want success", err)
	}
	if a.Verifications() != v {
		t.Errorf("phone's remembered login was dropped by an unrelated revocation")
	}
	// Narrowing a scope drops the remembered logins it no longer allows.
	alice.AppPasswords[0].Scopes = []string{auth.ScopeIMAP}
	if err := a.Update([]auth.User{alice}); err != nil {
		t.Fatal(err)
	}
	if _, err := smtp.Authenticate(ctx, "alice@example.org", phone, from); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("phone over SMTP after its scope became imap = %v, want ErrInvalidCredentials", err)
	}
}

// TestAppPasswordsBoundedCost: a user with the most app passwords costs a
// wrong password one verification unless it has the app password form,
// and then one cheap verification per app password; every user, known
// or not, with or without app passwords, costs the same.
func TestAppPasswordsBoundedCost(t *testing.T) {
	t.Parallel()
	u := auth.User{Address: "alice@example.org", PasswordHash: mustHash(t, "main-pw")}
	for i := 0; i < auth.MaxAppPasswords; i++ {
		_, h, err := auth.GenerateAppPassword()
		if err != nil {
			t.Fatal(err)
		}
		u.AppPasswords = append(u.AppPasswords, auth.AppPassword{Name: fmt.Sprintf("dev%d", i), Hash: h, Scopes: []string{auth.ScopeIMAP}})
	}
	a, err := auth.NewAuthenticator([]auth.User{u}, auth.AuthenticatorOptions{FailureDelay: -1, MaxFailures: 100, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a.For(auth.ScopeIMAP).Authenticate(ctx, "alice@example.org", "Summer2026!", addr("10.4.0.1"))
	if v := a.Verifications(); v != 1 {
		t.Errorf("ordinary wrong password: %d verifications, want 1", v)
	}
	a.For(auth.ScopeIMAP).Authenticate(ctx, "alice@example.org", "aaaa bbbb cccc dddd", addr("10.4.0.1"))
	if v := a.Verifications(); v != 1+auth.MaxAppPasswords+1 {
		t.Errorf("app-form wrong password: %d verifications in all, want %d", v, 2+auth.MaxAppPasswords)
	}
	for _, other := range []auth.User{{Address: "bob@example.org", PasswordHash: mustHash(t, "bob-pw")}, {Address: "nobody@example.org"}} {
		b, err := auth.NewAuthenticator([]auth.User{u, {Address: "bob@example.org", PasswordHash: mustHash(t, "bob-pw")}},
			auth.AuthenticatorOptions{FailureDelay: -1, MaxFailures: 100, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		b.For(auth.ScopeIMAP).Authenticate(ctx, other.Address, "aaaa bbbb cccc dddd", addr("10.4.0.2"))
		b.For(auth.ScopeIMAP).Authenticate(ctx, other.Address, "Summer2026!", addr("10.4.0.2"))
		if v := b.Verifications(); v != auth.MaxAppPasswords+2 {
			t.Errorf("%s: %d verifications for an app-form and an ordinary wrong password, want %d like alice's", other.Address, v, auth.MaxAppPasswords+2)
		}
	}
	u.AppPasswords = append(u.AppPasswords, u.AppPasswords[0])
	u.AppPasswords[len(u.AppPasswords)-1].Name = "one-too-many"
	if err := a.Update([]auth.User{u}); err == nil || !strings.Contains(err.Error(), "at most 20") {
		t.Errorf("Update with %d app passwords = %v, want an error", len(u.AppPasswords), err)
	}
}
