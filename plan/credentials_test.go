package plan_test

import (
	"strings"
	"testing"

	"github.com/mailctl/mailctl/plan"
)

// TestDiffServerCredentials: a user whose password, password scopes or
// app passwords change is an update of user.<address> naming the app
// passwords added, changed and revoked, never a fingerprint or hash; an
// older server that reports no credentials gives no such change.
func TestDiffServerCredentials(t *testing.T) {
	t.Parallel()
	users := []string{"alice@example.org", "bob@example.org", "carol@example.org"}
	before := &plan.ServerState{Release: "1-abc", ConfigDigest: "aaaa", Running: true, Users: users,
		Credentials: map[string]plan.UserCredentials{
			"alice@example.org": {Password: "p-alice", AppPasswords: map[string]string{"phone": "f-phone", "tablet": "f-tablet"}},
			"bob@example.org":   {Password: "p-bob"},
			"carol@example.org": {Password: "p-carol", AppPasswords: map[string]string{"phone": "f-carol"}},
		}}
	after := plan.ServerState{Release: "1-abc", ConfigDigest: "bbbb", Running: true, Users: users,
		Credentials: map[string]plan.UserCredentials{
			"alice@example.org": {Password: "p-alice", AppPasswords: map[string]string{"tablet": "f-tablet2", "laptop": "f-laptop"}},
			"bob@example.org":   {Password: "p-bob2"},
			"carol@example.org": {Password: "p-carol", AppPasswords: map[string]string{"phone": "f-carol"}},
		}}
	var got []string
	for _, c := range plan.DiffServer("mx1", before, after)[1:] {
		got = append(got, string(c.Action)+" "+c.Address+": "+strings.Join(c.Notes, "; "))
	}
	want := []string{
		"~ user.alice@example.org: app password laptop added; app password tablet changed; app password phone revoked; on server.mx1 (reload)",
		"~ user.bob@example.org: password or password_scopes changed; on server.mx1 (reload)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, g := range got {
		if strings.Contains(g, "f-") || strings.Contains(g, "p-") {
			t.Errorf("a fingerprint is shown: %q", g)
		}
	}

	old := *before
	old.Credentials = nil
	if cs := plan.DiffServer("mx1", &old, after); len(cs) != 1 {
		t.Errorf("server without credentials: %d changes, want only the server's", len(cs))
	}
}
