package plan

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	serverconfig "github.com/mailctl/mailctl/server/config"
)

// ServerState is what mailctl reads back from, or wants on, a server: the
// release running, the digest of its configuration and its users.
type ServerState struct {
	// Release is the installed release id, "<version>-<sha256 prefix>".
	Release      string   `json:"release"`
	ConfigDigest string   `json:"config_digest"`
	Users        []string `json:"users"`
	// Running is false when the release is installed but the service is
	// not running (crashed, stopped).
	Running bool `json:"running"`
	// RestartDigests digest each setting that only a restart applies
	// (listen, hostname, limits, ...): of the configuration the running
	// server started with, or of the one to install. Nil when unknown.
	RestartDigests map[string]string `json:"restart_digests,omitempty"`
	// Credentials are the users' credential fingerprints, by address; nil
	// when the server does not report them (an older release).
	Credentials map[string]UserCredentials `json:"-"`
}

// UserCredentials fingerprints what logs a user in (server/config
// User.Credentials), without any hash.
type UserCredentials struct {
	Password     string            `json:"password"`
	AppPasswords map[string]string `json:"app_passwords,omitempty"`
}

// RestartSettings names the settings that only a restart applies and that
// differ between what the server runs with (s) and the wanted state: a
// configuration change that needs a restart rather than a reload. Nil when
// the server did not report its settings.
func (s *ServerState) RestartSettings(want ServerState) []string {
	if s == nil || want.RestartDigests == nil {
		return nil
	}
	return serverconfig.RestartSettings(s.RestartDigests, want.RestartDigests)
}

// DiffServer returns the changes of one server: the server resource itself
// (binary, configuration) and one user.<address> resource per user added
// or removed. before is nil for a server mailctl has not deployed yet.
func DiffServer(name string, before *ServerState, after ServerState) []Change {
	addr := "server." + name
	c := Change{Address: addr, Type: KindServer, Server: &ServerChange{After: &after}}
	switch {
	case before == nil:
		c.Action = Create
		c.Notes = append(c.Notes, "install release "+after.Release+", write the configuration, start the service")
	default:
		c.Server.Before = before
		if before.Release != after.Release {
			c.Action = Update
			c.Notes = append(c.Notes, fmt.Sprintf("release: %s -> %s (restart)", or(before.Release, "none"), after.Release))
		}
		restart := before.RestartSettings(after)
		switch {
		case before.ConfigDigest != after.ConfigDigest && len(restart) > 0 && before.Release == after.Release && before.Running:
			c.Action = Update
			c.Notes = append(c.Notes, fmt.Sprintf("configuration: %s -> %s (restart: %s changed, a reload does not apply it)",
				short(before.ConfigDigest), short(after.ConfigDigest), strings.Join(restart, ", ")))
		case before.ConfigDigest != after.ConfigDigest:
			c.Action = Update
			c.Notes = append(c.Notes, fmt.Sprintf("configuration: %s -> %s (reload)", short(before.ConfigDigest), short(after.ConfigDigest)))
		case len(restart) > 0 && before.Release == after.Release && before.Running:
			c.Action = Update
			c.Notes = append(c.Notes, fmt.Sprintf("the service still runs with its former %s (reloaded since): restart", strings.Join(restart, ", ")))
		}
		if !before.Running {
			c.Action = Update
			c.Notes = append(c.Notes, "the service is not running: start it")
		}
	}
	out := []Change{c}
	if before != nil && !before.Running {
		// A server that does not run cannot tell its users: they are
		// unknown, not absent (planning them as created would be untrue).
		c.Notes = append(c.Notes, "its users and DKIM keys are unknown until it runs")
		out[0] = c
		return out
	}
	var had []string
	if before != nil {
		had = before.Users
	}
	for _, u := range after.Users {
		if !slices.Contains(had, u) {
			out = append(out, Change{Address: "user." + u, Type: KindUser, Action: Create,
				Notes: []string{"mailbox on " + addr}})
		}
	}
	for _, u := range had {
		if !slices.Contains(after.Users, u) {
			out = append(out, Change{Address: "user." + u, Type: KindUser, Action: Delete,
				Notes: []string{"login removed from " + addr + "; the stored mail is kept"}})
		}
	}
	if before != nil {
		out = append(out, credentialChanges(addr, before.Credentials, after.Credentials)...)
	}
	return out
}

// credentialChanges are the users whose password, password scopes or app
// passwords change, app passwords by name, never a hash. Users the server
// does not report credentials of are left out.
func credentialChanges(addr string, before, after map[string]UserCredentials) []Change {
	var out []Change
	for _, u := range slices.Sorted(maps.Keys(after)) {
		b, ok := before[u]
		a := after[u]
		if !ok || b.Password == "" {
			continue
		}
		var notes []string
		if b.Password != a.Password {
			notes = append(notes, "password or password_scopes changed")
		}
		for _, n := range slices.Sorted(maps.Keys(a.AppPasswords)) {
			switch old, had := b.AppPasswords[n]; {
			case !had:
				notes = append(notes, "app password "+n+" added")
			case old != a.AppPasswords[n]:
				notes = append(notes, "app password "+n+" changed")
			}
		}
		for _, n := range slices.Sorted(maps.Keys(b.AppPasswords)) {
			if _, has := a.AppPasswords[n]; !has {
				notes = append(notes, "app password "+n+" revoked")
			}
		}
		if len(notes) > 0 {
			out = append(out, Change{Address: "user." + u, Type: KindUser, Action: Update,
				Notes: append(notes, "on "+addr+" (reload)")})
		}
	}
	return out
}

// ServerChange is the before/after of a server resource.
type ServerChange struct {
	Before *ServerState `json:"before"`
	After  *ServerState `json:"after"`
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return or(d, "none")
}

// ServerName returns the server name of a server.<name> or user address,
// or "".
func ServerName(addr string) string {
	if n, ok := strings.CutPrefix(addr, "server."); ok {
		return n
	}
	return ""
}
