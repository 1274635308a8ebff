package daemon

import (
	"context"
	"net"
	"net/http"
	"path/filepath"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/dav"
)

// davDir is the data directory's part holding calendars and contacts.
const davDir = "dav"

// openDAV opens the calendar and contacts store, dav/dav.db in the data
// directory.
func (d *daemon) openDAV(ctx context.Context, cfg *config.Config) error {
	st, err := dav.Open(ctx, filepath.Join(cfg.DataDir, davDir, dav.FileName))
	if err != nil {
		return err
	}
	d.dav = st
	return nil
}

func (d *daemon) closeDAV() {
	if err := d.dav.Close(); err != nil {
		d.log.Error("close calendar store", "err", err)
	}
}

// davHandler serves CalDAV and CardDAV with the mail users' passwords.
func (d *daemon) davHandler() http.Handler {
	a := countingAuth{auth: d.authn, service: "dav", metrics: d.metrics}
	return dav.New(d.dav, func(ctx context.Context, user, password string, remote net.Addr) (string, error) {
		return a.Authenticate(ctx, user, password, remote)
	}, dav.Options{Logger: d.log.With("component", "dav")})
}
