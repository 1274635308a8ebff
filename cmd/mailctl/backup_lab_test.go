package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailctl/mailctl/server/backup"
)

// labWithFreePorts writes the local lab's mail.hcl into a new directory
// with free ports, so that it does not meet another lab on this machine.
func labWithFreePorts(t testing.TB) (dir string, imaps int) {
	t.Helper()
	src, err := os.ReadFile("../../examples/local/mail.hcl")
	if err != nil {
		t.Fatal(err)
	}
	hcl := string(src)
	var lns []net.Listener
	for _, name := range []string{"smtp", "submission", "submissions", "imap", "imaps", "https"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		re := regexp.MustCompile(`(?m)^(\s+` + name + `\s+= )\d+`)
		if !re.MatchString(hcl) {
			t.Fatalf("examples/local/mail.hcl: no %s port", name)
		}
		hcl = re.ReplaceAllString(hcl, fmt.Sprintf("${1}%d", port))
		if name == "imaps" {
			imaps = port
		}
	}
	for _, ln := range lns {
		ln.Close()
	}
	// A quota for alice, whose usage a restore must keep.
	alice := `user "alice@example.test" {`
	hcl = strings.Replace(hcl, alice, alice+"\n  quota = \"1 GiB\"", 1)
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mail.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, imaps
}

type labMsg struct {
	UID   goimap.UID
	Flags string
	Date  time.Time
	Body  string
}

type labUser struct{ addr, pw string }

var labUsers = []labUser{{"alice@example.test", "lab-alice-password"}, {"bob@example.test", "lab-bob-password"}}

func dialLab(t testing.TB, dir string, port int, u labUser) *imapclient.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, ".mailctl", "data", "tls", "self-signed.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", port), &imapclient.Options{
		TLSConfig: &tls.Config{ServerName: "mail.example.test", RootCAs: pool},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(u.addr, u.pw).Wait(); err != nil {
		t.Fatalf("login %s: %v", u.addr, err)
	}
	return c
}

// labQuota is what GETQUOTAROOT INBOX answers u.
func labQuota(t testing.TB, dir string, port int, u labUser) string {
	t.Helper()
	c := dialLab(t, dir, port, u)
	defer func() { c.Logout().Wait() }()
	q, err := c.GetQuotaRoot("INBOX").Wait()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v", q)
}

// labState reads UIDVALIDITY and every message of every mailbox of u.
func labState(t testing.TB, dir string, port int, u labUser) (map[string]uint32, map[string]labMsg) {
	t.Helper()
	c := dialLab(t, dir, port, u)
	defer func() { c.Logout().Wait() }()
	mbs, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	validity := map[string]uint32{}
	msgs := map[string]labMsg{}
	for _, mb := range mbs {
		sel, err := c.Select(mb.Mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		validity[mb.Mailbox] = sel.UIDValidity
		if sel.NumMessages == 0 {
			continue
		}
		got, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{
			UID: true, Flags: true, InternalDate: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
		}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range got {
			var flags []string
			for _, f := range m.Flags {
				if f != `\Recent` {
					flags = append(flags, string(f))
				}
			}
			slices.Sort(flags)
			msgs[fmt.Sprintf("%s/%d", mb.Mailbox, m.UID)] = labMsg{m.UID, strings.Join(flags, " "), m.InternalDate.UTC(), string(m.BodySection[0].Bytes)}
		}
	}
	return validity, msgs
}

// buildBinaryTB and runMailctl are buildBinary and mailctl for tests and
// benchmarks.
func buildBinaryTB(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "mailctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runMailctl(tb testing.TB, bin string, args ...string) (string, int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		tb.Fatalf("mailctl %v: %v", args, err)
	}
	return out.String(), 0
}

// drillMessage is message i of user addr in the drill: sizes from 200
// bytes to 3 KiB, one in 200 of 150 KiB (a body file rather than the
// index), every one with a keyword, some \Seen, some \Flagged.
func drillMessage(rng *rand.Rand, addr string, i int) (mailbox string, flags []goimap.Flag, body string) {
	size := 200 + rng.IntN(3000)
	if i%200 == 0 {
		size = 150 << 10
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: x@example.net\r\nTo: %s\r\nSubject: drill %d\r\n\r\n", addr, i)
	for b.Len() < size {
		fmt.Fprintf(&b, "%d %d\r\n", i, b.Len())
	}
	flags = []goimap.Flag{goimap.Flag(fmt.Sprintf("$Tag%d", i%5))}
	if i%3 == 0 {
		flags = append(flags, goimap.FlagSeen)
	}
	if i%7 == 0 {
		flags = append(flags, goimap.FlagFlagged)
	}
	mailbox = "INBOX"
	if i%4 == 1 {
		mailbox = "Archive"
	}
	return mailbox, flags, b.String()
}

func appendMsg(c *imapclient.Client, mailbox string, flags []goimap.Flag, date time.Time, body string) error {
	cmd := c.Append(mailbox, int64(len(body)), &goimap.AppendOptions{Flags: flags, Time: date})
	if _, err := cmd.Write([]byte(body)); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// fillLab appends n messages, half to each lab user, two connections per
// user.
func fillLab(tb testing.TB, dir string, imaps int, seed uint64, n int) {
	date := time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for ui, u := range labUsers {
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := dialLab(tb, dir, imaps, u)
				defer func() { c.Logout().Wait() }()
				rng := rand.New(rand.NewPCG(seed, uint64(ui*2+w)))
				for i := w; i < n/2; i += 2 {
					mb, flags, body := drillMessage(rng, u.addr, i)
					if err := appendMsg(c, mb, flags, date.Add(time.Duration(i)*time.Minute), body); err != nil {
						errs <- fmt.Errorf("append %d for %s: %w", i, u.addr, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("seed %d: %v", seed, err)
	}
}

// TestLabBackupRestoreDrill is the restore drill of issue 15 on the local
// lab: two users with messages in several mailboxes, keywords and flags;
// mailctl backup while mail keeps arriving; destroy -purge-data; apply;
// mailctl restore; every message byte-identical with the same UID, flags
// and date, every message appended during the backup whole or absent, and
// a client that was connected before finds the same UIDVALIDITY (no
// resync). 10 000 messages take minutes to append over IMAP (the server
// syncs each): BenchmarkLabBackupRestoreDrill runs that size.
func TestLabBackupRestoreDrill(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	restoreDrill(t, n)
}

// BenchmarkLabBackupRestoreDrill is the drill with 10 000 messages
// (MAILCTL_DRILL_MESSAGES to change it), reporting the backup's and the
// restore's durations: go test -run - -bench LabBackupRestoreDrill
// -benchtime 1x ./cmd/mailctl
func BenchmarkLabBackupRestoreDrill(b *testing.B) {
	n := 10000
	if v := os.Getenv("MAILCTL_DRILL_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		restoreDrill(b, n)
	}
}

func restoreDrill(tb testing.TB, n int) {
	seed := rand.Uint64()
	tb.Logf("seed %d, %d messages", seed, n)
	bin := buildBinaryTB(tb)
	dir, imaps := labWithFreePorts(tb)
	tb.Cleanup(func() { runMailctl(tb, bin, "-chdir", dir, "destroy", "-auto-approve", "-purge-data") })
	tb.Cleanup(func() {
		if tb.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, ".mailctl", "mailctl.log"))
			if len(b) > 30000 {
				b = b[len(b)-30000:]
			}
			tb.Logf("lab log (tail):\n%s", b)
		}
	})
	if out, code := runMailctl(tb, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 {
		tb.Fatalf("apply = %d:\n%s", code, out)
	}
	start := time.Now()
	fillLab(tb, dir, imaps, seed, n)
	tb.Logf("appended %d messages in %s", n, time.Since(start).Round(time.Millisecond))

	type snapshot struct {
		validity map[string]uint32
		msgs     map[string]labMsg
	}
	before := map[string]snapshot{}
	for _, u := range labUsers {
		v, m := labState(tb, dir, imaps, u)
		before[u.addr] = snapshot{v, m}
	}
	quotaBefore := labQuota(tb, dir, imaps, labUsers[0])
	// A client connected before the backup, in INBOX.
	old := dialLab(tb, dir, imaps, labUsers[0])
	oldSel, err := old.Select("INBOX", nil).Wait()
	if err != nil {
		tb.Fatal(err)
	}

	// Mail keeps arriving during the backup, into bob's Sent.
	stop := make(chan struct{})
	during := map[string]bool{} // bodies appended (or tried) during the backup
	var duringMu sync.Mutex
	appendDone := make(chan error, 1)
	go func() {
		c := dialLab(tb, dir, imaps, labUsers[1])
		rng := rand.New(rand.NewPCG(seed, 99))
		for i := 0; ; i++ {
			select {
			case <-stop:
				c.Close()
				appendDone <- nil
				return
			default:
			}
			_, flags, body := drillMessage(rng, labUsers[1].addr, 100000+i)
			if i%3 == 0 {
				body += strings.Repeat("x", 200<<10) + "\r\n" // a body file
			}
			duringMu.Lock()
			during[body] = true
			duringMu.Unlock()
			if err := appendMsg(c, "Sent", flags, time.Now(), body); err != nil {
				appendDone <- err
				return
			}
		}
	}()
	start = time.Now()
	out, code := runMailctl(tb, bin, "-chdir", dir, "backup", "-out", "bk")
	close(stop)
	if err := <-appendDone; err != nil {
		tb.Fatalf("append during the backup: %v", err)
	}
	if code != 0 {
		tb.Fatalf("backup = %d:\n%s", code, out)
	}
	backupTime := time.Since(start)
	tb.Logf("backup in %s: %s", backupTime.Round(time.Millisecond), strings.TrimSpace(out))
	files, _ := filepath.Glob(filepath.Join(dir, "bk", "lab-*.tar.gz"))
	if len(files) != 1 {
		tb.Fatalf("backup files: %v\n%s", files, out)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		tb.Errorf("backup file mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bk")); err != nil || fi.Mode().Perm() != 0o700 {
		tb.Errorf("backup directory mode: %v %v", fi.Mode(), err)
	}

	if out, code := runMailctl(tb, bin, "-chdir", dir, "destroy", "-auto-approve", "-purge-data"); code != 0 {
		tb.Fatalf("destroy -purge-data = %d:\n%s", code, out)
	}
	if out, code := runMailctl(tb, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 {
		tb.Fatalf("apply after destroy = %d:\n%s", code, out)
	}
	if _, m := labState(tb, dir, imaps, labUsers[0]); len(m) != 0 {
		tb.Fatalf("after destroy -purge-data and apply, %d messages", len(m))
	}
	start = time.Now()
	out, code = runMailctl(tb, bin, "-chdir", dir, "restore", files[0])
	if code != 0 || !strings.Contains(out, "restored and running") {
		tb.Fatalf("restore = %d:\n%s", code, out)
	}
	restoreTime := time.Since(start)
	tb.Logf("restore in %s: %s", restoreTime.Round(time.Millisecond), strings.TrimSpace(out))
	if b, ok := tb.(*testing.B); ok {
		b.ReportMetric(backupTime.Seconds(), "backup-s")
		b.ReportMetric(restoreTime.Seconds(), "restore-s")
	}

	total, inBackup := 0, 0
	for _, u := range labUsers {
		v, m := labState(tb, dir, imaps, u)
		b := before[u.addr]
		for mb, uv := range b.validity {
			if v[mb] != uv {
				tb.Errorf("%s %s: UIDVALIDITY %d after restore, was %d", u.addr, mb, v[mb], uv)
			}
		}
		for k, want := range b.msgs {
			if got := m[k]; got != want {
				tb.Errorf("%s %s: restored UID %d flags %q date %s %d bytes, want UID %d flags %q date %s %d bytes",
					u.addr, k, got.UID, got.Flags, got.Date, len(got.Body), want.UID, want.Flags, want.Date, len(want.Body))
			}
			delete(m, k)
		}
		// What is left arrived during the backup: whole, or not there.
		for k, got := range m {
			if !strings.HasPrefix(k, "Sent/") || !during[got.Body] {
				tb.Errorf("%s %s: a message of %d bytes that was never appended whole", u.addr, k, len(got.Body))
			}
			inBackup++
		}
		total += len(b.msgs)
	}
	if total != n {
		tb.Errorf("%d messages before the backup, %d appended", total, n)
	}
	tb.Logf("%d of %d messages appended during the backup are in it", inBackup, len(during))
	if q := labQuota(tb, dir, imaps, labUsers[0]); q != quotaBefore {
		tb.Errorf("alice's quota after restore: %s, before the backup: %s", q, quotaBefore)
	} else {
		tb.Logf("alice's quota as before: %s", q)
	}

	// The client connected before lost its connection with the restart;
	// it reconnects and finds the mailbox it knew: no resync.
	old.Close()
	again := dialLab(tb, dir, imaps, labUsers[0])
	sel, err := again.Select("INBOX", nil).Wait()
	if err != nil {
		tb.Fatal(err)
	}
	if sel.UIDValidity != oldSel.UIDValidity || sel.UIDNext != oldSel.UIDNext || sel.NumMessages != oldSel.NumMessages {
		tb.Errorf("reconnected client: UIDVALIDITY %d UIDNEXT %d EXISTS %d, before the backup %d %d %d",
			sel.UIDValidity, sel.UIDNext, sel.NumMessages, oldSel.UIDValidity, oldSel.UIDNext, oldSel.NumMessages)
	}

	// A second restore would replace mail: refused without -force, and
	// the mail is untouched.
	if out, code := runMailctl(tb, bin, "-chdir", dir, "restore", files[0]); code == 0 || !strings.Contains(out, "-force") {
		tb.Errorf("restore over mail = %d, want a refusal naming -force:\n%s", code, out)
	} else if strings.Count(strings.TrimSpace(out), "Error:") != 1 {
		tb.Errorf("restore over mail: want one error line:\n%s", out)
	} else {
		tb.Logf("restore over mail: %s", out)
	}
	if _, m := labState(tb, dir, imaps, labUsers[1]); len(m) < len(before[labUsers[1].addr].msgs) {
		tb.Errorf("after a refused restore, bob has %d messages", len(m))
	}
	// The restored DKIM keys are the old ones: apply publishes them again.
	if out, code := runMailctl(tb, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 2 || !strings.Contains(out, "_domainkey") {
		tb.Errorf("plan after restore = %d, want the restored DKIM keys to publish:\n%s", code, out)
	}
	if out, code := runMailctl(tb, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 {
		tb.Fatalf("apply after restore = %d:\n%s", code, out)
	}
	if out, code := runMailctl(tb, bin, "-chdir", dir, "plan", "-detailed-exitcode"); code != 0 {
		tb.Errorf("plan after restore and apply = %d, want no changes:\n%s", code, out)
	}
}

// TestLabBackupEncrypted: -encrypt-to writes a backup only the matching
// age identity opens; restore names -identity when it is missing, refuses
// a wrong key in one line, and restores with the right one.
func TestLabBackupEncrypted(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	bin := buildBinaryTB(t)
	dir, imaps := labWithFreePorts(t)
	t.Cleanup(func() { runMailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve", "-purge-data") })
	if out, code := runMailctl(t, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	fillLab(t, dir, imaps, seed, 40)
	_, want := labState(t, dir, imaps, labUsers[0])

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateX25519Identity()
	keyFile := filepath.Join(dir, "backup.key")
	otherFile := filepath.Join(dir, "other.key")
	os.WriteFile(keyFile, []byte("# backup key\n"+id.String()+"\n"), 0o600)
	os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)

	if out, code := runMailctl(t, bin, "-chdir", dir, "backup", "-out", "bk", "-encrypt-to", "age1nope"); code == 0 || !strings.Contains(out, "not an age public key") {
		t.Errorf("backup -encrypt-to age1nope = %d:\n%s", code, out)
	}
	out, code := runMailctl(t, bin, "-chdir", dir, "backup", "-out", "bk", "-encrypt-to", id.Recipient().String())
	if code != 0 {
		t.Fatalf("backup -encrypt-to = %d:\n%s", code, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "bk", "lab-*.tar.gz.age"))
	if len(files) != 1 {
		t.Fatalf("encrypted backup files: %v\n%s", files, out)
	}
	raw, _ := os.ReadFile(files[0])
	if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1\n")) || bytes.Contains(raw, []byte("MANIFEST.json")) {
		t.Errorf("%s is not an age file: % x", files[0], raw[:min(len(raw), 40)])
	}
	if out, code := runMailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve", "-purge-data"); code != 0 {
		t.Fatalf("destroy -purge-data = %d:\n%s", code, out)
	}
	if out, code := runMailctl(t, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "-identity"},
		{[]string{"-identity", otherFile}, "do not open it"},
	} {
		args := append(append([]string{"-chdir", dir, "restore"}, c.args...), files[0])
		out, code := runMailctl(t, bin, args...)
		if code == 0 || !strings.Contains(out, c.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("restore %v = %d, want one line with %q:\n%s", c.args, code, c.want, out)
		}
	}
	out, code = runMailctl(t, bin, "-chdir", dir, "restore", "-identity", keyFile, files[0])
	if code != 0 {
		t.Fatalf("restore -identity = %d:\n%s", code, out)
	}
	if _, got := labState(t, dir, imaps, labUsers[0]); !maps.Equal(got, want) {
		t.Errorf("after the encrypted restore, %d messages, want %d as before", len(got), len(want))
	}
}

// TestLabBackupIncremental: after a full backup and 100 new messages
// (and flag changes), backup -incremental moves about the new messages'
// size, not the store's; restoring it onto a fresh server applies the
// chain and gives back every message.
func TestLabBackupIncremental(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	bin := buildBinaryTB(t)
	dir, imaps := labWithFreePorts(t)
	t.Cleanup(func() { runMailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve", "-purge-data") })
	if out, code := runMailctl(t, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	// Bodies gzip cannot shrink much, as real mail's attachments.
	c := dialLab(t, dir, imaps, labUsers[0])
	add := func(from, n int) (total int64) {
		for i := from; i < from+n; i++ {
			raw := make([]byte, 1500+rng.IntN(3000))
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			body := fmt.Sprintf("From: x@example.net\r\nSubject: inc %d\r\n\r\n%s\r\n", i, base64.StdEncoding.EncodeToString(raw))
			total += int64(len(body))
			if err := appendMsg(c, "INBOX", []goimap.Flag{goimap.Flag(fmt.Sprintf("$K%d", i%3))}, time.Now(), body); err != nil {
				t.Fatalf("seed %d: append: %v", seed, err)
			}
		}
		return total
	}
	storeBytes := add(0, 1000)
	out, code := runMailctl(t, bin, "-chdir", dir, "backup", "-out", "bk", "-incremental")
	if code != 0 || !strings.Contains(out, "a full one") {
		t.Fatalf("first backup -incremental = %d, want a full one:\n%s", code, out)
	}
	newBytes := add(1000, 100)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(goimap.UIDSet{{Start: 10, Stop: 60}}, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	_, want := labState(t, dir, imaps, labUsers[0])
	time.Sleep(1100 * time.Millisecond) // backups are named by the second
	out, code = runMailctl(t, bin, "-chdir", dir, "backup", "-out", "bk", "-incremental")
	if code != 0 || !strings.Contains(out, "incremental backup on lab-") {
		t.Fatalf("second backup -incremental = %d:\n%s", code, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "bk", "lab-*.tar.gz"))
	if len(files) != 2 {
		t.Fatalf("backups: %v", files)
	}
	fullInfo, _ := os.Stat(files[0])
	incInfo, _ := os.Stat(files[1])
	t.Logf("%d KiB of messages, full backup %d KiB; 100 new messages %d KiB, incremental backup %d KiB",
		storeBytes>>10, fullInfo.Size()>>10, newBytes>>10, incInfo.Size()>>10)
	if incInfo.Size() > 2*newBytes+64<<10 || incInfo.Size() > fullInfo.Size()/4 {
		t.Errorf("incremental backup of %d bytes after %d bytes of new mail (full backup %d)", incInfo.Size(), newBytes, fullInfo.Size())
	}
	for _, f := range files {
		if fi, err := os.Stat(f + ".manifest.json"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s.manifest.json: %v %v", f, fi, err)
		}
	}

	if out, code := runMailctl(t, bin, "-chdir", dir, "destroy", "-auto-approve", "-purge-data"); code != 0 {
		t.Fatalf("destroy -purge-data = %d:\n%s", code, out)
	}
	if out, code := runMailctl(t, bin, "-chdir", dir, "apply", "-auto-approve"); code != 0 {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	// Without the full backup it builds on, the chain is refused.
	os.Rename(files[0], files[0]+".away")
	if out, code := runMailctl(t, bin, "-chdir", dir, "restore", files[1]); code == 0 || !strings.Contains(out, "builds on") {
		t.Errorf("restore without the base = %d:\n%s", code, out)
	}
	os.Rename(files[0]+".away", files[0])
	out, code = runMailctl(t, bin, "-chdir", dir, "restore", files[1])
	if code != 0 || !strings.Contains(out, "applying 2 backups") {
		t.Fatalf("restore of the chain = %d:\n%s", code, out)
	}
	if _, got := labState(t, dir, imaps, labUsers[0]); !maps.Equal(got, want) {
		t.Errorf("after restoring the chain, %d messages, want %d as before", len(got), len(want))
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "bk", ".restore-stage-*")); len(ents) != 0 {
		t.Errorf("staging left behind: %v", ents)
	}
}

// TestLabBackupNotDeployed: backup and restore of a lab never applied
// say so in one line, and a damaged backup is refused before the server
// is looked at.
func TestLabBackupNotDeployed(t *testing.T) {
	bin := buildBinaryTB(t)
	dir, _ := labWithFreePorts(t)
	out, code := runMailctl(t, bin, "-chdir", dir, "backup")
	if code != 1 || !strings.Contains(out, "run mailctl apply first") || strings.Count(out, "Error:") != 1 {
		t.Errorf("backup = %d:\n%s", code, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "backups")); len(ents) != 0 {
		t.Errorf("a failed backup left %d files", len(ents))
	}
	var buf bytes.Buffer
	if _, err := backup.NewWriter(&buf, "mail.example.test", "test").Close(); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.tar.gz")
	os.WriteFile(good, buf.Bytes(), 0o600)
	for _, force := range []bool{false, true} {
		args := []string{"-chdir", dir, "restore", good}
		if force {
			args = []string{"-chdir", dir, "restore", "-force", good}
		}
		out, code := runMailctl(t, bin, args...)
		if code != 1 || !strings.Contains(out, "run mailctl apply first") || strings.Count(out, "Error:") != 1 {
			t.Errorf("restore (force %v) = %d:\n%s", force, code, out)
		}
	}
	bad := filepath.Join(dir, "bad.tar.gz")
	os.WriteFile(bad, buf.Bytes()[:buf.Len()/2], 0o600)
	if out, code := runMailctl(t, bin, "-chdir", dir, "restore", bad); code != 1 || !strings.Contains(out, "cut short") || strings.Count(out, "\n") != 1 {
		t.Errorf("restore of a cut backup = %d:\n%s", code, out)
	}
}
