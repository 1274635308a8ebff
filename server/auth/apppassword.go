package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Scopes name the protocols a credential may log in to.
const (
	// ScopeIMAP is IMAP LOGIN and AUTHENTICATE (ports 143 and 993).
	ScopeIMAP = "imap"
	// ScopeSMTP is SMTP AUTH on submission (ports 587 and 465).
	ScopeSMTP = "smtp"
	// ScopeDAV is HTTP Basic authentication on CalDAV and CardDAV
	// (/dav/ on the HTTPS port).
	ScopeDAV = "dav"
)

// Scopes lists every scope, in the order documentation shows them.
var Scopes = []string{ScopeIMAP, ScopeSMTP, ScopeDAV}

// scopeSet is a set of scopes as bits; allScopes is every scope.
type scopeSet uint8

var allScopes = scopeSet(1<<len(Scopes) - 1)

func scopeBit(s string) (scopeSet, bool) {
	for i, n := range Scopes {
		if s == n {
			return 1 << i, true
		}
	}
	return 0, false
}

// parseScopes converts scope names; nil means every scope.
func parseScopes(names []string) (scopeSet, error) {
	if names == nil {
		return allScopes, nil
	}
	var set scopeSet
	for _, n := range names {
		b, ok := scopeBit(n)
		if !ok {
			return 0, fmt.Errorf("unknown scope %q (want one of %s)", n, strings.Join(Scopes, ", "))
		}
		set |= b
	}
	return set, nil
}

// AppPassword is a per-device password of a user: it logs in to the
// protocols of Scopes only, and is revoked by removing it.
type AppPassword struct {
	// Name identifies the device in the logs ("phone").
	Name string
	// Hash is the argon2id PHC string of the normalised password
	// (NormalizeAppPassword); `mailctl passwd -app` prints it.
	Hash string
	// Scopes are among Scopes; at least one.
	Scopes []string
}

// MaxAppPasswords bounds a user's app passwords: a wrong password in the
// app password form is verified against each of them.
const MaxAppPasswords = 20

// App passwords are 16 random lower-case letters (26^16, about 75 bits),
// shown in groups of 4 like Google's ("abcd efgh ijkl mnop").
const (
	appPasswordLen   = 16
	appPasswordGroup = 4
)

// AppParams are the argon2id parameters of app password hashes: 256 KiB
// and one pass, about 1/150 of DefaultParams' work. Slow hashing protects
// guessable human passwords; a random 75-bit password cannot be guessed
// even at a billion tries a second, so a cheap hash loses nothing and
// lets a login try MaxAppPasswords of them for about an eighth of the
// cost of one main password check.
var AppParams = Params{Memory: 256, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// NormalizeAppPassword returns the canonical form of a typed app
// password (spaces removed, lower case) and whether it has the app
// password form (16 letters a-z). Only passwords of that form are tried
// against a user's app passwords, so that an ordinary wrong password
// costs one verification, not one per device.
func NormalizeAppPassword(pw string) (string, bool) {
	s := strings.ToLower(strings.ReplaceAll(pw, " ", ""))
	if len(s) != appPasswordLen {
		return s, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return s, false
		}
	}
	return s, true
}

// GenerateAppPassword returns a new random app password, grouped for
// display ("abcd efgh ijkl mnop"), and the hash of its normalised form
// under AppParams.
func GenerateAppPassword() (display, hash string, err error) {
	var b strings.Builder
	for i := 0; i < appPasswordLen; i++ {
		if i > 0 && i%appPasswordGroup == 0 {
			b.WriteByte(' ')
		}
		n, err := rand.Int(rand.Reader, big.NewInt(26))
		if err != nil {
			return "", "", fmt.Errorf("draw a random letter: %w", err)
		}
		b.WriteByte(byte('a' + n.Int64()))
	}
	display = b.String()
	norm, _ := NormalizeAppPassword(display)
	hash, err = HashPassword(norm, AppParams)
	if err != nil {
		return "", "", err
	}
	return display, hash, nil
}

// ValidAppPasswordName reports whether name can name an app password: 1
// to 40 letters, digits, '.', '_' or '-' (it is written in logs).
func ValidAppPasswordName(name string) bool {
	if name == "" || len(name) > 40 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// credential is one password that logs a user in: the main one (name "")
// or an app password.
type credential struct {
	name   string
	hash   string
	scopes scopeSet
}

// account is a user's credentials, the main password first.
type account struct {
	creds []credential
}

// find returns the credential named name with hash, or nil.
func (acc *account) find(name, hash string) *credential {
	if acc == nil {
		return nil
	}
	for i := range acc.creds {
		if acc.creds[i].name == name && acc.creds[i].hash == hash {
			return &acc.creds[i]
		}
	}
	return nil
}

// newAccount checks u's hashes, scopes and app password names.
func newAccount(u User) (*account, error) {
	if _, _, _, err := ParseHash(u.PasswordHash); err != nil {
		return nil, fmt.Errorf("password hash: %w", err)
	}
	main, err := parseScopes(u.PasswordScopes)
	if err != nil {
		return nil, fmt.Errorf("password scopes: %w", err)
	}
	acc := &account{creds: []credential{{hash: u.PasswordHash, scopes: main}}}
	if len(u.AppPasswords) > MaxAppPasswords {
		return nil, fmt.Errorf("%d app passwords, at most %d", len(u.AppPasswords), MaxAppPasswords)
	}
	seen := map[string]bool{}
	var errs []error
	for _, ap := range u.AppPasswords {
		if !ValidAppPasswordName(ap.Name) {
			errs = append(errs, fmt.Errorf("app password name %q: want 1 to 40 letters, digits, '.', '_' or '-'", ap.Name))
			continue
		}
		if seen[strings.ToLower(ap.Name)] {
			errs = append(errs, fmt.Errorf("app password %q: duplicated name", ap.Name))
			continue
		}
		seen[strings.ToLower(ap.Name)] = true
		if _, _, _, err := ParseHash(ap.Hash); err != nil {
			errs = append(errs, fmt.Errorf("app password %q: hash: %w", ap.Name, err))
			continue
		}
		if len(ap.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("app password %q: no scopes", ap.Name))
			continue
		}
		s, err := parseScopes(ap.Scopes)
		if err != nil {
			errs = append(errs, fmt.Errorf("app password %q: %w", ap.Name, err))
			continue
		}
		acc.creds = append(acc.creds, credential{name: ap.Name, hash: ap.Hash, scopes: s})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return acc, nil
}
