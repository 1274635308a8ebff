package migrate_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
)

// sourceInstances is the number of source messages in the folders that
// are copied (every folder but Starred and Important), and of them the
// ones flagged \Deleted.
func sourceInstances(fx *testenv.GmailFixture) (all, deleted int) {
	for f, ms := range fx.Folders {
		if f == testenv.GmailStarred || f == testenv.GmailImportant {
			continue
		}
		all += len(ms)
		for _, m := range ms {
			for _, fl := range m.Flags {
				if strings.EqualFold(fl, `\Deleted`) {
					deleted++
				}
			}
		}
	}
	return all, deleted
}

// TestMigrateSummary: a run whose copy of All Mail (where most messages
// are skipped, imported from other folders) is throttled twice reports
// its duration and folders, and counts each source message once: copied,
// skipped or flagged \Deleted, whatever the retries.
func TestMigrateSummary(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 300, Seed: 17})
	tg := startTarget(t, dstUser)
	p := startThrottlerIn(t, d.Addr, testenv.GmailAllMail, 2, 0)
	j := job(d, tg)
	j.Source = migrate.Endpoint{Address: p.addr, TLS: "none"}
	sum, err := migrate.Run(context.Background(), []migrate.Job{j}, migrate.Options{
		State:   filepath.Join(t.TempDir(), "s.db"),
		Backoff: migrate.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	u := sum.Users[0]
	if u.Err != nil || u.Failed != 0 {
		t.Fatalf("user error %v, failures %v", u.Err, u.Failures)
	}
	if p.throttled.Load() != 2 || u.Retries != 2 {
		t.Fatalf("proxy throttled %d body FETCHes of All Mail, %d retries; want 2, 2", p.throttled.Load(), u.Retries)
	}
	all, deleted := sourceInstances(fx)
	if got := u.Copied + u.Skipped + u.Deleted; got != all || u.Deleted != deleted {
		t.Errorf("copied %d + skipped %d + deleted %d = %d, want the %d source messages (%d deleted)", u.Copied, u.Skipped, u.Deleted, got, all, deleted)
	}
	if u.Duration <= 0 {
		t.Errorf("duration = %s, want the time the run took", u.Duration)
	}
	folders := map[string]migrate.FolderSummary{}
	for _, f := range u.Folders {
		folders[f.Source] = f
	}
	if f := folders[testenv.GmailSent]; f.Target != "Sent" || f.Messages != len(fx.Folders[testenv.GmailSent]) {
		t.Errorf("folders = %+v, want %q -> Sent with %d messages", u.Folders, testenv.GmailSent, len(fx.Folders[testenv.GmailSent]))
	}
	var out strings.Builder
	sum.Write(&out)
	for _, s := range []string{`"[Gmail]/Sent Mail" -> "Sent": `, `"[Gmail]/All Mail" -> "Archive": `,
		`"[Gmail]/Starred" not copied: excluded by default`, `"[Gmail]/Important" not copied`} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary does not contain %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), " in 0s") {
		t.Errorf("summary says 0s:\n%s", out.String())
	}
}

// TestMigrateWipedTarget: after a complete copy, the target is set up
// again empty (destroy -purge-data and apply: a new store); the next run
// sees from the target folders' UIDVALIDITY and UIDNEXT that what it
// copied is gone and copies everything again. Messages deleted on the new
// server afterwards are not copied back.
func TestMigrateWipedTarget(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 200, Seed: 19})
	want := wantFolders(fx, false)
	wantCopied := 0
	for _, ms := range want {
		wantCopied += len(ms)
	}
	opts := migrate.Options{State: filepath.Join(t.TempDir(), "s.db")}
	ctx := context.Background()
	old := startTarget(t, dstUser)
	if sum, err := migrate.Run(ctx, []migrate.Job{job(d, old)}, opts); err != nil || !sum.OK() || sum.Users[0].Copied != wantCopied {
		t.Fatalf("first run = %v, %+v; want %d copied", err, sum.Users[0], wantCopied)
	}

	tg := startTarget(t, dstUser)
	sum, err := migrate.Run(ctx, []migrate.Job{job(d, tg)}, opts)
	if err != nil || !sum.OK() {
		t.Fatalf("run into the wiped target = %v, %+v", err, sum.Users[0])
	}
	if u := sum.Users[0]; u.Copied != wantCopied {
		t.Errorf("run into the wiped target: copied %d, want %d", u.Copied, wantCopied)
	}
	compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), want)

	// Someone deletes 5 messages of the INBOX on the new server.
	c, err := imapclient.DialTLS(tg.addr, &imapclient.Options{TLSConfig: tg.tls})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(dstUser, dstPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(goimap.SeqSetNum(1, 2, 3, 4, 5), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	sum, err = migrate.Run(ctx, []migrate.Job{job(d, tg)}, opts)
	if err != nil || !sum.OK() || sum.Users[0].Copied != 0 {
		t.Errorf("run after deletions on the new server = %v, copied %d (%+v); want 0", err, sum.Users[0].Copied, sum.Users[0])
	}
	if got := readFolders(t, tg.addr, tg.tls, dstUser, dstPass)["INBOX"]; len(got) != len(want["INBOX"])-5 {
		t.Errorf("INBOX holds %d messages, want %d", len(got), len(want["INBOX"])-5)
	}
}

// TestMigratePermanentErrors: a full target mailbox (OVERQUOTA) and a
// target certificate that is not trusted fail the user at once, without
// retries, saying what to do.
func TestMigratePermanentErrors(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 100, Seed: 23})
	backoff := migrate.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}

	t.Run("over quota", func(t *testing.T) {
		tg := startTarget(t, dstUser)
		if err := tg.st.EnsureUser(context.Background(), dstUser, 20<<10); err != nil {
			t.Fatal(err)
		}
		sum, err := migrate.Run(context.Background(), []migrate.Job{job(d, tg)}, migrate.Options{
			State: filepath.Join(t.TempDir(), "s.db"), Backoff: backoff})
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		u := sum.Users[0]
		if u.Err == nil || !strings.Contains(u.Err.Error(), "over its quota") || u.Retries != 0 {
			t.Errorf("err %v after %d retries; want the quota at once", u.Err, u.Retries)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		tg := startTarget(t, dstUser)
		j := job(d, tg)
		j.Target.CAFile = ""
		sum, err := migrate.Run(context.Background(), []migrate.Job{j}, migrate.Options{
			State: filepath.Join(t.TempDir(), "s.db"), Backoff: backoff})
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		u := sum.Users[0]
		if u.Err == nil || !strings.Contains(u.Err.Error(), "is not trusted") || u.Retries != 0 {
			t.Errorf("err %v after %d retries; want the certificate at once", u.Err, u.Retries)
		}
	})
}
