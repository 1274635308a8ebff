package daemon

import (
	"github.com/mailctl/mailctl/server/config"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadPostgresURL: the URL file is read alone, trimmed; a file open
// to others, empty, or of several lines is refused with one line that
// does not show its content.
func TestReadPostgresURL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const url = "postgres://mailctl:pw-secret@db.example.net/mail"
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // error substring; "" for success
	}{
		{"ok", url + "\n", 0o600, ""},
		{"owner read-only", "  " + url + "  ", 0o400, ""},
		{"group readable", url, 0o640, "is open to group or others (mode 0640)"},
		{"world readable", url, 0o604, "is open to group or others (mode 0604)"},
		{"empty", "\n", 0o600, "is empty"},
		{"two lines", url + "\n" + url + "\n", 0o600, "holds more than one line"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		got, err := config.ReadPostgresURL(path)
		switch {
		case tc.want == "" && (err != nil || got != url):
			t.Errorf("%s: readPostgresURL = %q, %v; want the URL", tc.name, got, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: readPostgresURL error %v; want %q", tc.name, err, tc.want)
		case err != nil && (strings.Contains(err.Error(), "pw-secret") || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: error shows the password or has several lines: %q", tc.name, err)
		}
	}
	if _, err := config.ReadPostgresURL(filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), "store.postgres_url_file: ") {
		t.Errorf("missing file: %v", err)
	}
}
