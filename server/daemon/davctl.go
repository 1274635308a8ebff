package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/dav"
	"github.com/mailctl/mailctl/server/davpg"
)

// davDir is the data directory's part holding calendars and contacts.
const davDir = "dav"

// openDAV opens the calendar and contacts store: on a node whose store is
// PostgreSQL (d.pool set by openStore), the tables of that database, which
// all the nodes share (server/davpg); else dav/dav.db in the data
// directory.
func (d *daemon) openDAV(ctx context.Context, cfg *config.Config) error {
	if d.pool != nil {
		st := davpg.New(d.pool)
		if err := d.importLocalDAV(ctx, st, filepath.Join(cfg.DataDir, davDir, dav.FileName)); err != nil {
			return err
		}
		d.dav = st
		d.log.Info("calendars and contacts on PostgreSQL", "node", cfg.NodeName())
		return nil
	}
	st, err := dav.Open(ctx, filepath.Join(cfg.DataDir, davDir, dav.FileName))
	if err != nil {
		return err
	}
	d.dav = st
	return nil
}

// davImported is the name a node's dav.db takes once copied into the
// PostgreSQL database: kept, never read again.
const davImported = dav.FileName + ".imported"

// importLocalDAV copies the calendars and contacts of path, the node's
// dav.db from before its move to PostgreSQL, into the database, then
// renames the file to davImported so that it is copied once. The copy is
// safe to repeat (davpg.Store.Import): a start interrupted half way copies
// the rest at the next start. Without a dav.db there is nothing to do.
func (d *daemon) importLocalDAV(ctx context.Context, st *davpg.Store, path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	src, err := dav.Open(ctx, path)
	if err != nil {
		return err
	}
	stats, err := st.Import(ctx, src)
	if cerr := src.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close calendar store %q: %w", path, cerr)
	}
	if err != nil {
		return fmt.Errorf("copy the calendars of %s into PostgreSQL: %w", path, err)
	}
	dst := filepath.Join(filepath.Dir(path), davImported)
	if _, err := os.Stat(dst); err == nil { // an earlier import's file: keep it too
		dst += "." + time.Now().UTC().Format("20060102T150405Z")
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("calendars copied into PostgreSQL, but: %w", err)
	}
	d.log.Info("calendars and contacts of the data directory copied into PostgreSQL", "from", path, "kept_as", dst,
		"users", stats.Users, "collections", stats.Collections, "objects", stats.Objects, "skipped_same_name", stats.Skipped)
	return nil
}

func (d *daemon) closeDAV() {
	c, ok := d.dav.(io.Closer) // davpg's pool is the store's, closed with it
	if !ok {
		return
	}
	if err := c.Close(); err != nil {
		d.log.Error("close calendar store", "err", err)
	}
}

// davHandler serves CalDAV and CardDAV with the mail users' passwords.
func (d *daemon) davHandler() http.Handler {
	a := countingAuth{auth: d.authn.For(auth.ScopeDAV), service: "dav", metrics: d.metrics}
	return dav.New(d.dav, func(ctx context.Context, user, password string, remote net.Addr) (string, error) {
		return a.Authenticate(ctx, user, password, remote)
	}, dav.Options{Logger: d.log.With("component", "dav")})
}

// handleDAVExport adds GET /export/dav?user=U to the control socket: U's
// calendars and address books as a tar stream (dav.ExportTar),
// calendars/NAME.ics and contacts/NAME.vcf. A user without collections
// yet gets their default (empty) ones.
func handleDAVExport(mux *http.ServeMux, st dav.Backend, users func() []string, log *slog.Logger) {
	mux.HandleFunc("GET /export/dav", func(w http.ResponseWriter, r *http.Request) {
		user := strings.ToLower(r.URL.Query().Get("user"))
		if !slices.Contains(users(), user) {
			http.Error(w, fmt.Sprintf("no user %q on this server", user), http.StatusNotFound)
			return
		}
		if err := st.EnsureUser(r.Context(), user); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// Built in memory first: an error is then an HTTP status, not a
		// cut stream. Calendars are small next to mail.
		var buf bytes.Buffer
		if err := dav.ExportTar(r.Context(), st, user, &buf); err != nil {
			log.Warn("calendar export failed", "user", user, "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.Write(buf.Bytes())
		log.Info("exported calendars and contacts", "user", user, "bytes", buf.Len())
	})
}

// ExportDAV copies user's calendars and address books (a tar stream, see
// handleDAVExport) from the server behind the control socket at path to w.
func ExportDAV(ctx context.Context, path, user string, w io.Writer) error {
	body, err := transfer(ctx, path, "GET", "/export/dav", url.Values{"user": {user}}, nil, "calendar export of "+user)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.Copy(w, body); err != nil {
		return fmt.Errorf("calendar export of %s: %w", user, err)
	}
	return nil
}

// addDAVControl adds the calendar endpoints to the control socket.
func (d *daemon) addDAVControl(mux *http.ServeMux) {
	handleDAVExport(mux, d.dav, d.userAddresses, d.log.With("component", "export"))
}

// userAddresses lists the configured users of the current configuration.
func (d *daemon) userAddresses() []string {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	out := make([]string, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		out = append(out, strings.ToLower(u.Address))
	}
	return out
}
