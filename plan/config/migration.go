package config

import (
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Migration phases, in the order a cut-over goes through them.
const (
	PhasePresync = "presync"
	PhaseCutover = "cutover"
	PhaseDone    = "done"
)

// Default source of a migration: Gmail / Google Workspace over implicit TLS.
const DefaultMigrationSource = "imap.gmail.com:993"

// DefaultMigrationExclude are the source folders not copied when exclude
// is not set: Gmail's virtual views of messages that are in other folders.
var DefaultMigrationExclude = []string{"[Gmail]/Important", "[Gmail]/Starred"}

// Migration is a `migration "<name>"` block: mailboxes imported over IMAP
// from another provider (Google Workspace by default) and the DNS cut-over
// of its domains, by phase.
type Migration struct {
	Name  string
	Phase string // "presync" (default), "cutover", "done"
	// Domains whose DNS cuts over; default: the domains of Users.
	Domains []string
	Source  MigrationEndpoint  // Address default "imap.gmail.com:993", TLS default "implicit"
	Target  *MigrationEndpoint // nil: each user's server at <hostname>:<imaps port>
	Users   []*MigrationUser
	// Folders maps source folder names to target folder names, on top of
	// the Gmail defaults.
	Folders map[string]string
	// Exclude lists source folders not copied; "X/*" excludes a subtree.
	// Default DefaultMigrationExclude.
	Exclude []string
	// Duplicates copies a message with several labels into every label's
	// folder.
	Duplicates bool
	// DAV is the calendars and contacts part (migration_dav.go).
	DAV       MigrationDAV
	DeclRange hcl.Range
}

// MigrationEndpoint is an IMAP server of a migration.
type MigrationEndpoint struct {
	Address string // host:port
	TLS     string // "implicit" (default), "starttls", "none" (loopback only)
	CAFile  string // extra PEM roots, relative to the config directory; empty: system roots
}

// MigrationUser is one mailbox of a migration.
type MigrationUser struct {
	Address string // the target mailbox: a declared user
	Login   string // source login, default Address
	// Password (an app password) or TokenCommand (run through the shell,
	// prints an OAuth2 access token for XOAUTH2): exactly one is set.
	Password     Value
	TokenCommand string
	// TargetPassword logs in to the target server over IMAP.
	TargetPassword Value
	// SecretErrors are why Password or TargetPassword could not be read
	// (env() of an unset variable, an unreadable file()): only migrate
	// needs them, so they fail migrate alone, not the configuration.
	SecretErrors hcl.Diagnostics
	DeclRange    hcl.Range
}

// MigrationFor returns the migration that cuts over the domain, or nil.
func (c *Config) MigrationFor(domain string) *Migration {
	for _, m := range c.Migrations {
		for _, d := range m.Domains {
			if d == domain {
				return m
			}
		}
	}
	return nil
}

var migrationSchema = &hcl.BodySchema{
	Attributes: append([]hcl.AttributeSchema{{Name: "phase"}, {Name: "domains"}, {Name: "folders"}, {Name: "exclude"}, {Name: "duplicates"}}, davMigrationAttributes...),
	Blocks:     append([]hcl.BlockHeaderSchema{{Type: "source"}, {Type: "target"}, {Type: "user", LabelNames: []string{"address"}}}, davMigrationBlocks...),
}

func (d *decoder) migration(b *hcl.Block) {
	content, diags := b.Body.Content(migrationSchema)
	d.diags = append(d.diags, diags...)
	m := &Migration{Name: b.Labels[0], Phase: PhasePresync, DeclRange: b.DefRange,
		Source:  MigrationEndpoint{Address: DefaultMigrationSource, TLS: "implicit"},
		Exclude: append([]string(nil), DefaultMigrationExclude...)}
	if !hclIdent(m.Name) {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid migration name", "%q is not a valid name: use letters, digits, _ and -.", m.Name)
	}
	if a := content.Attributes["phase"]; a != nil {
		m.Phase = d.plainStr(a)
		if !oneOf(m.Phase, PhasePresync, PhaseCutover, PhaseDone) {
			d.errf(a.Expr.Range().Ptr(), "Invalid migration phase", "%q must be one of presync, cutover, done.", m.Phase)
		}
	}
	var domainsAttr *hcl.Attribute
	if a := content.Attributes["domains"]; a != nil {
		domainsAttr = a
		m.Domains = []string{}
		for _, dom := range d.strList(a) {
			dom = strings.ToLower(strings.TrimSuffix(dom, "."))
			if a, err := idnDomain(dom); err == nil {
				dom = a
			}
			if !validHostname(dom) {
				d.errf(a.Expr.Range().Ptr(), "Invalid domain name", "%q is not a domain name.", dom)
				continue
			}
			m.Domains = append(m.Domains, dom)
		}
	}
	if a := content.Attributes["folders"]; a != nil {
		m.Folders = d.strMap(a)
		for src, dst := range m.Folders {
			if strings.TrimSpace(src) == "" || strings.TrimSpace(dst) == "" {
				d.errf(a.Expr.Range().Ptr(), "Invalid folder mapping", "Folder names must not be empty (%q = %q).", src, dst)
			}
		}
	}
	if a := content.Attributes["exclude"]; a != nil {
		m.Exclude = []string{}
		for _, f := range d.strList(a) {
			if strings.TrimSpace(f) == "" || f == "*" {
				d.errf(a.Expr.Range().Ptr(), "Invalid exclusion", "%q must name a folder, or a subtree like \"Archive/*\".", f)
				continue
			}
			m.Exclude = append(m.Exclude, f)
		}
	}
	if a := content.Attributes["duplicates"]; a != nil {
		m.Duplicates = d.boolean(a)
	}
	d.migrationDAV(content, m)
	seen := map[string]*hcl.Block{}
	users := map[string]*MigrationUser{}
	for _, blk := range content.Blocks {
		switch blk.Type {
		case "source", "target":
			if prev, dup := seen[blk.Type]; dup {
				d.errf(blk.DefRange.Ptr(), "Duplicate block", "Only one %q block is allowed in a migration; another is at %s.", blk.Type, rangeString(prev.DefRange))
				continue
			}
			seen[blk.Type] = blk
			if blk.Type == "source" {
				d.migrationEndpoint(blk, &m.Source)
			} else {
				m.Target = &MigrationEndpoint{TLS: "implicit"}
				d.migrationEndpoint(blk, m.Target)
			}
		case "user":
			u := d.migrationUser(blk)
			if prev, dup := users[u.Address]; dup {
				d.errf(blk.DefRange.Ptr(), "Duplicate migration user", "The user %s is also migrated at %s.", u.Address, rangeString(prev.DeclRange))
				continue
			}
			users[u.Address] = u
			m.Users = append(m.Users, u)
		}
	}
	if len(m.Users) == 0 {
		d.errf(b.DefRange.Ptr(), "Migration without users", "The migration %q has no user block: add user \"ADDRESS\" { password = env(\"...\") target_password = env(\"...\") }.", m.Name)
	}
	if m.Domains == nil {
		set := map[string]bool{}
		for _, u := range m.Users {
			if at := strings.LastIndexByte(u.Address, '@'); at > 0 && !set[u.Address[at+1:]] {
				set[u.Address[at+1:]] = true
				m.Domains = append(m.Domains, u.Address[at+1:])
			}
		}
		sort.Strings(m.Domains)
	}
	d.migrationRanges[m] = domainsAttr
	for _, o := range d.cfg.Migrations {
		if o.Name == m.Name {
			d.errf(b.DefRange.Ptr(), "Duplicate migration", "The migration %q is also declared at %s.", m.Name, rangeString(o.DeclRange))
			return
		}
	}
	d.cfg.Migrations = append(d.cfg.Migrations, m)
}

func (d *decoder) migrationEndpoint(b *hcl.Block, e *MigrationEndpoint) {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "address"}, {Name: "tls"}, {Name: "ca_file"}}})
	d.diags = append(d.diags, diags...)
	addrAttr := c.Attributes["address"]
	if addrAttr != nil {
		e.Address = d.plainStr(addrAttr)
		if !validHostPort(e.Address) {
			d.errf(addrAttr.Expr.Range().Ptr(), "Invalid address", "%q is not a host:port address.", e.Address)
		}
	}
	if a := c.Attributes["tls"]; a != nil {
		e.TLS = d.plainStr(a)
		switch {
		case !oneOf(e.TLS, "implicit", "starttls", "none"):
			d.errf(a.Expr.Range().Ptr(), "Invalid TLS mode", "%q must be one of implicit, starttls, none.", e.TLS)
		case e.TLS == "none" && e.Address != "" && !loopbackHostPort(e.Address):
			d.errf(a.Expr.Range().Ptr(), "TLS required", `tls = "none" sends passwords in clear text: it is only allowed for a loopback address (127.0.0.1, ::1, localhost), not %q.`, e.Address)
		}
	}
	if a := c.Attributes["ca_file"]; a != nil {
		e.CAFile = d.plainStr(a)
	}
	if e.Address == "" && b.Type == "target" {
		d.errf(b.DefRange.Ptr(), "Missing required argument", `The target block needs an address ("host:port"); leave the block out to use each user's server.`)
	}
}

func (d *decoder) migrationUser(b *hcl.Block) *MigrationUser {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "login"}, {Name: "password"}, {Name: "oauth2_token_command"}, {Name: "target_password", Required: true},
	}})
	d.diags = append(d.diags, diags...)
	u := &MigrationUser{Address: strings.ToLower(b.Labels[0]), DeclRange: b.DefRange}
	u.Login = u.Address // the source's login as written
	if a, err := idnAddress(u.Address); err != nil {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid e-mail address", "%q is not a valid international address: %v.", b.Labels[0], err)
	} else if u.Address = a; !validMailbox(u.Address) {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid e-mail address", "%q is not an e-mail address like name@example.org.", b.Labels[0])
	}
	if a := c.Attributes["login"]; a != nil {
		u.Login = d.plainStr(a)
		if strings.TrimSpace(u.Login) == "" {
			d.errf(a.Expr.Range().Ptr(), "Invalid login", "The source login must not be empty.")
		}
	}
	pw, tok := c.Attributes["password"], c.Attributes["oauth2_token_command"]
	if pw != nil {
		u.Password, _ = d.secret(pw, &u.SecretErrors)
		u.Password.Sensitive = true
	}
	if tok != nil {
		u.TokenCommand = d.plainStr(tok)
		if strings.TrimSpace(u.TokenCommand) == "" {
			d.errf(tok.Expr.Range().Ptr(), "Invalid token command", "oauth2_token_command must be a command that prints an access token.")
		}
	}
	if (pw == nil) == (tok == nil) {
		rng := b.DefRange.Ptr()
		if tok != nil {
			rng = tok.Range.Ptr()
		}
		d.errf(rng, "Invalid source login", "Set exactly one of password (an app password) or oauth2_token_command (XOAUTH2) for %s.", u.Address)
	}
	if a := c.Attributes["target_password"]; a != nil {
		u.TargetPassword, _ = d.secret(a, &u.SecretErrors)
		u.TargetPassword.Sensitive = true
	}
	return u
}

// secret reads a migration secret, its errors going to errs instead of
// the configuration's diagnostics: plan, apply and destroy do not need
// the source's credentials, only migrate does.
func (d *decoder) secret(a *hcl.Attribute, errs *hcl.Diagnostics) (Value, bool) {
	saved := d.diags
	d.diags = nil
	v, ok := d.str(a)
	*errs = append(*errs, d.diags...)
	d.diags = saved
	return v, ok
}

// validateMigrations checks what spans blocks: migrated users are declared
// users, domains are declared, one migration per domain.
func (d *decoder) validateMigrations() {
	c := d.cfg
	users := map[string]bool{}
	for _, u := range c.Users {
		users[u.Address] = true
	}
	domains := map[string]bool{}
	for _, dom := range c.Domains {
		domains[dom.Name] = true
	}
	owner := map[string]*Migration{}
	for _, m := range c.Migrations {
		for _, u := range m.Users {
			if validMailbox(u.Address) && !users[u.Address] {
				d.errf(u.DeclRange.Ptr(), "Unknown migration user", "%s is not a declared user: add a user %q block for the target mailbox.", u.Address, u.Address)
			}
		}
		rng := m.DeclRange.Ptr()
		if a := d.migrationRanges[m]; a != nil {
			rng = a.Expr.Range().Ptr()
		}
		for _, dom := range m.Domains {
			if !domains[dom] {
				d.errf(rng, "Migration of an undeclared domain", "The migration %q cuts over %s, which has no domain block.", m.Name, dom)
				continue
			}
			if o, dup := owner[dom]; dup {
				d.errf(rng, "Domain in two migrations", "The domain %s is already cut over by the migration %q at %s.", dom, o.Name, rangeString(o.DeclRange))
				continue
			}
			owner[dom] = m
		}
	}
}

// loopbackHostPort reports whether host:port names a loopback address.
func loopbackHostPort(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// strMap reads a map of strings (an object or map expression).
func (d *decoder) strMap(a *hcl.Attribute) map[string]string {
	v, _, ok := d.eval(a.Expr)
	if !ok {
		return nil
	}
	mv, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil || mv.IsNull() {
		d.errf(a.Expr.Range().Ptr(), "Incorrect attribute value type", "The attribute %q must be a map of strings, like { \"Old/Name\" = \"New\" }.", a.Name)
		return nil
	}
	out := map[string]string{}
	for it := mv.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if e.IsNull() {
			d.errf(a.Expr.Range().Ptr(), "Invalid value", "The attribute %q must not contain null.", a.Name)
			return nil
		}
		out[k.AsString()] = e.AsString()
	}
	return out
}
