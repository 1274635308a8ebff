package migrate_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
	"github.com/mailctl/mailctl/server/dav"
)

// TestMigrateDAVToServer copies from Radicale into the bundled server's
// CalDAV/CardDAV (server/dav over HTTPS, in process), given as the bare
// https://host/ a migration block derives: the copy finds /dav/ through
// /.well-known, creates the calendars and the address book beside the
// server's default ones, copies every object, and a re-run copies none.
func TestMigrateDAVToServer(t *testing.T) {
	src := testenv.StartRadicale(t, testenv.RadicaleUser{Name: davUser, Password: davSrcPass})
	fx := seedDAV(t, src, 20, 3, 6)
	const target = "alice@example.com"
	st, err := dav.Open(context.Background(), filepath.Join(t.TempDir(), dav.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewTLSServer(dav.New(st, func(ctx context.Context, user, password string, remote net.Addr) (string, error) {
		if user == target && password == davDstPass {
			return user, nil
		}
		return "", errors.New("invalid credentials")
	}, dav.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	job := davJob(src.URL, srv.URL+"/")
	job.DAV.Target.CAFile = ca
	job.DAV.TargetAuth.Username = target
	opts := migrate.Options{State: filepath.Join(t.TempDir(), "dav.db")}

	sum, err := migrate.Run(context.Background(), []migrate.Job{job}, opts)
	if u := sum.Users[0]; err != nil || !sum.OK() || u.DAVCopied != 29 {
		t.Fatalf("run: err %v, copied %d, errors %v %v; want 29 copied", err, u.DAVCopied, u.DAVErrors, u.Failures)
	}
	for name, evs := range fx.events {
		objs, err := st.Objects(context.Background(), target, dav.Calendars, name)
		if err != nil || len(objs) != len(evs) {
			t.Errorf("server calendar %s: %d objects, %v; want %d", name, len(objs), err, len(evs))
		}
	}
	objs, err := st.Objects(context.Background(), target, dav.AddressBooks, "contacts")
	if err != nil || len(objs) != len(fx.contacts) {
		t.Errorf("server address book contacts: %d objects, %v; want %d", len(objs), err, len(fx.contacts))
	}
	cols, _ := st.Collections(context.Background(), target, dav.Calendars)
	names := map[string]string{}
	for _, c := range cols {
		names[c.Name] = c.DisplayName
	}
	if names["home"] != "Home & garden" {
		t.Errorf("server calendars %v: want home named Home & garden", names)
	}

	sum, err = migrate.Run(context.Background(), []migrate.Job{job}, opts)
	if u := sum.Users[0]; err != nil || !sum.OK() || u.DAVCopied != 0 || u.DAVSkipped != 29 {
		t.Errorf("second run: err %v, copied %d, skipped %d, errors %v; want 0, 29", err, u.DAVCopied, u.DAVSkipped, u.DAVErrors)
	}
}
