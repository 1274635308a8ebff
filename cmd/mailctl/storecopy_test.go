package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/pgstore"
	"github.com/mailctl/mailctl/server/store"
)

// storeListing is a store's users, mailboxes and messages as IMAP clients
// cache them, read through the store's API.
func storeListing(t *testing.T, dir string) string {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var sb strings.Builder
	users, _ := st.Users(ctx)
	for _, u := range users {
		q, _ := st.Quota(ctx, u)
		fmt.Fprintf(&sb, "%s quota=%d\n", u, q)
		mbs, _ := st.Mailboxes(ctx, u)
		for _, mb := range mbs {
			_, msgs, err := st.Messages(ctx, u, mb.Name)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&sb, " %s %d %d %d %q %v\n", mb.Name, mb.UIDValidity, mb.UIDNext, mb.ModSeq, mb.SpecialUse, mb.Subscribed)
			for _, m := range msgs {
				b, _ := st.OpenBody(ctx, m)
				body, _ := io.ReadAll(b)
				b.Close()
				fmt.Fprintf(&sb, "  %d %d %v %s %q\n", m.UID, m.ModSeq, m.Flags, m.InternalDate.UTC().Format(time.RFC3339), body)
			}
		}
	}
	return sb.String()
}

// TestStoreCopyCommand: mailctl store copy from a directory to PostgreSQL
// and back to another directory keeps what clients cache; run again it
// copies nothing; bad invocations get one line.
func TestStoreCopyCommand(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	ctx := context.Background()
	srcDir := t.TempDir()
	st, err := store.Open(ctx, srcDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a@example.org", "b@example.org"} {
		if err := st.EnsureUser(ctx, u, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateMailbox(ctx, u, "Lists", ""); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			if _, err := st.Deliver(ctx, u, "", strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nhello %s\r\n", i, u)), []string{"$x"}, time.Unix(1700000000+int64(i), 0)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.SetFlags(ctx, u, store.Inbox, []uint32{2}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Expunge(ctx, u, store.Inbox, nil); err != nil {
			t.Fatal(err)
		}
	}
	// While the store is open (serve running), the copy is refused.
	pg := testenv.StartPostgres(t)
	urlFile := filepath.Join(t.TempDir(), "pg.url")
	if err := os.WriteFile(urlFile, []byte(pg.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, _, stderr := testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "copy", "-from", srcDir, "-to-postgres-file", urlFile); code == 0 || !strings.Contains(stderr.String(), "in use: stop mailctl serve first") {
		t.Fatalf("copy of a store in use: exit %d, %s", code, stderr)
	}
	st.Close()
	want := storeListing(t, srcDir)

	e, stdout, stderr := testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "copy", "-from", srcDir, "-to-postgres-file", urlFile); code != 0 {
		t.Fatalf("copy to PostgreSQL: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("to PostgreSQL:\n%s", stdout)
	if !strings.Contains(stdout.String(), "a@example.org INBOX: 4 messages") || !strings.Contains(stdout.String(), "copied 2 users: 14 mailboxes (0 already there), 8 messages") {
		t.Errorf("progress output:\n%s", stdout)
	}
	checkSearchText(t, urlFile)
	e, stdout, _ = testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "copy", "-from", srcDir, "-to-postgres-file", urlFile); code != 0 || !strings.Contains(stdout.String(), "(14 already there), 0 messages") {
		t.Errorf("second copy: exit %d\n%s", code, stdout)
	}
	dstDir := filepath.Join(t.TempDir(), "store")
	e, stdout, stderr = testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "copy", "-from-postgres-file", urlFile, "-to", dstDir); code != 0 {
		t.Fatalf("copy from PostgreSQL: exit %d\n%s%s", code, stdout, stderr)
	}
	if root := os.Geteuid() == 0; root != strings.Contains(stdout.String(), "belongs to root: chown -R mailctl: "+dstDir) {
		t.Errorf("running as root %v, output:\n%s", root, stdout)
	}
	if got := storeListing(t, dstDir); got != want {
		t.Errorf("after the round trip:\n%s\nwant:\n%s", got, want)
	}
	// Each message copied has its ENVELOPE summary, as if delivered by
	// serve.
	dst, err := store.Open(ctx, dstDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mb, msgs, err := dst.Messages(ctx, "a@example.org", store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := dst.Summaries(ctx, "a@example.org", mb.ID, []uint32{msgs[0].UID, msgs[len(msgs)-1].UID})
	dst.Close()
	if err != nil || len(sums) != 2 || sums[0] == nil || sums[1] == nil {
		t.Errorf("summaries on the copy: %q, %v", sums, err)
	}

	// Ctrl-C after the first mailbox, then the same command again.
	url2 := filepath.Join(t.TempDir(), "pg2.url")
	if err := os.WriteFile(url2, []byte(pg.NewDatabase(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e, _, stderr = testEnv(t.TempDir())
	e.Stdout = cancelOnWrite{cancel}
	if code := run(cctx, []string{"store", "copy", "-from", srcDir, "-to-postgres-file", url2}, e); code == 0 || !strings.Contains(stderr.String(), "interrupted after 1 mailboxes: run the same command again") {
		t.Errorf("interrupted copy: exit %d, %s", code, stderr)
	}
	e, stdout, stderr = testEnv(t.TempDir())
	if code := runCLI(t, e, "store", "copy", "-from", srcDir, "-to-postgres-file", url2); code != 0 || !strings.Contains(stdout.String(), "13 mailboxes (1 already there)") {
		t.Errorf("copy again: exit %d\n%s%s", code, stdout, stderr)
	}

	// Bad invocations: one line each, no password.
	loose := filepath.Join(t.TempDir(), "loose.url")
	os.WriteFile(loose, []byte("postgres://u:s3cret@127.0.0.1:1/x\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"store", "copy", "-from", srcDir}, "store copy needs -from DIR -to-postgres-file FILE"},
		{[]string{"store", "copy", "-from", srcDir, "-to", dstDir}, "store copy needs"},
		{[]string{"store", "copy", "-from", t.TempDir(), "-to-postgres-file", urlFile}, "holds no mail store"},
		{[]string{"store", "copy", "-from", srcDir, "-to-postgres-file", loose}, "chmod 600"},
		{[]string{"store", "copy", "-from-postgres-file", filepath.Join(t.TempDir(), "none"), "-to", dstDir}, "no such file"},
		{[]string{"store"}, "store needs migrate, version or copy"},
	} {
		e, _, stderr := testEnv(t.TempDir())
		code := runCLI(t, e, c.args...)
		msg := stderr.String()
		if code == 0 || !strings.Contains(msg, c.want) || strings.Count(msg, "\n") != 1 || strings.Contains(msg, "s3cret") {
			t.Errorf("%q: exit %d, %q; want one line with %q", c.args, code, msg, c.want)
		}
	}
}

// cancelOnWrite cancels a context at the first line about a mailbox
// copied: Ctrl-C after the first mailbox.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (c cancelOnWrite) Write(p []byte) (int, error) {
	if strings.Contains(string(p), " messages, ") {
		c.cancel()
	}
	return len(p), nil
}

// checkSearchText: the messages that `store copy` wrote to PostgreSQL
// have the text that SEARCH BODY matches kept beside them, as if
// delivered by serve: the database answers for every one of them, and
// finds "hello a@example.org" in each.
func checkSearchText(t *testing.T, urlFile string) {
	t.Helper()
	ctx := context.Background()
	url, err := os.ReadFile(urlFile)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgstore.Open(ctx, strings.TrimSpace(string(url)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	mb, msgs, err := pg.Messages(ctx, "a@example.org", store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	res, err := pg.SearchText(ctx, "a@example.org", mb.ID, uids, []store.TextNeedle{{Text: "hello a@example.org"}, {Text: "nowhere"}})
	if err != nil || len(res) != 4 {
		t.Fatalf("SearchText after the copy: %v, %v", res, err)
	}
	for i, r := range res {
		if !r.Known || r.Found != 1 {
			t.Errorf("SearchText after the copy: UID %d: %+v, want known, the first needle found", uids[i], r)
		}
	}
}
