package migrate_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
)

// TestMigrateXOAUTH2 logs in to a real Dovecot with XOAUTH2, the access
// token printed by the user's token command and checked by Dovecot's
// oauth2 passdb against an introspection endpoint: a valid token, from a
// script named relative to TokenDir, copies a Gmail-like mailbox; a wrong or expired token, a failing command and a
// command printing nothing each fail that user at once (no retries), with
// an error that says why and never shows the token, while the other user
// of the same run is copied.
func TestMigrateXOAUTH2(t *testing.T) {
	const (
		bobSrc, bobDst = "bob@gmail.example", "bob@example.org"
		aliceToken     = "ya29.a0-alice-valid-token"
		expiredToken   = "ya29.a0-alice-expired-token"
		wrongToken     = "ya29.a0-never-issued-token"
		bobToken       = "ya29.a0-bob-valid-token"
	)
	d := testenv.StartDovecotWith(t, testenv.DovecotOptions{
		Users:  []testenv.DovecotUser{{Name: srcUser, Password: srcPass}, {Name: bobSrc, Password: "bob-app-password"}},
		OAuth2: true,
		Tokens: map[string]testenv.OAuth2Token{
			aliceToken:   {User: srcUser, Active: true},
			expiredToken: {User: srcUser, Active: false},
			bobToken:     {User: bobSrc, Active: true},
		},
	})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 40, Seed: 3})
	bobFx := d.FillGmailLike(t, bobSrc, testenv.GmailOptions{Messages: 5, Seed: 4})
	bobWant := 0
	for _, ms := range wantFolders(bobFx, false) {
		bobWant += len(ms)
	}
	tg := startTarget(t, dstUser, bobDst)
	ctx := context.Background()

	// A token command as people write them: a script printing the token
	// and a newline, named relative to the configuration's directory.
	confDir := t.TempDir()
	script := filepath.Join(confDir, "alice-token")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' '"+aliceToken+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	alice := func(cmd string) migrate.Job {
		j := job(d, tg)
		j.SourceAuth = migrate.Credentials{Username: srcUser, TokenCommand: cmd, TokenDir: confDir}
		return j
	}
	// bob is the other user of each failing run: its own token works.
	bob := migrate.Job{
		User:       bobDst,
		Source:     migrate.Endpoint{Address: d.TLSAddr, CAFile: d.CAFile},
		SourceAuth: migrate.Credentials{Username: bobSrc, TokenCommand: "printf %s " + bobToken},
		Target:     migrate.Endpoint{Address: tg.addr, CAFile: tg.caFile},
		TargetAuth: migrate.Credentials{Username: bobDst, Password: dstPass},
	}

	for _, tc := range []struct {
		name    string
		command string
		// introspections is how many times Dovecot asks about alice's
		// token: one login attempt, or none when there is no token.
		introspections int
		want           []string // in alice's error
	}{
		{"expired token", "printf %s " + expiredToken, 1,
			[]string{`log in to "` + d.TLSAddr + `" as "` + srcUser + `" (XOAUTH2)`, "refused the access token", `"status":"401"`}},
		{"wrong token", "echo " + wrongToken, 1,
			[]string{"(XOAUTH2)", "refused the access token"}},
		{"command fails", "echo 'token expired: run gcloud auth login' >&2; exit 1", 0,
			[]string{"oauth2_token_command", "exit status 1", "token expired: run gcloud auth login"}},
		{"command prints nothing", "true", 0,
			[]string{"oauth2_token_command", "printed no token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs, progress, summary bytes.Buffer
			state := filepath.Join(t.TempDir(), "state.db")
			before := d.Introspections()
			start := time.Now()
			sum, err := migrate.Run(ctx, []migrate.Job{alice(tc.command), bob}, migrate.Options{State: state, Progress: &progress,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
			sum.Write(&summary)
			a, b := sum.Users[0], sum.Users[1]
			if a.Err == nil {
				t.Fatalf("alice: no error (copied %d), want a failed login", a.Copied)
			}
			t.Logf("alice: %v", a.Err)
			for _, w := range tc.want {
				if !strings.Contains(a.Err.Error(), w) {
					t.Errorf("alice's error = %q, want it to say %q", a.Err, w)
				}
			}
			if a.Copied != 0 || a.Retries != 0 {
				t.Errorf("alice: copied %d, %d retries; want 0, 0 (a refused login is not retried)", a.Copied, a.Retries)
			}
			if n := d.Introspections() - before; n != tc.introspections+1 { // + bob's login
				t.Errorf("introspection requests = %d, want %d", n, tc.introspections+1)
			}
			if el := time.Since(start); el > 20*time.Second {
				t.Errorf("run took %s, want a quick failure", el)
			}
			for name, out := range map[string]string{"error": a.Err.Error(), "logs": logs.String(), "progress": progress.String(), "summary": summary.String()} {
				for _, tok := range []string{aliceToken, expiredToken, wrongToken, bobToken} {
					if strings.Contains(out, tok) {
						t.Errorf("%s show the token %s:\n%s", name, tok, out)
					}
				}
			}
			// bob's mail is copied by the first run; later runs find it
			// in the target.
			if b.Err != nil || b.Failed != 0 {
				t.Errorf("bob: failed %d, err %v; want his mailbox copied", b.Failed, b.Err)
			}
			if _, n, err := tg.st.Usage(ctx, bobDst); err != nil || n != bobWant {
				t.Errorf("bob's target mailbox: %d messages (%v), want %d", n, err, bobWant)
			}
			if _, n, err := tg.st.Usage(ctx, dstUser); err != nil || n != 0 {
				t.Errorf("alice's target mailbox: %d messages (%v), want 0", n, err)
			}
		})
	}

	t.Run("valid token", func(t *testing.T) {
		var logs bytes.Buffer
		before := d.Introspections()
		sum, err := migrate.Run(ctx, []migrate.Job{alice("./alice-token")}, migrate.Options{State: filepath.Join(t.TempDir(), "state.db"),
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		want := wantFolders(fx, false)
		wantCopied := 0
		for _, ms := range want {
			wantCopied += len(ms)
		}
		u := sum.Users[0]
		if u.Err != nil || u.Failed != 0 || u.Copied != wantCopied {
			t.Fatalf("copied %d, failed %d (%v), err %v; want %d, 0, nil", u.Copied, u.Failed, u.Failures, u.Err, wantCopied)
		}
		if d.Introspections() == before {
			t.Error("Dovecot never asked the introspection endpoint: the login was not XOAUTH2")
		}
		if strings.Contains(logs.String(), aliceToken) {
			t.Errorf("logs show the token:\n%s", logs.String())
		}
		compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), want)
	})
}
