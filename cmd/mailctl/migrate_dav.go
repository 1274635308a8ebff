package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/migrate"
)

// davJob is the calendars and contacts part of a user's migration job, nil
// when the migration copies neither.
func davJob(cfg *config.Config, m *config.Migration, u *config.MigrationUser, login string) (*migrate.DAVJob, error) {
	if !m.DAV.Calendars && !m.DAV.Contacts {
		return nil, nil
	}
	target := m.DAV.Target
	if target == nil {
		url, err := davServerURL(cfg, m, u.Address)
		if err != nil {
			return nil, err
		}
		target = &config.DAVEndpoint{CalDAV: url, CardDAV: url}
	}
	return &migrate.DAVJob{
		Calendars:  m.DAV.Calendars,
		Contacts:   m.DAV.Contacts,
		Source:     davEndpoint(cfg, m.DAV.Source),
		SourceAuth: migrate.Credentials{Username: login, Password: u.Password.Str, TokenCommand: u.TokenCommand, TokenDir: cfg.Dir},
		Target:     davEndpoint(cfg, *target),
		TargetAuth: migrate.Credentials{Username: u.Address, Password: u.TargetPassword.Str},
	}, nil
}

func davEndpoint(cfg *config.Config, e config.DAVEndpoint) migrate.DAVEndpoint {
	ca := e.CAFile
	if ca != "" && !filepath.IsAbs(ca) {
		ca = filepath.Join(cfg.Dir, ca)
	}
	return migrate.DAVEndpoint{CalDAV: e.CalDAV, CardDAV: e.CardDAV, CAFile: ca}
}

// davServerURL is the HTTPS listener of the server of the user's domain,
// where the bundled server answers CalDAV and CardDAV.
func davServerURL(cfg *config.Config, m *config.Migration, user string) (string, error) {
	domain := user[strings.LastIndexByte(user, '@')+1:]
	for _, d := range cfg.Domains {
		if d.Name != domain || d.Server == nil {
			continue
		}
		host := d.Server.Hostname
		if port := d.Server.Ports.HTTPS; port != 0 && port != 443 {
			host += ":" + strconv.Itoa(port)
		}
		return "https://" + host + "/", nil
	}
	return "", fmt.Errorf("migration %q: user %s: no server for domain %s (add a dav_target block)", m.Name, user, domain)
}
