// Package formatversion is the one type of the format_version field that
// every JSON document of mailctl carries: the plan (plan -json, show
// -json, saved plans), validate -json, verify -json, preflight -json, the
// server's configuration file (server.json) and its status (serve status
// -json). See docs/json.md.
//
// A version is a string "MAJOR.MINOR": a reader accepts any minor version
// of the major it knows (fields are only added within a major version).
// Older server.json files and server status documents carried the integer
// 1; it reads as "1.0".
package formatversion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Version is a format_version value.
type Version string

// Current is the version every document is written with.
const Current Version = "1.0"

// Major is the part before the dot ("1" of "1.0").
func (v Version) Major() string {
	major, _, _ := strings.Cut(string(v), ".")
	return major
}

// Compatible reports whether a reader of Current can read v: same major
// version.
func (v Version) Compatible() bool { return v != "" && v.Major() == Current.Major() }

// UnmarshalJSON reads a string, or the integer N of older documents as
// "N.0".
func (v *Version) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = Version(s)
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("format_version %s is neither a string like \"1.0\" nor an integer", b)
	}
	*v = Version(fmt.Sprintf("%d.0", n))
	return nil
}
