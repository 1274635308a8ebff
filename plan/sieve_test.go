package plan_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan"
)

func TestDiffServerSieve(t *testing.T) {
	st := func(cfg string, sieve map[string]string) plan.ServerState {
		return plan.ServerState{Release: "1-abc", ConfigDigest: cfg, Running: true,
			Users: []string{"a@x.org", "b@x.org", "c@x.org"}, Sieve: sieve}
	}
	before := st("aaaa", map[string]string{"a@x.org": "11", "b@x.org": "22"})
	after := st("bbbb", map[string]string{"a@x.org": "11", "b@x.org": "33", "c@x.org": "44"})
	after.Users = append(after.Users, "d@x.org")
	after.Sieve["d@x.org"] = "55"
	var got []string
	for _, c := range plan.DiffServer("mx", &before, after)[1:] {
		got = append(got, c.Address+" "+string(c.Action)+" "+strings.Join(c.Notes, "; "))
	}
	want := []string{
		"user.d@x.org + mailbox on server.mx",
		"user.b@x.org ~ sieve script changed on server.mx (reload)",
		"user.c@x.org ~ sieve script added on server.mx (reload)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	before.Sieve = map[string]string{"a@x.org": "11"}
	after = st("cccc", nil)
	out := plan.DiffServer("mx", &before, after)
	if len(out) != 2 || out[1].Notes[0] != "sieve script removed on server.mx (reload)" {
		t.Errorf("removal: %+v", out)
	}
}

// TestDiffServerUserOnce: a user whose app passwords and Sieve script both
// change is one change of user.ADDRESS with both notes, not two changes of
// one address.
func TestDiffServerUserOnce(t *testing.T) {
	st := func(cfg, sieve, app string) plan.ServerState {
		return plan.ServerState{Release: "1-abc", ConfigDigest: cfg, Running: true, Users: []string{"a@x.org"},
			Sieve:       map[string]string{"a@x.org": sieve},
			Credentials: map[string]plan.UserCredentials{"a@x.org": {Password: "p1", AppPasswords: map[string]string{"phone": app}}}}
	}
	before, after := st("aaaa", "11", "f1"), st("bbbb", "22", "f2")
	var users []string
	for _, c := range plan.DiffServer("mx", &before, after) {
		if strings.HasPrefix(c.Address, "user.") {
			users = append(users, c.Address+" "+strings.Join(c.Notes, "; "))
		}
	}
	want := "user.a@x.org app password phone changed; on server.mx (reload); sieve script changed on server.mx (reload)"
	if len(users) != 1 || users[0] != want {
		t.Errorf("user changes %q, want one: %q", users, want)
	}
}
