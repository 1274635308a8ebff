package migrate_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
)

// TestMigrateResume interrupts a copy (the context is cancelled once the
// target holds some messages, with state commits rare so that acknowledged
// APPENDs are missing from the state) and runs it again: the target ends
// with every message exactly once, and a third run copies 0.
func TestMigrateResume(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 1500, Large: []int{5 << 20}, Seed: 7})
	tg := startTarget(t, dstUser)
	want := wantFolders(fx, false)
	state := filepath.Join(t.TempDir(), "google.db")
	opts := migrate.Options{State: state, Batch: 1 << 20}

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			if _, n, _ := tg.st.Usage(ctx, dstUser); n >= 600 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	sum, err := migrate.Run(ctx, []migrate.Job{job(d, tg)}, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Run = %v, want context.Canceled", err)
	}
	first := sum.Users[0]
	if !errors.Is(first.Err, context.Canceled) || first.Copied == 0 || first.Copied >= len(fx.Messages) {
		t.Fatalf("interrupted run: copied %d of %d, err %v; want some, context.Canceled", first.Copied, len(fx.Messages), first.Err)
	}
	_, before, _ := tg.st.Usage(context.Background(), dstUser)

	sum, err = migrate.Run(context.Background(), []migrate.Job{job(d, tg)}, opts)
	if err != nil {
		t.Fatalf("resumed Run = %v", err)
	}
	second := sum.Users[0]
	if second.Err != nil || second.Failed != 0 {
		t.Fatalf("resumed run: err %v, failures %v", second.Err, second.Failures)
	}
	t.Logf("interrupted after %d copied (%d in the target), resumed: %d copied, %d skipped", first.Copied, before, second.Copied, second.Skipped)
	if before+second.Copied != len(fx.Messages) {
		t.Errorf("target had %d, resumed run copied %d: want %d in all", before, second.Copied, len(fx.Messages))
	}
	compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), want)

	sum, err = migrate.Run(context.Background(), []migrate.Job{job(d, tg)}, opts)
	if u := sum.Users[0]; err != nil || u.Err != nil || u.Copied != 0 {
		t.Errorf("third run: copied %d, err %v %v; want 0", u.Copied, err, u.Err)
	}
}

// TestMigrateDuplicates: with Duplicates a message with several labels
// goes into every label's folder; All Mail still gets only the messages
// imported from nowhere else.
func TestMigrateDuplicates(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 400, Seed: 3})
	tg := startTarget(t, dstUser)
	j := job(d, tg)
	j.Duplicates = true
	var progress strings.Builder
	sum, err := migrate.Run(context.Background(), []migrate.Job{j}, migrate.Options{State: filepath.Join(t.TempDir(), "s.db"),
		Progress: &progress, Terminal: true})
	if err != nil || sum.Users[0].Err != nil {
		t.Fatalf("Run = %v, %v", err, sum.Users[0].Err)
	}
	// On a terminal: one bar per user, redrawn in place, ending "done".
	if p := progress.String(); !strings.Contains(p, "\r\x1b[2K") || !strings.HasSuffix(p, dstUser+": done, "+migrate.FormatBytes(sum.Users[0].Bytes)+" copied\n") {
		t.Errorf("terminal progress = %q", p[max(0, len(p)-300):])
	}
	want := wantFolders(fx, true)
	total := 0
	for _, ms := range want {
		total += len(ms)
	}
	if total <= len(fx.Messages) {
		t.Fatalf("fixture has no message with several labels (%d copies of %d messages)", total, len(fx.Messages))
	}
	compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), want)
}

// throttler is an IMAP proxy in front of the source: it answers the first
// throttle body FETCHes with NO [THROTTLED] (as Gmail does) and drops the
// connection once in the middle of a body FETCH.
type throttler struct {
	addr string
	// in limits the throttling and drops to the body FETCHes of this
	// source folder ("": all).
	in        string
	throttle  atomic.Int32
	drop      atomic.Int32
	throttled atomic.Int32
	dropped   atomic.Int32
}

var (
	bodyFetch = regexp.MustCompile(`^(\S+) UID FETCH .*BODY\.PEEK\[\]`)
	selectCmd = regexp.MustCompile(`^\S+ (?i:SELECT|EXAMINE) "?([^"\r\n]*)"?`)
)

func startThrottler(t *testing.T, upstream string, throttle, drop int32) *throttler {
	t.Helper()
	return startThrottlerIn(t, upstream, "", throttle, drop)
}

// startThrottlerIn is startThrottler for the body FETCHes of the source
// folder in alone.
func startThrottlerIn(t *testing.T, upstream, in string, throttle, drop int32) *throttler {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &throttler{addr: ln.Addr().String(), in: in}
	p.throttle.Store(throttle)
	p.drop.Store(drop)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c, upstream)
			}()
		}
	}()
	return p
}

func (p *throttler) serve(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	var mu sync.Mutex // writes to c
	var dropAfter atomic.Int64
	go func() {
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := u.Read(buf)
			if n > 0 {
				mu.Lock()
				c.Write(buf[:n])
				mu.Unlock()
				if left := dropAfter.Load(); left > 0 && dropAfter.Add(-int64(n)) <= 0 {
					p.dropped.Add(1)
					u.Close()
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	r := bufio.NewReader(c)
	selected := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if m := selectCmd.FindStringSubmatch(line); m != nil {
			selected = m[1]
		}
		if m := bodyFetch.FindStringSubmatch(line); m != nil && (p.in == "" || p.in == selected) {
			if p.throttle.Add(-1) >= 0 {
				p.throttled.Add(1)
				mu.Lock()
				io.WriteString(c, m[1]+" NO [THROTTLED] Too many simultaneous connections or bandwidth exceeded\r\n")
				mu.Unlock()
				continue
			}
			if p.drop.Add(-1) >= 0 {
				dropAfter.Store(200 << 10)
			}
		}
		if _, err := io.WriteString(u, line); err != nil {
			return
		}
	}
}

// TestMigrateThrottled: NO [THROTTLED] answers and a connection dropped in
// the middle of a FETCH are backed off and retried; the copy completes
// with every message exactly once.
func TestMigrateThrottled(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 600, Large: []int{2 << 20}, Seed: 5})
	tg := startTarget(t, dstUser)
	p := startThrottler(t, d.Addr, 3, 2)
	j := job(d, tg)
	j.Source = migrate.Endpoint{Address: p.addr, TLS: "none"}
	var progress strings.Builder
	sum, err := migrate.Run(context.Background(), []migrate.Job{j}, migrate.Options{
		State:    filepath.Join(t.TempDir(), "s.db"),
		Backoff:  migrate.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	u := sum.Users[0]
	if u.Err != nil || u.Failed != 0 {
		t.Fatalf("user error %v, failures %v", u.Err, u.Failures)
	}
	if p.throttled.Load() != 3 || p.dropped.Load() != 2 {
		t.Errorf("proxy throttled %d and dropped %d FETCHes, want 3 and 2", p.throttled.Load(), p.dropped.Load())
	}
	if u.Retries != 5 {
		t.Errorf("retries = %d, want 5", u.Retries)
	}
	if !strings.Contains(progress.String(), "THROTTLED") {
		t.Errorf("progress does not mention the throttling:\n%s", progress.String())
	}
	compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), wantFolders(fx, false))
}

// TestMigrateTwoUsers runs two users in parallel, one of which cannot log
// in: the other completes.
func TestMigrateTwoUsers(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass}, testenv.DovecotUser{Name: "bob@gmail.example", Password: "bob-pw"})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 200, Seed: 11})
	tg := startTarget(t, dstUser, "bob@example.org")
	good := job(d, tg)
	bad := job(d, tg)
	bad.User, bad.SourceAuth = "bob@example.org", migrate.Credentials{Username: "bob@gmail.example", Password: "wrong"}
	bad.TargetAuth.Username = "bob@example.org"
	sum, err := migrate.Run(context.Background(), []migrate.Job{bad, good}, migrate.Options{State: filepath.Join(t.TempDir(), "s.db"),
		Backoff: migrate.Backoff{Min: 10 * time.Millisecond}})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if sum.OK() || sum.Users[0].Err == nil || !strings.Contains(sum.Users[0].Err.Error(), "log in") {
		t.Errorf("bob: err %v, want a login failure", sum.Users[0].Err)
	}
	if sum.Users[0].Retries != 0 {
		t.Errorf("bob: %d retries of a refused login, want 0", sum.Users[0].Retries)
	}
	if sum.Users[1].Err != nil || sum.Users[1].Copied != len(fx.Messages) {
		t.Errorf("alice: copied %d, err %v; want %d, nil", sum.Users[1].Copied, sum.Users[1].Err, len(fx.Messages))
	}
	var out strings.Builder
	sum.Write(&out)
	if !strings.Contains(out.String(), "alice@example.org: copied 200 messages") || !strings.Contains(out.String(), "bob@example.org: copied 0 messages") {
		t.Errorf("summary =\n%s", out.String())
	}
}

// TestMigrateUIDValidityChange: when the source renumbers a folder (a new
// UIDVALIDITY: Dovecot's UID list and indexes removed), the folder is
// read again and its messages recognised by Message-ID: nothing is copied
// twice.
func TestMigrateUIDValidityChange(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	fx := d.FillGmailLike(t, srcUser, testenv.GmailOptions{Messages: 200, Seed: 13})
	tg := startTarget(t, dstUser)
	opts := migrate.Options{State: filepath.Join(t.TempDir(), "s.db")}
	if sum, err := migrate.Run(context.Background(), []migrate.Job{job(d, tg)}, opts); err != nil || !sum.OK() {
		t.Fatalf("Run = %v, %+v", err, sum.Users[0])
	}
	inbox := filepath.Join(d.Home(srcUser), "Maildir", "INBOX")
	entries, err := os.ReadDir(inbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "dovecot") {
			if err := os.Remove(filepath.Join(inbox, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	sum, err := migrate.Run(context.Background(), []migrate.Job{job(d, tg)}, opts)
	if err != nil || !sum.OK() {
		t.Fatalf("Run = %v, %+v", err, sum.Users[0])
	}
	u := sum.Users[0]
	if u.Copied != 0 || u.Skipped != len(fx.Folders["INBOX"]) {
		t.Errorf("after a new UIDVALIDITY of INBOX: copied %d, skipped %d; want 0, %d", u.Copied, u.Skipped, len(fx.Folders["INBOX"]))
	}
	compare(t, readFolders(t, tg.addr, tg.tls, dstUser, dstPass), wantFolders(fx, false))
}
