package auth

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadAddress is wrapped by every ParseAddress and ParseDomain error.
var ErrBadAddress = errors.New("auth: bad address")

// Address is a parsed, normalised (lower-case) mail address.
type Address struct {
	Local  string // empty for a "@domain" catch-all pattern
	Domain string
}

// String returns "local@domain".
func (a Address) String() string { return a.Local + "@" + a.Domain }

// Limits from RFC 5321 section 4.5.3.1.
const (
	maxLocalLen  = 64
	maxDomainLen = 253
	maxLabelLen  = 63
)

// ParseAddress parses a mailbox address strictly, as this server accepts it
// in an envelope (RFC 5321 Mailbox restricted to a dot-atom local part and a
// domain name) and returns it lower-cased. It refuses everything that has
// been used to trick a mail server into relaying or into matching an address
// it should not:
//
//   - more than one "@" (user@domain@other, quoted local parts holding "@"),
//   - "%" (the percent hack) and "!" (UUCP bang paths) in the local part,
//   - ":" and "," (source routes), quotes, backslashes, spaces, controls,
//   - in a UTF-8 local part (SMTPUTF8, RFC 6531): invalid UTF-8, controls,
//     spaces, invisible format characters, private-use and unassigned code
//     points (see normLocalUTF8); it is returned in NFC,
//   - empty, leading, trailing or doubled dots in either part,
//   - address literals (user@[192.0.2.1]) and trailing dots in the domain,
//   - single-label domains and labels that are not letters-digits-hyphens
//     once converted to A-labels (ParseDomain).
//
// Whether a non-ASCII address may be used at all (SMTPUTF8 given) is the
// caller's decision: see IsASCII.
func ParseAddress(s string) (Address, error) {
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return Address{}, fmt.Errorf("%w %q: no @", ErrBadAddress, s)
	}
	if strings.IndexByte(s[at+1:], '@') >= 0 {
		return Address{}, fmt.Errorf("%w %q: more than one @", ErrBadAddress, s)
	}
	local, domain := s[:at], s[at+1:]
	if !IsASCII(local) {
		n, err := normLocalUTF8(local)
		if err != nil {
			return Address{}, fmt.Errorf("%w %q: %v", ErrBadAddress, s, err)
		}
		local = n
	}
	if err := checkLocal(local); err != nil {
		return Address{}, fmt.Errorf("%w %q: %v", ErrBadAddress, s, err)
	}
	d, err := ParseDomain(domain)
	if err != nil {
		return Address{}, fmt.Errorf("%w %q: %v", ErrBadAddress, s, err)
	}
	return Address{Local: strings.ToLower(local), Domain: d}, nil
}

// ParsePattern parses an alias address: a mailbox, or "@domain" for a
// catch-all of that domain.
func ParsePattern(s string) (Address, error) {
	if strings.HasPrefix(s, "@") {
		d, err := ParseDomain(s[1:])
		if err != nil {
			return Address{}, fmt.Errorf("%w %q: %v", ErrBadAddress, s, err)
		}
		return Address{Domain: d}, nil
	}
	return ParseAddress(s)
}

func checkLocal(local string) error {
	switch {
	case local == "":
		return errors.New("empty local part")
	case len(local) > maxLocalLen:
		return fmt.Errorf("local part longer than %d", maxLocalLen)
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return errors.New("misplaced dot in local part")
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(".-_+=&'*/?^`{|}~#$", c) >= 0:
		case c == '%':
			return errors.New("% in local part (percent-hack relaying)")
		case c == '!':
			return errors.New("! in local part (bang path)")
		case c >= 0x80:
			// checked by normLocalUTF8
		default:
			return fmt.Errorf("character %q not allowed in local part", c)
		}
	}
	return nil
}

// ParseDomain checks a domain name (RFC 1035 letters-digits-hyphens labels,
// at least two of them, no trailing dot, no address literal) and returns it
// lower-cased. An internationalised domain (U-labels, RFC 5890) is returned
// in A-labels; A-labels must be valid IDNA 2008.
func ParseDomain(d string) (string, error) {
	if !IsASCII(d) && d != "" && d[0] != '[' {
		a, err := idnToASCII(d)
		if err != nil {
			return "", err
		}
		d = a
	}
	switch {
	case d == "":
		return "", errors.New("empty domain")
	case d[0] == '[':
		return "", errors.New("address literals are not accepted")
	case len(d) > maxDomainLen:
		return "", fmt.Errorf("domain longer than %d", maxDomainLen)
	case strings.HasSuffix(d, "."):
		return "", errors.New("trailing dot in domain")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", errors.New("domain needs at least two labels")
	}
	for _, l := range labels {
		if l == "" {
			return "", errors.New("empty label in domain")
		}
		if len(l) > maxLabelLen {
			return "", fmt.Errorf("label longer than %d in domain", maxLabelLen)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", errors.New("label starts or ends with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				if c >= 0x80 {
					return "", errors.New("non-ASCII character in domain (use punycode)")
				}
				return "", fmt.Errorf("character %q not allowed in domain", c)
			}
		}
	}
	last := labels[len(labels)-1]
	if allDigits(last) {
		return "", errors.New("domain looks like an IP address")
	}
	if err := checkALabels(d); err != nil {
		return "", err
	}
	return strings.ToLower(d), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
