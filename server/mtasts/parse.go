package mtasts

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxMaxAge is the largest max_age RFC 8461 section 3.2 allows (about a
// year), in seconds.
const MaxMaxAge = 31557600

// Mode says how strictly Parse reads a policy.
type Mode int

const (
	// Lenient is for a sender applying a domain's policy (server/queue):
	// a line that is not "key: value" is skipped, and max_age is capped at
	// MaxMaxAge, as RFC 8461 asks of senders.
	Lenient Mode = iota
	// Strict is for checking a policy (mailctl verify): a line that is not
	// "key: value" is an error, and max_age is returned as written.
	Strict
)

// Parsed is a parsed policy (RFC 8461 section 3.2).
type Parsed struct {
	Mode string // enforce, testing or none
	// MX are the mx patterns, lower case without a trailing dot, sorted.
	MX     []string
	MaxAge int // seconds
}

// ErrSyntax is wrapped by every error of Parse.
var ErrSyntax = errors.New("MTA-STS policy")

// Parse parses a policy text in mode m. In both modes the version must be
// STSv1, the mode one of enforce, testing and none, max_age a non-negative
// integer, and a policy other than none must name an mx; unknown keys are
// ignored (section 3.2: new fields may be added).
func Parse(body string, m Mode) (Parsed, error) {
	var p Parsed
	version := ""
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			if m == Lenient {
				continue
			}
			return p, fmt.Errorf("%w: line %q is not key: value", ErrSyntax, line)
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "version":
			version = v
		case "mode":
			p.Mode = v
		case "mx":
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(v, ".")))
		case "max_age":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return p, fmt.Errorf("%w: max_age %q is not a number", ErrSyntax, v)
			}
			if m == Lenient {
				n = min(n, MaxMaxAge)
			}
			p.MaxAge = n
		}
	}
	if version != "STSv1" {
		return p, fmt.Errorf("%w: version is %q, want STSv1", ErrSyntax, version)
	}
	if !slices.Contains([]string{"enforce", "testing", "none"}, p.Mode) {
		return p, fmt.Errorf("%w: mode %q is not enforce, testing or none", ErrSyntax, p.Mode)
	}
	if p.Mode != "none" && len(p.MX) == 0 {
		return p, fmt.Errorf("%w: no mx line", ErrSyntax)
	}
	slices.Sort(p.MX)
	return p, nil
}
