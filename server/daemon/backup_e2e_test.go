package daemon_test

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// imapMsg is what a client sees of a message.
type imapMsg struct {
	UID   goimap.UID
	Flags string
	Date  time.Time
	Body  string
}

// mailboxState fetches UIDVALIDITY and every message of mailbox.
func mailboxState(t *testing.T, addr string, pool *x509.CertPool, mailbox string) (uint32, map[goimap.UID]imapMsg) {
	t.Helper()
	c := dialIMAPS(t, addr, pool, nil)
	if err := c.Login("alice@example.test", "alice-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	out := map[goimap.UID]imapMsg{}
	if sel.NumMessages > 0 {
		msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{
			UID: true, Flags: true, InternalDate: true,
			BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
		}).Collect()
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for _, m := range msgs {
			var flags []string
			for _, f := range m.Flags {
				if f != `\Recent` {
					flags = append(flags, string(f))
				}
			}
			slices.Sort(flags)
			out[m.UID] = imapMsg{m.UID, strings.Join(flags, " "), m.InternalDate.UTC(), string(m.BodySection[0].Bytes)}
		}
	}
	c.Logout().Wait()
	return sel.UIDValidity, out
}

// TestBackupRestore runs the real binary: messages with flags, keywords,
// dates and bodies in the index and in files, a backup taken while more
// mail arrives, the data directory wiped, a fresh server started and
// stopped (what apply leaves), the backup restored: every message is back,
// byte for byte, with its UID, flags and date, under the same UIDVALIDITY.
func TestBackupRestore(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dataDir := filepath.Join(t.TempDir(), "data")
	cfgPath := filepath.Join(t.TempDir(), "server.json")
	writeConfig(t, cfgPath, baseConfig(t, dataDir))
	s := startServer(t, cfgPath)
	pool := roots(t, dataDir)
	addr := s.addr("imaps")

	c := dialIMAPS(t, addr, pool, nil)
	if err := c.Login("alice@example.test", "alice-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	const n = 150
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := range n {
		size := 300 + rng.IntN(2000)
		if i%25 == 0 {
			size = 200 << 10 // a body file
		}
		body := testMessage(i, size)
		flags := []goimap.Flag{goimap.Flag(fmt.Sprintf("$Project%d", i%4))}
		if i%2 == 0 {
			flags = append(flags, goimap.FlagSeen)
		}
		if i%5 == 0 {
			flags = append(flags, goimap.FlagFlagged, goimap.FlagAnswered)
		}
		mailbox := "INBOX"
		if i%10 == 9 {
			mailbox = "Archive"
		}
		cmd := c.Append(mailbox, int64(len(body)), &goimap.AppendOptions{Flags: flags, Time: date.Add(time.Duration(i) * time.Hour)})
		if _, err := cmd.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	// Expunge some, so UIDs have gaps that a renumbering would close.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(goimap.UIDSet{{Start: 3, Stop: 6}}, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	before := map[string]map[goimap.UID]imapMsg{}
	validity := map[string]uint32{}
	for _, mb := range []string{"INBOX", "Archive"} {
		validity[mb], before[mb] = mailboxState(t, addr, pool, mb)
	}

	// The backup, while another client keeps appending.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	during := map[string]bool{}
	var duringMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := dialIMAPS(t, addr, pool, nil)
		if err := c.Login("alice@example.test", "alice-pw").Wait(); err != nil {
			t.Error(err)
			return
		}
		for i := n; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := testMessage(i, 150<<10)
			cmd := c.Append("INBOX", int64(len(body)), nil)
			cmd.Write([]byte(body))
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				t.Errorf("append during backup: %v", err)
				return
			}
			duringMu.Lock()
			during[body] = true
			duringMu.Unlock()
		}
	}()
	backupFile := filepath.Join(t.TempDir(), "backup.tar.gz")
	out, err := os.Create(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(mailctlBin, "serve", "backup", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = out, &stderr
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Run(); err != nil {
		t.Fatalf("serve backup: %v: %s", err, stderr.String())
	}
	out.Close()
	close(stop)
	wg.Wait()

	// destroy -purge-data, apply: a new server on an empty directory.
	s.signal(syscall.SIGTERM)
	if err := s.wait(40 * time.Second); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfgPath)
	s.signal(syscall.SIGTERM)
	if err := s.wait(40 * time.Second); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	restore := func(args ...string) (string, error) {
		out, err := exec.Command(mailctlBin, append([]string{"serve", "restore", "-config", cfgPath}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := restore(backupFile); err != nil {
		t.Fatalf("serve restore: %v: %s", err, out)
	} else if !strings.Contains(out, "Restored the backup of mail.example.test") {
		t.Errorf("serve restore said %q", out)
	}
	// Once restored, the directory holds mail: a second restore refuses.
	if out, err := restore(backupFile); err == nil || !strings.Contains(out, "-force") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		t.Errorf("restore over mail: %v: %q", err, out)
	}

	s = startServer(t, cfgPath)
	addr = s.addr("imaps")
	pool = roots(t, dataDir) // the restored certificate
	for _, mb := range []string{"INBOX", "Archive"} {
		v, after := mailboxState(t, addr, pool, mb)
		if v != validity[mb] {
			t.Errorf("%s: UIDVALIDITY %d after restore, was %d: clients would resync", mb, v, validity[mb])
		}
		for uid, m := range before[mb] {
			if after[uid] != m {
				t.Errorf("%s UID %d: restored %v %q %s (%d bytes), want %q %s (%d bytes)", mb, uid,
					after[uid].UID, after[uid].Flags, after[uid].Date, len(after[uid].Body), m.Flags, m.Date, len(m.Body))
			}
		}
		extra := 0
		for uid, m := range after {
			if _, ok := before[mb][uid]; ok {
				continue
			}
			if !during[m.Body] {
				t.Errorf("%s UID %d: %d bytes restored that no client appended whole", mb, uid, len(m.Body))
			}
			extra++
		}
		t.Logf("%s: %d messages before the backup, %d appended during it restored, %d appended during it", mb, len(before[mb]), extra, len(during))
	}
	if len(before["INBOX"]) != n-n/10-4 || len(before["Archive"]) != n/10 {
		t.Errorf("before: %d in INBOX, %d in Archive", len(before["INBOX"]), len(before["Archive"]))
	}
}

func testMessage(i, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: message %d\r\nMessage-ID: <%d@example.test>\r\n\r\n", i, i)
	for b.Len() < size {
		fmt.Fprintf(&b, "%08d line of message %d\r\n", b.Len(), i)
	}
	return b.String()
}
