package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	goimap "github.com/emersion/go-imap/v2"
)

// exportTree reads an export directory: each file's path and bytes. The
// process id in Maildir file names (and in dovecot-uidlist, which lists
// them) differs from one export to the next, and is replaced.
func exportTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	pid := regexp.MustCompile(`P\d+Q`)
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		tree[pid.ReplaceAllString(rel, "PxQ")] = pid.ReplaceAllString(string(b), "PxQ")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// sameTree reports how two export trees differ, "" when they do not.
func sameTree(got, want map[string]string) string {
	var diff []string
	for p, b := range want {
		if g, ok := got[p]; !ok {
			diff = append(diff, "missing "+p)
		} else if g != b {
			diff = append(diff, "differs "+p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diff = append(diff, "extra "+p)
		}
	}
	slices.Sort(diff)
	return strings.Join(diff, "; ")
}

// TestExportFromBackup: export -from-backup gives exactly what a live
// export gave when the backup was taken (same files, bytes, flags in the
// names, keywords, UIDs), whatever changed on the server since, and with
// no server at all after destroy -purge-data; an incremental backup is
// exported through its chain, an encrypted one with -identity; a wrong
// key, a missing link and a user the backup lacks are one-line errors.
func TestExportFromBackup(t *testing.T) {
	l := startExportLab(t)
	user := "alice@example.test"
	tmp := t.TempDir()
	n := 0
	export := func(args ...string) (string, string, int) {
		t.Helper()
		n++
		out := filepath.Join(tmp, strings.Repeat("x", n))
		a := append([]string{"-chdir", l.dir, "export", "-user", user, "-out", out}, args...)
		res, code := mailctl(t, l.bin, a...)
		return out, res, code
	}
	live := func(format string) map[string]string {
		t.Helper()
		out, res, code := export("-format", format)
		if code != 0 {
			t.Fatalf("live export -format %s = %d:\n%s", format, code, res)
		}
		return exportTree(t, out)
	}
	fromBackup := func(format, file string, more ...string) map[string]string {
		t.Helper()
		out, res, code := export(append([]string{"-format", format, "-from-backup", file}, more...)...)
		if code != 0 || !strings.Contains(res, "Exported 8 messages") && !strings.Contains(res, "Exported 9 messages") {
			t.Fatalf("export -format %s -from-backup %s = %d:\n%s", format, file, code, res)
		}
		return exportTree(t, out)
	}
	fail := func(want string, args ...string) {
		t.Helper()
		out, res, code := export(append([]string{"-format", "maildir"}, args...)...)
		if code != 1 || !strings.Contains(res, want) || strings.Count(res, "\n") != 1 {
			t.Errorf("export %v = %d, want one line with %q:\n%s", args, code, want, res)
		}
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Errorf("export %v failed but wrote %d files", args, len(ents))
		}
	}

	wantMaildir, wantMbox := live("maildir"), live("mbox")
	if len(wantMaildir) < 10 || len(wantMbox) < 4 {
		t.Fatalf("live exports: %d and %d files", len(wantMaildir), len(wantMbox))
	}
	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "backup", "-out", "bk"); code != 0 {
		t.Fatalf("backup = %d:\n%s", code, out)
	}
	files, _ := filepath.Glob(filepath.Join(l.dir, "bk", "*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	full := files[0]

	// The mail changes: a new message, a flag on every message of INBOX.
	c := l.login(t, user, "lab-alice-password")
	body := "From: x@example.net\r\nSubject: after the backup\r\n\r\nnew\r\n"
	cmd := c.Append("INBOX", int64(len(body)), &goimap.AppendOptions{Flags: []goimap.Flag{"$After"}})
	cmd.Write([]byte(body))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	changed := live("maildir")
	if sameTree(changed, wantMaildir) == "" {
		t.Fatalf("the live export did not change with the mail")
	}

	if d := sameTree(fromBackup("maildir", full), wantMaildir); d != "" {
		t.Errorf("maildir export of the backup differs from the live export at backup time: %s", d)
	}

	// An incremental backup of the changed mail, encrypted.
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	keyFile, otherFile := filepath.Join(tmp, "backup.key"), filepath.Join(tmp, "other.key")
	writeFile(t, keyFile, id.String()+"\n", 0o600)
	writeFile(t, otherFile, other.String()+"\n", 0o600)
	time.Sleep(1100 * time.Millisecond) // backups are named by the second
	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "backup", "-out", "bk", "-incremental", "-encrypt-to", id.Recipient().String()); code != 0 || !strings.Contains(out, "incremental backup on") {
		t.Fatalf("backup -incremental = %d:\n%s", code, out)
	}
	files, _ = filepath.Glob(filepath.Join(l.dir, "bk", "*.tar.gz.age"))
	if len(files) != 1 {
		t.Fatalf("encrypted backups: %v", files)
	}
	inc := files[0]

	if out, code := mailctl(t, l.bin, "-chdir", l.dir, "destroy", "-auto-approve", "-purge-data"); code != 0 {
		t.Fatalf("destroy -purge-data = %d:\n%s", code, out)
	}
	// No server: the backups alone.
	if d := sameTree(fromBackup("mbox", full), wantMbox); d != "" {
		t.Errorf("mbox export of the backup without a server differs from the live export at backup time: %s", d)
	}
	if d := sameTree(fromBackup("maildir", inc, "-identity", keyFile), changed); d != "" {
		t.Errorf("maildir export of the incremental backup differs from the live export at its time: %s", d)
	}
	fail("-identity", "-from-backup", inc)
	fail("do not open it", "-from-backup", inc, "-identity", otherFile)
	os.Rename(full, full+".away")
	fail("builds on", "-from-backup", inc, "-identity", keyFile)
	os.Rename(full+".away", full)
	user = "nobody@example.test"
	fail("has no user nobody@example.test", "-from-backup", full)
	if ents, _ := filepath.Glob(filepath.Join(l.dir, "bk", ".export-stage-*")); len(ents) != 0 {
		t.Errorf("unpacked backups left behind: %v", ents)
	}
}
