package auth_test

import (
	"errors"
	"testing"

	"github.com/mailctl/mailctl/server/auth"
)

func TestParseAddressInternational(t *testing.T) {
	t.Parallel()
	good := []struct{ in, want, unicode string }{
		{"δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp", "δοκιμή@παράδειγμα.δοκιμή"},
		{"ΔΟΚΙΜΉ@ΠΑΡΆΔΕΙΓΜΑ.ΔΟΚΙΜΉ", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp", "δοκιμή@παράδειγμα.δοκιμή"},
		{"anna@bücher.example", "anna@xn--bcher-kva.example", "anna@bücher.example"},
		{"anna@XN--BCHER-KVA.example", "anna@xn--bcher-kva.example", "anna@bücher.example"},
		// NFD (u + combining diaeresis) is normalised to NFC.
		{"mu\u0308ller@example.org", "m\u00fcller@example.org", "m\u00fcller@example.org"},
		{"用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v", "用户@例子.广告"},
	}
	for _, tc := range good {
		a, err := auth.ParseAddress(tc.in)
		if err != nil || a.String() != tc.want || a.Unicode() != tc.unicode {
			t.Errorf("ParseAddress(%q) = %q (%q), %v; want %q (%q)", tc.in, a, a.Unicode(), err, tc.want, tc.unicode)
		}
	}
	bad := []string{
		"a\u200db@example.org",    // zero-width joiner
		"a\u202eb@example.org",    // right-to-left override
		"a\u00a0b@example.org",    // no-break space
		"a\u0085b@example.org",    // C1 control
		"a\ue000b@example.org",    // private use
		"\xff@example.org",        // invalid UTF-8
		"a@b\xff.example",         // invalid UTF-8 in domain
		"a@xn--zz.example",        // invalid punycode
		"a@exa\u200dmple.org",     // joiner in a domain
		"a@ex ample.example",      // space
		"a@bücher_.example",       // underscore
		"a@bücher.example.",       // trailing dot
		"a@\u05d0\u0031a.example", // Bidi rule broken
	}
	for _, in := range bad {
		if a, err := auth.ParseAddress(in); !errors.Is(err, auth.ErrBadAddress) {
			t.Errorf("ParseAddress(%q) = %q, %v; want ErrBadAddress", in, a, err)
		}
	}
	// A look-alike is another address, never the ASCII one.
	for _, in := range []string{"аlice@example.org", "alice@exаmple.org"} {
		a, err := auth.ParseAddress(in)
		if err == nil && a.String() == "alice@example.org" {
			t.Errorf("ParseAddress(%q) = alice@example.org", in)
		}
	}
}

func TestDirectoryInternational(t *testing.T) {
	t.Parallel()
	d, err := auth.NewDirectory(
		[]string{"bücher.example", "xn--hxajbheg2az3al.xn--jxalpdlp"},
		[]auth.User{
			{Address: "anna@xn--bcher-kva.example"},
			{Address: "δοκιμή@παράδειγμα.δοκιμή"},
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"anna@bücher.example":                    "anna@xn--bcher-kva.example",
		"Anna@XN--BCHER-KVA.EXAMPLE":             "anna@xn--bcher-kva.example",
		"ΔΟΚΙΜΉ@παράδειγμα.δοκιμή":               "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp",
		"δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp": "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp",
	} {
		res, err := d.Resolve(addr)
		if err != nil || len(res.Users) != 1 || res.Users[0] != want {
			t.Errorf("Resolve(%q) = %v, %v; want user %s", addr, res.Users, err, want)
		}
	}
	if !d.IsLocalDomain("xn--bcher-kva.example") {
		t.Error("IsLocalDomain(A-label of a domain configured in U-labels) = false")
	}
}
