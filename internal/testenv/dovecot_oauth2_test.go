package testenv

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// xoauth2Client is Google's XOAUTH2 SASL mechanism, client side
// (https://developers.google.com/gmail/imap/xoauth2-protocol).
type xoauth2Client struct{ user, token string }

func (x *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next gets the server's error challenge, a JSON status, and ends the
// exchange: go-imap would send the empty response the protocol asks for
// as "=", which Dovecot answers with BAD.
func (x *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	return nil, fmt.Errorf("token refused: %s", challenge)
}

// TestStartDovecotOAuth2 logs in to a Dovecot started with OAuth2 through
// its oauth2 passdb and the local introspection endpoint: XOAUTH2 and
// OAUTHBEARER (RFC 7628) with an active token succeed; an unknown token,
// an inactive one, another user's token and a token revoked with SetToken
// fail; password logins still work beside it.
func TestStartDovecotOAuth2(t *testing.T) {
	const alice, bob = "alice@example.com", "bob@example.com"
	d := StartDovecotWith(t, DovecotOptions{
		Users:  []DovecotUser{{alice, "alice-pw"}, {bob, "bob-pw"}},
		OAuth2: true,
		Tokens: map[string]OAuth2Token{
			"ya29.alice":   {User: alice, Active: true},
			"ya29.bob":     {User: bob, Active: true},
			"ya29.expired": {User: alice, Active: false},
			"ya29.revoke":  {User: alice, Active: true},
		},
	})
	login := func(t *testing.T, tls bool, c sasl.Client) error {
		t.Helper()
		var (
			cl  *imapclient.Client
			err error
		)
		if tls {
			cl, err = imapclient.DialTLS(d.TLSAddr, &imapclient.Options{TLSConfig: d.ClientTLS()})
		} else {
			cl, err = imapclient.DialInsecure(d.Addr, nil)
		}
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer cl.Close()
		if !cl.Caps().Has("AUTH=XOAUTH2") || !cl.Caps().Has("AUTH=OAUTHBEARER") {
			t.Errorf("capabilities %v lack AUTH=XOAUTH2 or AUTH=OAUTHBEARER", cl.Caps())
		}
		if err := cl.Authenticate(c); err != nil {
			return err
		}
		// The session is the token's user's: its INBOX opens.
		if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
			t.Errorf("SELECT INBOX after login: %v", err)
		}
		return nil
	}
	for _, tc := range []struct {
		name   string
		tls    bool
		client sasl.Client
		ok     bool
	}{
		{"xoauth2 active token", true, &xoauth2Client{alice, "ya29.alice"}, true},
		{"xoauth2 plaintext listener", false, &xoauth2Client{bob, "ya29.bob"}, true},
		{"oauthbearer active token", true, sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: alice, Token: "ya29.alice"}), true},
		{"xoauth2 unknown token", true, &xoauth2Client{alice, "ya29.nope"}, false},
		{"xoauth2 inactive token", true, &xoauth2Client{alice, "ya29.expired"}, false},
		{"xoauth2 another user's token", true, &xoauth2Client{alice, "ya29.bob"}, false},
		{"xoauth2 password as token", true, &xoauth2Client{alice, "alice-pw"}, false},
		{"plain password", true, sasl.NewPlainClient("", alice, "alice-pw"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := login(t, tc.tls, tc.client)
			if tc.ok && err != nil {
				t.Errorf("Authenticate = %v, want success", err)
			}
			if !tc.ok && err == nil {
				t.Error("Authenticate succeeded, want a failure")
			}
			// A refused token gets XOAUTH2's error challenge; a wrong
			// password gets NO [AUTHENTICATIONFAILED].
			if err != nil && !strings.Contains(err.Error(), `"status":"401"`) && !strings.Contains(err.Error(), "AUTHENTICATIONFAILED") {
				t.Errorf("Authenticate error = %v, want an authentication failure", err)
			}
		})
	}
	t.Run("revoked with SetToken", func(t *testing.T) {
		if err := login(t, true, &xoauth2Client{alice, "ya29.revoke"}); err != nil {
			t.Fatalf("before revoking: %v", err)
		}
		d.SetToken("ya29.revoke", OAuth2Token{User: alice, Active: false})
		if err := login(t, true, &xoauth2Client{alice, "ya29.revoke"}); err == nil {
			t.Error("login with a revoked token succeeded")
		}
	})
	// Last: a failed password login makes Dovecot delay the next ones.
	if err := login(t, true, sasl.NewPlainClient("", alice, "ya29.alice")); err == nil || !strings.Contains(err.Error(), "AUTHENTICATIONFAILED") {
		t.Errorf("PLAIN with a token as the password = %v, want AUTHENTICATIONFAILED", err)
	}
	if n := d.Introspections(); n < 9 {
		t.Errorf("introspection endpoint asked %d times, want at least 9 (one per OAuth2 login)", n)
	}
}
