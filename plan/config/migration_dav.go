package config

import (
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Google's CalDAV and CardDAV endpoints: the default dav_source.
const (
	DefaultCalDAVSource  = "https://apidata.googleusercontent.com/caldav/v2/"
	DefaultCardDAVSource = "https://www.googleapis.com/carddav/v1/principals/"
)

// MigrationDAV is the calendars and contacts part of a migration: which
// kinds are copied (mail by default, calendars and contacts when asked)
// and from and to which CalDAV/CardDAV servers. The source logs in with
// the user's login and password or oauth2_token_command (a bearer token),
// the target with the user's address and target_password.
type MigrationDAV struct {
	Mail, Calendars, Contacts bool
	// Source defaults to Google's endpoints.
	Source DAVEndpoint
	// Target nil: each user's mailctl server, https://<hostname>/.
	Target *DAVEndpoint
}

// DAVEndpoint is a CalDAV and CardDAV server of a migration: the URLs
// where the discovery of the user's principal starts.
type DAVEndpoint struct {
	CalDAV, CardDAV string
	CAFile          string // extra PEM roots, relative to the config directory
}

var davMigrationAttributes = []hcl.AttributeSchema{{Name: "mail"}, {Name: "calendars"}, {Name: "contacts"}}

var davMigrationBlocks = []hcl.BlockHeaderSchema{{Type: "dav_source"}, {Type: "dav_target"}}

// migrationDAV reads mail, calendars, contacts, dav_source and dav_target.
func (d *decoder) migrationDAV(content *hcl.BodyContent, m *Migration) {
	m.DAV = MigrationDAV{Mail: true, Source: DAVEndpoint{CalDAV: DefaultCalDAVSource, CardDAV: DefaultCardDAVSource}}
	for name, p := range map[string]*bool{"mail": &m.DAV.Mail, "calendars": &m.DAV.Calendars, "contacts": &m.DAV.Contacts} {
		if a := content.Attributes[name]; a != nil {
			*p = d.boolean(a)
		}
	}
	if a := content.Attributes["mail"]; a != nil && !m.DAV.Mail && !m.DAV.Calendars && !m.DAV.Contacts {
		d.errf(a.Expr.Range().Ptr(), "Nothing to migrate", "The migration %q copies no mail, no calendars and no contacts: set calendars = true or contacts = true.", m.Name)
	}
	seen := map[string]*hcl.Block{}
	for _, blk := range content.Blocks {
		if blk.Type != "dav_source" && blk.Type != "dav_target" {
			continue
		}
		if prev, dup := seen[blk.Type]; dup {
			d.errf(blk.DefRange.Ptr(), "Duplicate block", "Only one %q block is allowed in a migration; another is at %s.", blk.Type, rangeString(prev.DefRange))
			continue
		}
		seen[blk.Type] = blk
		if blk.Type == "dav_source" {
			d.davEndpoint(blk, &m.DAV.Source)
		} else {
			m.DAV.Target = &DAVEndpoint{}
			d.davEndpoint(blk, m.DAV.Target)
		}
	}
}

func (d *decoder) davEndpoint(b *hcl.Block, e *DAVEndpoint) {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "caldav_url"}, {Name: "carddav_url"}, {Name: "url"}, {Name: "ca_file"}}})
	d.diags = append(d.diags, diags...)
	set := func(a *hcl.Attribute, dst ...*string) {
		if a == nil {
			return
		}
		v := d.plainStr(a)
		if msg := davURLProblem(v); msg != "" {
			d.errf(a.Expr.Range().Ptr(), "Invalid URL", "%q %s.", v, msg)
			return
		}
		for _, p := range dst {
			*p = v
		}
	}
	set(c.Attributes["url"], &e.CalDAV, &e.CardDAV)
	set(c.Attributes["caldav_url"], &e.CalDAV)
	set(c.Attributes["carddav_url"], &e.CardDAV)
	if a := c.Attributes["ca_file"]; a != nil {
		e.CAFile = d.plainStr(a)
	}
	if b.Type == "dav_target" && (e.CalDAV == "" || e.CardDAV == "") {
		d.errf(b.DefRange.Ptr(), "Missing required argument", `The dav_target block needs url (or caldav_url and carddav_url); leave the block out to use each user's server.`)
	}
}

// davURLProblem says what is wrong with a CalDAV/CardDAV URL, or "".
func davURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "is not an https:// URL"
	}
	if u.Scheme == "http" {
		host := u.Hostname()
		if ip := net.ParseIP(host); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
			return "sends passwords in clear text: http:// is only allowed for a loopback address (127.0.0.1, ::1, localhost)"
		}
	}
	return ""
}
