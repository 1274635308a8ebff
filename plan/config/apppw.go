package config

import (
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/mailctl/mailctl/server/auth"
)

// AppPassword is an `app_password "<name>"` block of a user: a
// per-device password, revoked by deleting the block.
type AppPassword struct {
	Name string
	// Hash is what `mailctl passwd -app` prints; always sensitive.
	Hash Value
	// Scopes are among "imap", "smtp" and "dav"; default all.
	Scopes    []string
	DeclRange hcl.Range
}

// userCredentialAttrs and userCredentialBlocks are the user block's
// credential settings beside password_hash.
var (
	userCredentialAttrs  = []hcl.AttributeSchema{{Name: "password_scopes"}}
	userCredentialBlocks = []hcl.BlockHeaderSchema{{Type: "app_password", LabelNames: []string{"name"}}}
)

// userCredentials decodes password_scopes and the app_password blocks of
// user u.
func (d *decoder) userCredentials(u *User, c *hcl.BodyContent) {
	if a := c.Attributes["password_scopes"]; a != nil {
		scopes := d.strList(a)
		if scopes == nil {
			scopes = []string{}
		}
		d.checkScopes(a.Expr.Range().Ptr(), scopes)
		u.PasswordScopes = scopes
	}
	seen := map[string]hcl.Range{}
	for _, b := range c.Blocks.OfType("app_password") {
		ap := &AppPassword{Name: b.Labels[0], DeclRange: b.DefRange, Scopes: slices.Clone(auth.Scopes)}
		if !auth.ValidAppPasswordName(ap.Name) {
			d.errf(b.LabelRanges[0].Ptr(), "Invalid app password name", "%q must be 1 to 40 letters, digits, '.', '_' or '-' (it names the device in the logs).", ap.Name)
		} else if prev, dup := seen[strings.ToLower(ap.Name)]; dup {
			d.errf(b.LabelRanges[0].Ptr(), "Duplicate app password", "%s already has an app password %q (at %s).", u.Address, ap.Name, prev)
		}
		seen[strings.ToLower(ap.Name)] = b.DefRange
		bc, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "hash", Required: true}, {Name: "scopes"}}})
		d.diags = append(d.diags, diags...)
		if a := bc.Attributes["hash"]; a != nil {
			if v, ok := d.str(a); ok {
				ap.Hash = Value{Str: v.Str, Sensitive: true}
				if p, _, _, err := auth.ParseHash(v.Str); err != nil {
					d.errf(a.Expr.Range().Ptr(), "Invalid app password hash",
						"hash must be an argon2id hash ($argon2id$v=19$m=...,t=...,p=...$salt$key); make one with 'mailctl passwd -app %s'.", ap.Name)
				} else if p.Memory > 4*auth.AppParams.Memory || p.Time > 4*auth.AppParams.Time {
					d.warnf(a.Expr.Range().Ptr(), "Costly app password hash",
						"This hash (m=%d,t=%d) was not made by 'mailctl passwd -app': app passwords are 16 random letters hashed cheaply, and only a password of that form is tried against them. Run 'mailctl passwd -app %s' and use what it prints.", p.Memory, p.Time, ap.Name)
				}
			}
		}
		if a := bc.Attributes["scopes"]; a != nil {
			ap.Scopes = d.strList(a)
			if len(ap.Scopes) == 0 && !d.diags.HasErrors() {
				d.errf(a.Expr.Range().Ptr(), "No scopes", "The app password %q needs at least one scope of %s.", ap.Name, strings.Join(auth.Scopes, ", "))
			}
			d.checkScopes(a.Expr.Range().Ptr(), ap.Scopes)
		}
		u.AppPasswords = append(u.AppPasswords, ap)
	}
	if len(u.AppPasswords) > auth.MaxAppPasswords {
		d.errf(u.AppPasswords[auth.MaxAppPasswords].DeclRange.Ptr(), "Too many app passwords",
			"%s has %d app passwords, at most %d (a password is tried against each).", u.Address, len(u.AppPasswords), auth.MaxAppPasswords)
	}
	if u.PasswordScopes != nil {
		// Mail only: a user may well have no calendar client.
		for _, s := range []string{auth.ScopeIMAP, auth.ScopeSMTP} {
			if slices.Contains(u.PasswordScopes, s) || slices.ContainsFunc(u.AppPasswords, func(ap *AppPassword) bool { return slices.Contains(ap.Scopes, s) }) {
				continue
			}
			d.warnf(c.Attributes["password_scopes"].Expr.Range().Ptr(), "No "+s+" login",
				"%s cannot log in to %s: its password_scopes leave %s out and no app_password has it.", u.Address, strings.ToUpper(s), s)
		}
	}
}

func (d *decoder) checkScopes(rng *hcl.Range, scopes []string) {
	for _, s := range scopes {
		if !slices.Contains(auth.Scopes, s) {
			d.errf(rng, "Invalid scope", "%q is not a scope: want %s.", s, strings.Join(auth.Scopes, ", "))
		}
	}
}
