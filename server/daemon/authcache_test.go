package daemon

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeAuth holds users and passwords and counts the checks it does.
type fakeAuth struct {
	users  map[string]string
	calls  int
	during func() // run inside Authenticate
}

var errBad = errors.New("bad credentials")

func (f *fakeAuth) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	f.calls++
	if f.during != nil {
		f.during()
	}
	u := strings.ToLower(username)
	if pw, ok := f.users[u]; ok && pw == password {
		return u, nil
	}
	return "", errBad
}

func TestAuthCache(t *testing.T) {
	ctx := context.Background()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	f := &fakeAuth{users: map[string]string{"alice@example.test": "pw"}}
	c := newAuthCache(f, time.Minute, 3)
	c.now = func() time.Time { return now }

	steps := []struct {
		name      string
		user, pw  string
		before    func()
		wantUser  string
		wantErr   bool
		wantCalls int // total calls to the real authenticator after the step
	}{
		{name: "first login is checked", user: "alice@example.test", pw: "pw", wantUser: "alice@example.test", wantCalls: 1},
		{name: "second login is cached", user: "alice@example.test", pw: "pw", wantUser: "alice@example.test", wantCalls: 1},
		{name: "any case of the user", user: "Alice@Example.TEST", pw: "pw", wantUser: "alice@example.test", wantCalls: 1},
		{name: "wrong password is checked", user: "alice@example.test", pw: "nope", wantErr: true, wantCalls: 2},
		{name: "and checked again", user: "alice@example.test", pw: "nope", wantErr: true, wantCalls: 3},
		{name: "password prefix does not match", user: "alice@example.test", pw: "p", wantErr: true, wantCalls: 4},
		{name: "expired entry is checked again", user: "alice@example.test", pw: "pw", before: func() { now = now.Add(2 * time.Minute) },
			wantUser: "alice@example.test", wantCalls: 5},
		{name: "reset (reload) forgets", user: "alice@example.test", pw: "pw", before: func() {
			f.users["alice@example.test"] = "new"
			c.Reset()
		}, wantErr: true, wantCalls: 6},
		{name: "new password works", user: "alice@example.test", pw: "new", wantUser: "alice@example.test", wantCalls: 7},
		{name: "new password cached", user: "alice@example.test", pw: "new", wantUser: "alice@example.test", wantCalls: 7},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before()
			}
			user, err := c.Authenticate(ctx, s.user, s.pw, remote)
			if (err != nil) != s.wantErr || user != s.wantUser {
				t.Errorf("Authenticate(%q, %q) = %q, %v; want %q, error %v", s.user, s.pw, user, err, s.wantUser, s.wantErr)
			}
			if f.calls != s.wantCalls {
				t.Errorf("authenticator called %d times, want %d", f.calls, s.wantCalls)
			}
		})
	}

	t.Run("a reset during a check is not undone", func(t *testing.T) {
		f.users["bob@example.test"] = "b"
		f.during = c.Reset
		if _, err := c.Authenticate(ctx, "bob@example.test", "b", remote); err != nil {
			t.Fatal(err)
		}
		f.during = nil
		calls := f.calls
		c.Authenticate(ctx, "bob@example.test", "b", remote)
		if f.calls != calls+1 {
			t.Error("a login checked across a reset was cached")
		}
	})

	t.Run("bounded", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			u := string(rune('a'+i)) + "@example.test"
			f.users[u] = "x"
			c.Authenticate(ctx, u, "x", remote)
			if len(c.entries) > 3 {
				t.Fatalf("%d entries, want at most 3", len(c.entries))
			}
		}
	})
}
