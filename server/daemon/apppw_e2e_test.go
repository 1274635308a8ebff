package daemon_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/auth"
	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/daemon"
)

// TestServeAppPasswords: over IMAP LOGIN and SMTP AUTH, an app password
// logs in to its scopes only, the main password not at all when
// password_scopes is empty, the log names the app password and holds no
// secret; deleting the app password and reloading (SIGHUP, what apply
// does) revokes it, remembered logins included.
func TestServeAppPasswords(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "server.json")
	cfg := baseConfig(t, filepath.Join(dir, "data"))
	phone, phoneHash, err := auth.GenerateAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	tablet, tabletHash, err := auth.GenerateAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Users[0].PasswordScopes = &[]string{}
	cfg.Users[0].AppPasswords = []config.AppPassword{
		{Name: "phone", Hash: phoneHash, Scopes: []string{"imap", "smtp", "dav"}},
		{Name: "tablet", Hash: tabletHash, Scopes: []string{"imap"}},
	}
	writeConfig(t, cfgPath, cfg)
	srv := startServer(t, cfgPath)
	pool := roots(t, cfg.DataDir)

	imapLogin := func(pw string) string {
		return dialLine(t, srv.addr("imap")).cmd("a", `LOGIN alice@example.test "`+pw+`"`)
	}
	smtpAuth := func(pw string) (string, error) {
		return swaks(t, "--server", srv.addr("submissions"), "--tls-on-connect", "--auth", "PLAIN",
			"--auth-user", "alice@example.test", "--auth-password", pw,
			"--from", "alice@example.test", "--to", "alice@example.test", "--quit-after", "AUTH")
	}
	wantIMAP := func(what, pw string, ok bool) {
		t.Helper()
		got := imapLogin(pw)
		if ok && !strings.HasPrefix(got, "a OK") || !ok && !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
			t.Errorf("IMAP LOGIN with %s = %q, want success %v", what, got, ok)
		}
	}
	wantSMTP := func(what, pw string, ok bool) {
		t.Helper()
		out, err := smtpAuth(pw)
		if ok && (err != nil || !strings.Contains(out, "235 ")) || !ok && (err == nil || !strings.Contains(out, "535 ")) {
			t.Errorf("SMTP AUTH with %s: err %v, want success %v, in\n%s", what, err, ok, out)
		}
	}
	wantDAV := func(what, pw string, ok bool) {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "mail.example.test"}}}
		req, _ := http.NewRequest("PROPFIND", "https://"+srv.addr("https")+"/dav/alice@example.test/",
			strings.NewReader(`<?xml version="1.0"?><propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>`))
		req.Header.Set("Depth", "0")
		req.Header.Set("Content-Type", "application/xml")
		req.SetBasicAuth("alice@example.test", pw)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ok && resp.StatusCode != http.StatusMultiStatus || !ok && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("CalDAV PROPFIND with %s: %s, want success %v", what, resp.Status, ok)
		}
	}

	wantIMAP("the phone's app password", phone, true)
	wantDAV("the phone's app password (scope dav)", phone, true)
	wantDAV("the tablet's imap-only app password", tablet, false)
	wantDAV("the main password (password_scopes = [])", "alice-pw", false)
	if err := dialIMAPS(t, srv.addr("imaps"), pool, nil).Login("alice@example.test", strings.ToUpper(phone)).Wait(); err != nil {
		t.Errorf("IMAPS login with the phone's app password in upper case: %v", err)
	}
	wantSMTP("the phone's app password", phone, true)
	wantIMAP("the tablet's app password", tablet, true)
	wantSMTP("the tablet's imap-only app password", tablet, false)
	wantIMAP("the main password (password_scopes = [])", "alice-pw", false)
	wantSMTP("the main password (password_scopes = [])", "alice-pw", false)

	log, err := os.ReadFile(srv.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `"app_password":"phone"`) || !strings.Contains(string(log), `"app_password":"tablet"`) {
		t.Errorf("the server log names no app password:\n%s", log)
	}
	for _, secret := range []string{phone, tablet, strings.ReplaceAll(phone, " ", ""), "alice-pw"} {
		if strings.Contains(string(log), secret) {
			t.Errorf("the server log holds the secret %q", secret)
		}
	}

	// Revoke the phone: delete its block, give the main password back to IMAP.
	cfg.Users[0].AppPasswords = cfg.Users[0].AppPasswords[1:]
	cfg.Users[0].PasswordScopes = &[]string{"imap"}
	writeConfig(t, cfgPath, cfg)
	srv.signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := daemon.QueryStatus(context.Background(), srv.socket)
		if err != nil {
			t.Fatal(err)
		}
		if st.LastReload != nil {
			if !st.LastReload.OK {
				t.Fatalf("reload failed: %s", st.LastReload.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reload reported within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantIMAP("the revoked phone's app password", phone, false)
	wantSMTP("the revoked phone's app password", phone, false)
	wantIMAP("the tablet's app password after the reload", tablet, true)
	wantIMAP("the main password now allowed for imap", "alice-pw", true)
	wantSMTP("the main password, still not for smtp", "alice-pw", false)
}
