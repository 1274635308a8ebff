package config

import (
	"errors"
	"strings"

	"github.com/mailctl/mailctl/server/auth"
)

// International domain names and addresses (RFC 5890, RFC 6531) in the
// configuration: "domain \"bücher.example\"" and "user \"δοκιμή@…\"" are
// accepted. Everything after loading holds the ASCII form (A-labels,
// "xn--…"), which is what DNS records, provider calls and zone files need
// and what the server compares; Domain.Display gives the U-labels back for
// people. The conversion is server/auth's (golang.org/x/net/idna).

// idnDomain returns the A-label form of a domain name written with
// U-labels or with A-labels (checked to be valid IDNA), lower-cased and
// without trailing dot. Plain ASCII names without "xn--" are returned as
// they are, for the usual checks.
func idnDomain(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if auth.IsASCII(s) && !strings.Contains(s, "xn--") {
		return s, nil
	}
	a, err := auth.ParseDomain(s)
	if err != nil {
		return s, oneLine(err)
	}
	return a, nil
}

// idnAddress returns an address with a non-ASCII local part or domain in
// its canonical form (local part NFC and lower case, domain in A-labels).
func idnAddress(s string) (string, error) {
	s = strings.ToLower(s)
	if auth.IsASCII(s) && !strings.Contains(s, "xn--") {
		return s, nil
	}
	if strings.HasPrefix(s, "@") {
		d, err := idnDomain(s[1:])
		return "@" + d, err
	}
	a, err := auth.ParseAddress(s)
	if err != nil {
		return s, oneLine(err)
	}
	return a.String(), nil
}

// oneLine keeps an error's text on one line without the library's prefix.
func oneLine(err error) error {
	if err == nil {
		return errors.New("invalid")
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if i := strings.LastIndex(msg, "\": "); i >= 0 && strings.HasPrefix(msg, "auth: bad address") {
		msg = msg[i+3:] // auth: bad address "x": the reason
	}
	msg = strings.TrimPrefix(msg, "invalid international domain name: ")
	msg = strings.ReplaceAll(msg, "idna: ", "")
	return errors.New(msg)
}

// Display is the domain's name for people: its U-labels, followed by the
// A-labels in parentheses when they differ ("bücher.example
// (xn--bcher-kva.example)").
func (d *Domain) Display() string { return DisplayName(d.Name) }

// DisplayName shows a name holding A-labels as U-labels, with the A-label
// form in parentheses; other names as they are.
func DisplayName(name string) string {
	u := auth.UnicodeDomain(name)
	if u == name {
		return name
	}
	return u + " (" + name + ")"
}
