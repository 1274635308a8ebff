package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
)

// TestMigrateGmailLike copies a Gmail-like Dovecot mailbox (10 000
// messages by default, $MAILCTL_MIGRATE_MESSAGES to change, with 5 and 25
// MB attachments) into the bundled server: a dry run writes nothing; the
// copy, interrupted after a third and resumed, puts each message once in
// the folder its first label maps to, with its flags, INTERNALDATE and
// size; a second run copies 0; the source is unchanged.
func TestMigrateGmailLike(t *testing.T) {
	n := fixtureSize(t)
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	t0 := time.Now()
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: n, Large: []int{5 << 20, largeSize}})
	t.Logf("fixture: %d messages, %.1f MB in %s", len(fx.Messages), float64(fx.Bytes)/(1<<20), time.Since(t0).Round(time.Millisecond))
	srcBefore := readFolders(t, d.TLSAddr, d.ClientTLS(), srcUser, srcPass)
	tg := startTarget(t, dstUser)
	want := wantFolders(fx, false)
	wantCopied := 0
	var wantBytes int64
	for _, ms := range want {
		wantCopied += len(ms)
		for _, m := range ms {
			wantBytes += m.Size
		}
	}
	state := filepath.Join(t.TempDir(), "state", "google.db")
	ctx := context.Background()

	t.Run("dry-run", func(t *testing.T) {
		var out bytes.Buffer
		sum, err := migrate.Run(ctx, []migrate.Job{job(d, tg)}, migrate.Options{DryRun: true, State: state, Progress: &out})
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		u := sum.Users[0]
		if u.Err != nil || u.Copied != wantCopied || u.Bytes != wantBytes {
			t.Errorf("dry run: would copy %d messages, %d bytes (err %v), want %d, %d", u.Copied, u.Bytes, u.Err, wantCopied, wantBytes)
		}
		if _, msgs, err := tg.st.Usage(ctx, dstUser); err != nil || msgs != 0 {
			t.Errorf("target after a dry run: %d messages (%v), want 0", msgs, err)
		}
		if !strings.Contains(out.String(), dstUser+": INBOX ") {
			t.Errorf("progress = %q, want plain lines naming the user and folder", out.String())
		}
	})

	t.Run("interrupted copy resumed", func(t *testing.T) {
		start := time.Now()
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			defer cancel()
			for cctx.Err() == nil {
				if _, n, _ := tg.st.Usage(cctx, dstUser); n >= wantCopied/3 {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		sum, err := migrate.Run(cctx, []migrate.Job{job(d, tg)}, migrate.Options{State: state})
		if !errors.Is(err, context.Canceled) || sum.Users[0].Copied == 0 {
			t.Fatalf("interrupted Run = %v after %d messages, want context.Canceled after some", err, sum.Users[0].Copied)
		}
		_, before, _ := tg.st.Usage(ctx, dstUser)
		sum, err = migrate.Run(ctx, []migrate.Job{job(d, tg)}, migrate.Options{State: state})
		if err != nil {
			t.Fatalf("resumed Run = %v", err)
		}
		el := time.Since(start)
		u := sum.Users[0]
		t.Logf("interrupted with %d messages in the target; resumed: copied %d messages, %.1f MB; %s in all: %.0f messages/s",
			before, u.Copied, float64(u.Bytes)/(1<<20), el.Round(time.Millisecond), float64(wantCopied)/el.Seconds())
		if u.Err != nil || u.Failed != 0 {
			t.Fatalf("user error %v, failures %v", u.Err, u.Failures)
		}
		if before+u.Copied != wantCopied {
			t.Errorf("%d in the target before resuming + %d copied, want %d", before, u.Copied, wantCopied)
		}
		if u.Excluded[testenv.GmailStarred] == "" || u.Excluded[testenv.GmailImportant] == "" {
			t.Errorf("excluded = %v, want Starred and Important", u.Excluded)
		}
		compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), want)
	})

	t.Run("second run copies 0", func(t *testing.T) {
		sum, err := migrate.Run(ctx, []migrate.Job{job(d, tg)}, migrate.Options{State: state})
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		if u := sum.Users[0]; u.Err != nil || u.Copied != 0 || u.Failed != 0 {
			t.Errorf("second run: copied %d, failed %d, err %v; want 0, 0, nil", u.Copied, u.Failed, u.Err)
		}
		compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), want)
	})

	t.Run("source unchanged", func(t *testing.T) {
		after := readFolders(t, d.TLSAddr, d.ClientTLS(), srcUser, srcPass)
		if !reflect.DeepEqual(after, srcBefore) {
			for f := range srcBefore {
				if !reflect.DeepEqual(after[f], srcBefore[f]) {
					t.Errorf("source folder %q changed: %d messages, was %d", f, len(after[f]), len(srcBefore[f]))
				}
			}
		}
		for f, ms := range fx.Folders {
			if len(srcBefore[f]) != len(ms) {
				t.Errorf("source folder %q: %d messages, fixture %d", f, len(srcBefore[f]), len(ms))
			}
		}
	})
}
