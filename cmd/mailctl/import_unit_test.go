package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTakeoutTarget maps label sets the way migrate maps Gmail's folders.
func TestTakeoutTarget(t *testing.T) {
	for _, c := range []struct {
		labels []string
		folder string
		flags  []string
	}{
		{[]string{"Starred", "Important"}, "Archive", []string{`\Flagged`, `\Seen`}},
		{[]string{"Spam", "Starred", "Unread"}, "Junk", []string{`\Flagged`}},
		{[]string{"Trash"}, "Trash", []string{`\Seen`}},
		{[]string{"Zeta", "Alpha/Beta", "Opened"}, "Alpha/Beta", []string{`\Seen`}},
		{[]string{"Alpha", "Sent"}, "Sent", []string{`\Seen`}},
		{[]string{"Category Social", "Unread"}, "Archive", nil},
		{[]string{"Chat"}, "[Gmail]/Chats", []string{`\Seen`}},
	} {
		folder, flags := takeoutTarget(c.labels)
		if folder != c.folder || !slices.Equal(flags, c.flags) {
			t.Errorf("labels %q: folder %q flags %q, want %q %q", c.labels, folder, flags, c.folder, c.flags)
		}
	}
}

// TestImportSources finds what an argument holds, and refuses what it
// cannot import with one line.
func TestImportSources(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "Lists"), 0o755)
	os.Mkdir(filepath.Join(dir, ".hidden"), 0o755)
	writeFile(t, filepath.Join(dir, "Sent.mbox"), "From a Mon Jan  1 00:00:00 2024\n\nx\n", 0o644)
	writeFile(t, filepath.Join(dir, "Lists", "Go.mbox"), "\nFrom a Mon Jan  1 00:00:00 2024\n\nx\n", 0o644)
	writeFile(t, filepath.Join(dir, "inbox"), "From a Mon Jan  1 00:00:00 2024\n\nx\n", 0o644)
	writeFile(t, filepath.Join(dir, "Empty.mbox"), "", 0o644)
	writeFile(t, filepath.Join(dir, "notes.txt"), "hello\n", 0o644)
	writeFile(t, filepath.Join(dir, ".hidden", "x.mbox"), "From a Mon Jan  1 00:00:00 2024\n\nx\n", 0o644)
	srcs, err := importSources(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range srcs {
		got = append(got, s.rel+"="+s.folder)
	}
	if want := []string{"Empty.mbox=Empty", "Lists/Go.mbox=Lists/Go", "Sent.mbox=Sent", "inbox=INBOX"}; !slices.Equal(got, want) {
		t.Errorf("sources %q, want %q", got, want)
	}
	if s, err := importSources(filepath.Join(dir, "Sent.mbox"), "Archive/2024"); err != nil || len(s) != 1 || s[0].folder != "Archive/2024" || s[0].labels {
		t.Errorf("a file with -folder: %+v, %v", s, err)
	}
	if _, err := importSources(dir, "X"); err == nil || !strings.Contains(err.Error(), "-folder applies to an mbox FILE") {
		t.Errorf("-folder with a directory: %v", err)
	}
	if _, err := importSources(filepath.Join(dir, "notes.txt"), ""); err == nil || !strings.Contains(err.Error(), "not an mbox file") {
		t.Errorf("a text file: %v", err)
	}
	empty := t.TempDir()
	os.Mkdir(filepath.Join(empty, "sub"), 0o755)
	if _, err := importSources(empty, ""); err == nil || !strings.Contains(err.Error(), "holds neither a Maildir nor mbox files") {
		t.Errorf("an empty directory: %v", err)
	}
}

// TestImportStateInUse: two imports for one user do not share a state.
func TestImportStateInUse(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.db")
	st, err := openImportState(file, ".")
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if _, err := openImportState(file, "."); err == nil || !strings.Contains(err.Error(), "is another import of this user running?") {
		t.Errorf("second open: %v", err)
	}
}
