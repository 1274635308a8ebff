package pgstore

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
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

// TestOpenPoolSize: a node's commands do not queue behind a few long
// statements of other sessions (a SEARCH BODY holds its connection for
// tens of milliseconds): with eight statements of a second under way on
// the pool, MailboxByID answers at once; the URL's pool_max_conns still
// sets the size.
func TestOpenPoolSize(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Debian PostgreSQL package: Linux only")
	}
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	s := migrated(t, url)
	ctx := ctxT(t)
	if got := s.pool.Config().MaxConns; got != DefaultMaxConns {
		t.Errorf("pool of %d connections, want %d", got, DefaultMaxConns)
	}
	if err := s.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	inbox, err := s.Mailbox(ctx, alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := s.pool.Acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Release()
			started <- struct{}{}
			if _, err := conn.Exec(ctx, "SELECT pg_sleep(1)"); err != nil {
				t.Error(err)
			}
		}()
	}
	for range 8 {
		<-started
	}
	t0 := time.Now()
	if _, err := s.MailboxByID(ctx, alice, inbox.ID); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("MailboxByID beside 8 statements of a second: %v; want no wait for a connection", d)
	}
	wg.Wait()

	small, err := Open(ctx, url+"&pool_max_conns=3", nil)
	if !strings.Contains(url, "?") {
		small, err = Open(ctx, url+"?pool_max_conns=3", nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if got := small.pool.Config().MaxConns; got != 3 {
		t.Errorf("pool_max_conns=3 in the URL: pool of %d", got)
	}
}
