package plan

import "slices"

// sieveChanges returns an update of user.<address> for each user on both
// sides whose Sieve script is added, changed or removed: the configuration
// reload installs it.
func sieveChanges(server string, before *ServerState, after ServerState) []Change {
	var out []Change
	for _, u := range after.Users {
		if !slices.Contains(before.Users, u) {
			continue // created: its script comes with it
		}
		was, is := before.Sieve[u], after.Sieve[u]
		var note string
		switch {
		case was == is:
			continue
		case was == "":
			note = "sieve script added"
		case is == "":
			note = "sieve script removed"
		default:
			note = "sieve script changed"
		}
		out = append(out, Change{Address: "user." + u, Type: KindUser, Action: Update,
			Notes: []string{note + " on " + server + " (reload)"}})
	}
	return out
}
