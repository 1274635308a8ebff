package pgstore

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOpenErrorsHideThePassword: the URL is a secret; the errors of Open
// and Migrate name the problem on one line without it.
func TestOpenErrorsHideThePassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, url := range []string{
		"postgres://mail:s3cr3t-pw@127.0.0.1:1/mail?sslmode=disable",  // nothing listens
		"postgres://mail:s3cr3t-pw@127.0.0.1:5432/mail?sslmode=bogus", // bad option
		"postgres://mail:s3cr3t-pw@127.0.0.1:notaport/mail",           // bad port
		"host=127.0.0.1 port=1 user=mail password=s3cr3t-pw sslmode=disable",
	} {
		s, err := Open(ctx, url, nil)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%q): no error", url)
		}
		_, _, merr := Migrate(ctx, url)
		if merr == nil {
			t.Fatalf("Migrate(%q): no error", url)
		}
		for _, c := range []struct {
			msg, prefix string
		}{{err.Error(), "pgstore: open: "}, {merr.Error(), "pgstore: migrate: "}} {
			if strings.Contains(c.msg, "s3cr3t-pw") || strings.Contains(c.msg, "\n") || !strings.HasPrefix(c.msg, c.prefix) {
				t.Errorf("%q: %q; want one line starting with %q, without the password", url, c.msg, c.prefix)
			}
			t.Log(c.msg)
		}
	}
}
