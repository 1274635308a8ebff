package desired_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/server/auth"
	serverconfig "github.com/mailctl/mailctl/server/config"
)

// TestServerConfigAppPasswords: the app_password blocks, password_scopes
// and recipient_delimiter reach the server's configuration, and the
// server logs in with them.
func TestServerConfigAppPasswords(t *testing.T) {
	t.Parallel()
	phone, phoneHash, err := auth.GenerateAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	mainHash, err := auth.HashPassword("main-pw", auth.AppParams)
	if err != nil {
		t.Fatal(err)
	}
	src := `
provider "zonefile" "z" { dir = "zones" }
server "mx1" {
  hostname = "mx1.example.org"
  ipv4     = "203.0.113.10"
  recipient_delimiter = "+-"
  tls { acme_email = "a@example.org" }
}
domain "example.org" {
  dns    = provider.zonefile.z
  server = server.mx1
}
user "a@example.org" {
  password_hash   = "` + mainHash + `"
  password_scopes = []
  app_password "phone" {
    hash   = "` + phoneHash + `"
    scopes = ["smtp"]
  }
}
user "b@example.org" { password_hash = "` + mainHash + `" }
`
	cfg, diags := config.LoadSources(t.TempDir(), map[string][]byte{"mail.hcl": []byte(src)}, config.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	js, err := json.Marshal(desired.ServerConfig(cfg, cfg.Servers[0]))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := serverconfig.Parse(js) // what the server reads
	if err != nil {
		t.Fatalf("server rejects the generated config: %v", err)
	}
	if err := sc.WithDefaults().Validate(); err != nil {
		t.Fatalf("server rejects the generated config: %v", err)
	}
	if sc.Delimiter() != "+-" {
		t.Errorf("recipient delimiter on the server = %q, want +-", sc.Delimiter())
	}
	a, err := auth.NewAuthenticator(sc.AuthUsers(), auth.AuthenticatorOptions{FailureDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, from := context.Background(), &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}
	for _, c := range []struct {
		scope, user, pw string
		ok              bool
	}{
		{auth.ScopeSMTP, "a@example.org", phone, true},
		{auth.ScopeIMAP, "a@example.org", phone, false},
		{auth.ScopeIMAP, "a@example.org", "main-pw", false},
		{auth.ScopeSMTP, "a@example.org", "main-pw", false},
		{auth.ScopeIMAP, "b@example.org", "main-pw", true},
	} {
		_, err := a.For(c.scope).Authenticate(ctx, c.user, c.pw, from)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("%s login of %s with %q = %v, want success %v", c.scope, c.user, c.pw, err, c.ok)
		}
	}
}
