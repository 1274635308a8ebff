package auth_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/mailctl/mailctl/server/auth"
)

func TestParseAddress(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"alice@example.org":             "alice@example.org",
		"Alice@EXAMPLE.Org":             "alice@example.org",
		"first.last+tag@example.org":    "first.last+tag@example.org",
		"o'brien@sub.example.org":       "o'brien@sub.example.org",
		"x_y-z=1@xn--bcher-kva.example": "x_y-z=1@xn--bcher-kva.example",
	}
	for in, want := range good {
		a, err := auth.ParseAddress(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAddress(%q) = %q, %v; want %q", in, a, err, want)
		}
	}
	bad := []string{
		"", "alice", "@example.org", "alice@", "alice@@example.org",
		"user%remote.example@example.org", // percent hack
		"remote.example!user@example.org", // bang path
		"user@remote.example@example.org", // two domains
		"a:b@example.org",                 // source route remains
		"@a.example:b@example.org",        // source route
		"a,b@example.org",
		"\"a@b\"@example.org",
		"a b@example.org",
		"a\\b@example.org",
		"alice@example.org.",  // trailing dot
		"alice.@example.org",  // trailing dot in local
		".alice@example.org",  // leading dot
		"al..ice@example.org", // double dot
		"alice@[127.0.0.1]",   // address literal
		"alice@[IPv6:::1]",
		"alice@127.0.0.1",           // bare IP
		"alice@localhost",           // single label
		"alice@exa_mple.org",        // underscore in domain
		"alice@-example.org",        // hyphen at label start
		"alice@example..org",        // empty label
		"alice\x00@example.org",     // NUL
		"alice\r\n@example.org",     // CRLF injection
		"alice@example.org\r\nRCPT", // CRLF injection in domain
		strings.Repeat("a", 65) + "@example.org",
		"a@" + strings.Repeat("b", 64) + ".org",
	}
	for _, in := range bad {
		if a, err := auth.ParseAddress(in); !errors.Is(err, auth.ErrBadAddress) {
			t.Errorf("ParseAddress(%q) = %q, %v; want ErrBadAddress", in, a, err)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"alice@example.org", "a%b@c.d", "\"a@b\"@c.d", "a@[1.2.3.4]", "a@b.c.", "ü@b.c",
		"δοκιμή@παράδειγμα.δοκιμή", "mu\u0308ller@xn--bcher-kva.example", "a\u200db@exa\u202emple.org"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := auth.ParseAddress(s)
		if err != nil {
			return
		}
		// An accepted address has exactly one @, an ASCII domain
		// (A-labels), no control or space anywhere, and parsing it again
		// gives the same address (normal form is stable).
		out := a.String()
		if strings.Count(out, "@") != 1 || strings.ContainsAny(out, "%!:,\"\\[] \r\n\t") {
			t.Fatalf("ParseAddress(%q) accepted %q", s, out)
		}
		for i := 0; i < len(a.Domain); i++ {
			if a.Domain[i] < 0x21 || a.Domain[i] > 0x7e {
				t.Fatalf("ParseAddress(%q) accepted non-ASCII domain %q", s, out)
			}
		}
		for _, r := range out {
			if r < 0x21 || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("ParseAddress(%q) accepted %U in %q", s, r, out)
			}
		}
		b, err := auth.ParseAddress(out)
		if err != nil || b != a {
			t.Fatalf("ParseAddress(%q) = %v, %v; not stable from %q", out, b, err, s)
		}
	})
}

func testDirectory(t *testing.T) *auth.Directory {
	t.Helper()
	d, err := auth.NewDirectory(
		[]string{"example.org", "Example.NET"},
		[]auth.User{
			{Address: "alice@example.org", Aliases: []string{"contact@example.org", "Alice.Martin@example.net"}, QuotaBytes: 1000},
			{Address: "bob@example.org"},
			{Address: "carol@example.net"},
		},
		[]auth.Alias{
			{Address: "postmaster@example.org", To: []string{"alice@example.org"}},
			{Address: "team@example.org", To: []string{"postmaster@example.org", "bob@example.org", "bob@example.org"}},
			{Address: "all@example.org", To: []string{"team@example.org", "contact@example.org", "friend@remote.example"}},
			{Address: "fwd@example.org", To: []string{"someone@remote.example"}},
			{Address: "loop1@example.org", To: []string{"loop2@example.org"}},
			{Address: "loop2@example.org", To: []string{"loop1@example.org", "bob@example.org"}},
			{Address: "@example.net", To: []string{"carol@example.net"}},
		})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirectoryResolve(t *testing.T) {
	t.Parallel()
	d := testDirectory(t)
	tests := []struct {
		addr   string
		users  string
		remote string
		err    error
	}{
		{"alice@example.org", "alice@example.org", "", nil},
		{"ALICE@Example.ORG", "alice@example.org", "", nil},
		{"contact@example.org", "alice@example.org", "", nil},
		{"alice.martin@example.net", "alice@example.org", "", nil},
		{"alice+lists@example.org", "alice@example.org", "", nil},
		{"team+x@example.org", "alice@example.org,bob@example.org", "", nil},
		{"postmaster@example.org", "alice@example.org", "", nil},
		{"team@example.org", "alice@example.org,bob@example.org", "", nil},
		{"all@example.org", "alice@example.org,bob@example.org", "friend@remote.example", nil},
		{"fwd@example.org", "", "someone@remote.example", nil},
		{"loop1@example.org", "bob@example.org", "", nil},
		{"anything@example.net", "carol@example.net", "", nil},
		{"carol@EXAMPLE.net", "carol@example.net", "", nil},
		{"nobody@example.org", "", "", auth.ErrUnknownRecipient},
		{"+x@example.org", "", "", auth.ErrUnknownRecipient},
		{"alice@remote.example", "", "", auth.ErrNotLocal},
		{"alice@sub.example.org", "", "", auth.ErrNotLocal},
		{"alice%remote.example@example.org", "", "", auth.ErrBadAddress},
		{"alice@example.org@remote.example", "", "", auth.ErrBadAddress},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			r, err := d.Resolve(tt.addr)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("Resolve(%q) err = %v, want %v", tt.addr, err, tt.err)
			}
			if got := strings.Join(r.Users, ","); got != tt.users {
				t.Errorf("Resolve(%q).Users = %q, want %q", tt.addr, got, tt.users)
			}
			if got := strings.Join(r.Remote, ","); got != tt.remote {
				t.Errorf("Resolve(%q).Remote = %q, want %q", tt.addr, got, tt.remote)
			}
		})
	}
}

func TestDirectoryMaySendAs(t *testing.T) {
	t.Parallel()
	d := testDirectory(t)
	tests := []struct {
		user, addr string
		want       bool
	}{
		{"alice@example.org", "alice@example.org", true},
		{"Alice@Example.org", "ALICE@example.org", true},
		{"alice@example.org", "contact@example.org", true},
		{"alice@example.org", "alice.martin@example.net", true},
		{"alice@example.org", "postmaster@example.org", true}, // alias block delivering to alice
		{"bob@example.org", "team@example.org", true},
		{"alice@example.org", "bob@example.org", false},
		{"bob@example.org", "contact@example.org", false},
		{"bob@example.org", "postmaster@example.org", false},
		{"carol@example.net", "random@example.net", false}, // catch-all is not a sender identity
		{"alice@example.org", "alice+tag@example.org", false},
		{"alice@example.org", "alice@remote.example", false},
		{"contact@example.org", "contact@example.org", false}, // an alias is not a user
		{"alice@example.org", "alice%x@example.org", false},
		{"nobody@example.org", "nobody@example.org", false},
	}
	for _, tt := range tests {
		if got := d.MaySendAs(tt.user, tt.addr); got != tt.want {
			t.Errorf("MaySendAs(%q, %q) = %v, want %v", tt.user, tt.addr, got, tt.want)
		}
	}
}

func TestDirectoryUpdate(t *testing.T) {
	t.Parallel()
	d := testDirectory(t)
	if !d.IsLocalDomain("EXAMPLE.net") || d.IsLocalDomain("remote.example") {
		t.Errorf("IsLocalDomain wrong")
	}
	if q := d.Quota("alice@example.org"); q != 1000 {
		t.Errorf("Quota(alice) = %d, want 1000", q)
	}
	if err := d.Update([]string{"example.org"}, []auth.User{{Address: "bad@@example.org"}}, nil); err == nil {
		t.Fatalf("Update(bad) = nil, want error")
	}
	if _, err := d.Resolve("bob@example.org"); err != nil {
		t.Errorf("after a failed Update, Resolve(bob) = %v; old contents must stay", err)
	}
	if err := d.Update([]string{"example.org"}, []auth.User{{Address: "dave@example.org"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve("bob@example.org"); !errors.Is(err, auth.ErrUnknownRecipient) {
		t.Errorf("after Update, Resolve(bob) = %v, want ErrUnknownRecipient", err)
	}
	if _, err := d.Resolve("x@example.net"); !errors.Is(err, auth.ErrNotLocal) {
		t.Errorf("after Update, Resolve(x@example.net) = %v, want ErrNotLocal", err)
	}
}
