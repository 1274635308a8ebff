package ptr_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/providers/ptr"
)

type nopProvider struct{}

func (nopProvider) Get(context.Context, netip.Addr) (string, error) { return "", nil }
func (nopProvider) Set(context.Context, netip.Addr, string) error   { return nil }

func init() {
	ptr.Register(ptr.Kind{
		Name:       "test-nop",
		Attributes: []ptr.Attribute{{Name: "token", Required: true, Doc: "a token"}, {Name: "endpoint", Doc: "URL"}},
		New:        func(ptr.Config) (ptr.Provider, error) { return nopProvider{}, nil },
	})
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, kind string
		attrs      map[string]string
		want       error
		msg        string
	}{
		{"ok", "test-nop", map[string]string{"token": "x"}, nil, ""},
		{"unknown kind", "nope", nil, ptr.ErrUnknownKind, "test-nop"},
		{"missing", "test-nop", map[string]string{"endpoint": "u"}, ptr.ErrConfig, `needs attribute "token" (a token)`},
		{"unknown attribute", "test-nop", map[string]string{"token": "x", "zone": "y"}, ptr.ErrConfig, `no attribute "zone"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ptr.New(tc.kind, ptr.Config{Attrs: tc.attrs})
			if !errors.Is(err, tc.want) || (tc.want != nil && !strings.Contains(err.Error(), tc.msg)) {
				t.Fatalf("New(%s, %v) = %v, want %v saying %q", tc.kind, tc.attrs, err, tc.want, tc.msg)
			}
		})
	}
}

func TestHostname(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, canonical string
		ok            bool
	}{
		{"MX1.Example.ORG.", "mx1.example.org", true},
		{" mx1.example.org ", "mx1.example.org", true},
		{"", "", true},
		{"localhost", "localhost", false},
		{"a..example.org", "a..example.org", false},
		{"mx 1.example.org", "mx 1.example.org", false},
		{strings.Repeat("a", 64) + ".org", strings.Repeat("a", 64) + ".org", false},
	} {
		if got := ptr.Canonical(tc.in); got != tc.canonical {
			t.Errorf("Canonical(%q) = %q, want %q", tc.in, got, tc.canonical)
		}
		if err := ptr.CheckHostname(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckHostname(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestAPIError(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	for _, tc := range []struct {
		e    *ptr.APIError
		is   error
		want string
	}{
		{&ptr.APIError{Provider: "x", Op: "set", Status: http.StatusUnauthorized, Credential: "token"}, ptr.ErrAuth, "x: set: the token was refused (HTTP 401)"},
		{&ptr.APIError{Provider: "x", Op: "set", Status: http.StatusForbidden, Credential: "token", Permission: "Write"}, ptr.ErrAuth, "lacks a permission (HTTP 403): it needs Write"},
		{&ptr.APIError{Provider: "x", Op: "get", Status: http.StatusNotFound, Message: "gone"}, ptr.ErrNotFound, "x: get: HTTP 404: gone"},
		{&ptr.APIError{Provider: "x", Op: "get", Err: cause}, cause, "x: get: boom"},
		{&ptr.APIError{Provider: "x", Op: "find", Message: "not held", Err: ptr.ErrNotFound}, ptr.ErrNotFound, "x: find: not held"},
	} {
		if !errors.Is(tc.e, tc.is) || !strings.Contains(tc.e.Error(), tc.want) {
			t.Errorf("%#v: Error() = %q, errors.Is(%v) = %v; want %q", tc.e, tc.e.Error(), tc.is, errors.Is(tc.e, tc.is), tc.want)
		}
	}
}
