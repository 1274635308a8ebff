package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mailctl/mailctl/server/auth"
)

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func hclIdent(s string) bool { return identRe.MatchString(s) }

var labelRe = regexp.MustCompile(`^[a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validLabel reports whether s is one DNS label (LDH, underscore allowed
// first for service labels).
func validLabel(s string) bool { return labelRe.MatchString(strings.ToLower(s)) }

// validHostname reports whether s is a fully qualified host or domain name
// with at least two labels (RFC 1123), without trailing dot.
func validHostname(s string) bool { return validName(s, false) }

// validDomainName is validHostname that also allows labels starting with
// an underscore, as names that hold only records do (_spf.google.com, the
// include mailctl itself generates for a Google migration).
func validDomainName(s string) bool { return validName(s, true) }

func validName(s string, underscore bool) bool {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !labelRe.MatchString(l) || (!underscore && strings.HasPrefix(l, "_")) {
			return false
		}
	}
	// The top-level label is not all-numeric (that would be an IP address).
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return false
	}
	return true
}

var localPartRe = regexp.MustCompile(`^[a-z0-9!#$&'*+/=?^_{|}~-]+(\.[a-z0-9!#$&'*+/=?^_{|}~-]+)*$`)

// validMailbox reports whether s is an address local@domain with a dot-atom
// local part (no quoting, no %, no source routes) of at most 64 octets.
func validMailbox(s string) bool {
	if !auth.IsASCII(s) {
		// An international address (UTF-8 local part, RFC 6531): the
		// server's parser decides, its domain must already be A-labels.
		a, err := auth.ParseAddress(s)
		return err == nil && a.String() == s && validHostname(a.Domain)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at > 64 {
		return false
	}
	return localPartRe.MatchString(strings.ToLower(s[:at])) && validHostname(s[at+1:])
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

func validAuthorizedKey(s string) bool {
	_, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	return err == nil
}

func validArgon2id(s string) bool {
	_, _, _, err := auth.ParseHash(s)
	return err == nil
}

func validOVHEndpoint(s string) bool {
	switch s {
	case "ovh-eu", "ovh-ca", "ovh-us", "kimsufi-eu", "kimsufi-ca", "soyoustart-eu", "soyoustart-ca":
		return true
	}
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://127.0.0.1") || strings.HasPrefix(s, "http://localhost")
}

var sizeRe = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$`)

// parseSize parses sizes like "500MiB", "10GiB", "1.5GB" or "1024" (bytes).
func parseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, errors.New("not a size")
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]float64{"": 1, "B": 1,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	v := f * mult
	if v < 1 || v > 1<<50 {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return int64(v), nil
}

// parseDuration parses Go durations plus "d" (days) and "w" (weeks) and
// returns whole seconds.
func parseDuration(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, unit := strings.TrimRight(s, "dw"), strings.TrimLeft(s, "0123456789"); (unit == "d" || unit == "w") && n != "" {
		v, err := strconv.Atoi(n)
		if err != nil {
			return 0, err
		}
		if unit == "w" {
			v *= 7
		}
		return v * 86400, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return int(d / time.Second), nil
}

// placeholderSalt is the salt of PlaceholderPasswordHash: base64 of
// "mailctl-placehld".
const placeholderSalt = "bWFpbGN0bC1wbGFjZWhsZA"

// PlaceholderPasswordHash is the password_hash `mailctl init` writes until
// the user puts the output of `mailctl passwd` instead: a well-formed
// argon2id hash whose key is all zeros, which no password derives, so
// nobody can log in; its fixed salt lets validate recognise it and warn.
const PlaceholderPasswordHash = "$argon2id$v=19$m=65536,t=3,p=2$" + placeholderSalt + "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// IsPlaceholderHash reports whether hash is init's placeholder.
func IsPlaceholderHash(hash string) bool {
	return strings.Contains(hash, "$"+placeholderSalt+"$")
}
