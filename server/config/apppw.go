package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mailctl/mailctl/server/auth"
)

// AppPassword is a per-device password of a user (auth.AppPassword).
type AppPassword struct {
	Name string `json:"name"`
	// Hash is the argon2id PHC string that `mailctl passwd -app` prints.
	Hash string `json:"hash"`
	// Scopes are among "imap" and "smtp"; at least one.
	Scopes []string `json:"scopes"`
}

// validateCredentials checks a user's password scopes and app passwords.
func validateCredentials(p *problems, field string, u User) {
	if u.PasswordScopes != nil {
		checkScopes(p, field+".password_scopes", *u.PasswordScopes)
	}
	if len(u.AppPasswords) > auth.MaxAppPasswords {
		p.add(field+".app_passwords", "%d app passwords, at most %d", len(u.AppPasswords), auth.MaxAppPasswords)
	}
	seen := map[string]bool{}
	for i, ap := range u.AppPasswords {
		af := fmt.Sprintf("%s.app_passwords[%d]", field, i)
		if !auth.ValidAppPasswordName(ap.Name) {
			p.add(af+".name", "%q is not 1 to 40 letters, digits, '.', '_' or '-'", ap.Name)
		} else if seen[strings.ToLower(ap.Name)] {
			p.add(af+".name", "%q is duplicated", ap.Name)
		}
		seen[strings.ToLower(ap.Name)] = true
		if _, _, _, err := auth.ParseHash(ap.Hash); err != nil {
			p.add(af+".hash", "%v", err)
		}
		if len(ap.Scopes) == 0 {
			p.add(af+".scopes", "needs at least one of %s", strings.Join(auth.Scopes, ", "))
		}
		checkScopes(p, af+".scopes", ap.Scopes)
	}
}

func checkScopes(p *problems, field string, scopes []string) {
	for i, s := range scopes {
		if !slices.Contains(auth.Scopes, s) {
			p.add(fmt.Sprintf("%s[%d]", field, i), "%q is not one of %s", s, strings.Join(auth.Scopes, ", "))
		}
	}
}

// authCredentials converts u's password scopes and app passwords.
func authCredentials(u User) (scopes []string, apps []auth.AppPassword) {
	if u.PasswordScopes != nil {
		scopes = append([]string{}, *u.PasswordScopes...)
	}
	for _, ap := range u.AppPasswords {
		apps = append(apps, auth.AppPassword{Name: ap.Name, Hash: ap.Hash, Scopes: ap.Scopes})
	}
	return scopes, apps
}

// Delimiter returns the recipient delimiter in effect.
func (c *Config) Delimiter() string {
	if c.RecipientDelimiter == nil {
		return auth.DefaultRecipientDelimiter
	}
	return *c.RecipientDelimiter
}

// Credentials fingerprints what logs u in: its password hash and
// password scopes, and each app password's hash and scopes by name. A
// fingerprint is 16 hex digits of a SHA-256: enough to tell a change,
// useless to guess a password (it hashes argon2id hashes).
func (u User) Credentials() (password string, apps map[string]string) {
	password = fingerprint(u.PasswordHash, u.PasswordScopes)
	for _, ap := range u.AppPasswords {
		if apps == nil {
			apps = map[string]string{}
		}
		apps[ap.Name] = fingerprint(ap.Hash, &ap.Scopes)
	}
	return password, apps
}

func fingerprint(hash string, scopes *[]string) string {
	b, err := json.Marshal(struct {
		Hash   string    `json:"h"`
		Scopes *[]string `json:"s"`
	}{hash, scopes})
	if err != nil {
		panic(fmt.Sprintf("config: marshal credentials: %v", err)) // plain data cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
