package auth

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// International addresses (RFC 6530-6533, "EAI"): the server keeps every
// domain in its ASCII form (A-labels, "xn--…", RFC 5890), which is what DNS
// and the directory compare, and local parts in UTF-8 normalised to NFC
// (RFC 6532 section 3.1), lower-cased like ASCII ones. golang.org/x/net/idna
// does the IDNA 2008 conversion (RFC 5891 section 5 lookup mapping, Bidi and
// joiner rules, DNS lengths); only the local-part rules are written here,
// since no library states which code points a mailbox may hold.

var (
	// idnLookup converts what a user or a client typed to A-labels.
	idnLookup = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.VerifyDNSLength(true))
	// idnDisplay converts A-labels back to U-labels for people.
	idnDisplay = idna.Display
)

// IsASCII reports whether s holds only ASCII bytes.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// UnicodeDomain returns d with its A-labels shown as U-labels
// ("xn--bcher-kva.example" becomes "bücher.example"); d itself when it is
// not a valid IDN.
func UnicodeDomain(d string) string {
	if !strings.Contains(strings.ToLower(d), "xn--") {
		return d
	}
	u, err := idnDisplay.ToUnicode(d)
	if err != nil {
		return d
	}
	return u
}

// Unicode returns the address with its domain in U-labels, for people
// (Address.String is the canonical A-label form).
func (a Address) Unicode() string { return a.Local + "@" + UnicodeDomain(a.Domain) }

// IsInternational reports whether the address needs SMTPUTF8 on the wire:
// a non-ASCII local part (an IDN domain can always be sent as A-labels).
func (a Address) IsInternational() bool { return !IsASCII(a.Local) }

// idnToASCII converts a domain holding U-labels to A-labels.
func idnToASCII(d string) (string, error) {
	if !utf8.ValidString(d) {
		return "", errors.New("domain is not valid UTF-8")
	}
	a, err := idnLookup.ToASCII(norm.NFC.String(d))
	if err != nil {
		return "", fmt.Errorf("invalid international domain name: %v", err)
	}
	return a, nil
}

// checkALabels makes sure every "xn--" label of an ASCII domain decodes to
// a valid U-label, so that no two spellings name the same domain.
func checkALabels(d string) error {
	if !strings.Contains(strings.ToLower(d), "xn--") {
		return nil
	}
	u, err := idnLookup.ToUnicode(strings.ToLower(d))
	if err != nil {
		return fmt.Errorf("invalid A-label (punycode) in domain: %v", err)
	}
	back, err := idnLookup.ToASCII(u)
	if err != nil || back != strings.ToLower(d) {
		return errors.New("the domain's A-label (punycode) is not in its normal form")
	}
	return nil
}

// normLocalUTF8 returns a non-ASCII local part in its normal form (NFC,
// lower case), or an error for what may not stand in one: invalid UTF-8,
// controls, spaces, format characters (zero-width joiners, bidi overrides:
// invisible, they make look-alikes), private-use and unassigned code points.
func normLocalUTF8(local string) (string, error) {
	if !utf8.ValidString(local) {
		return "", errors.New("local part is not valid UTF-8")
	}
	n := norm.NFC.String(strings.ToLower(norm.NFC.String(local)))
	for _, r := range n {
		switch {
		case r < utf8.RuneSelf:
		case unicode.IsControl(r), unicode.IsSpace(r), unicode.In(r, unicode.Cf, unicode.Co, unicode.Cs),
			!unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S):
			return "", fmt.Errorf("character %U not allowed in local part", r)
		}
	}
	return n, nil
}

// loginName is the user name a login gives, in the form users are kept
// in: lower case, and for an international address (a UTF-8 user name,
// RFC 9755 section 5, or "xn--" labels) the canonical form ParseAddress
// returns, so that either spelling of the domain logs in.
func loginName(username string) string {
	user := strings.ToLower(username)
	if IsASCII(user) && !strings.Contains(user, "xn--") {
		return user
	}
	if a, err := ParseAddress(username); err == nil {
		return a.String()
	}
	return user
}
