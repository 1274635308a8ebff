package auth_test

import (
	"errors"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
)

// TestResolvePostmaster: the bare Postmaster of RFC 5321 4.5.1 goes to the
// postmaster of the host name's own domain when it is served here, else
// to the first served domain (sorted) that has one; with none, it is an
// unknown recipient.
func TestResolvePostmaster(t *testing.T) {
	users := []auth.User{{Address: "alice@b.test"}, {Address: "bob@c.test"}}
	dir, err := auth.NewDirectory([]string{"a.test", "b.test", "c.test"}, users, []auth.Alias{
		{Address: "postmaster@b.test", To: []string{"alice@b.test"}},
		{Address: "postmaster@c.test", To: []string{"bob@c.test"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ host, addr, user string }{
		{"mail.c.test", "postmaster@c.test", "bob@c.test"},
		{"C.TEST.", "postmaster@c.test", "bob@c.test"},
		{"mail.a.test", "postmaster@b.test", "alice@b.test"}, // a.test has none
		{"mx.elsewhere.example", "postmaster@b.test", "alice@b.test"},
	} {
		addr, res, err := dir.ResolvePostmaster(tc.host)
		if err != nil || addr != tc.addr || len(res.Users) != 1 || res.Users[0] != tc.user {
			t.Errorf("ResolvePostmaster(%q) = %q %v %v, want %q to %s", tc.host, addr, res, err, tc.addr, tc.user)
		}
	}
	none, err := auth.NewDirectory([]string{"a.test"}, []auth.User{{Address: "x@a.test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := none.ResolvePostmaster("mail.a.test"); !errors.Is(err, auth.ErrUnknownRecipient) {
		t.Errorf("ResolvePostmaster without any postmaster: %v, want ErrUnknownRecipient", err)
	}
}
