package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/backup"
	"github.com/mailctl/mailctl/server/store"
)

// snapshot is what the daemon does: the store under store/, a directory
// of keys under dkim/.
func snapshot(t *testing.T, st *store.Store, dataDir string, w io.Writer, add func(name string)) *backup.Manifest {
	t.Helper()
	ctx := context.Background()
	bw := backup.NewWriter(w, "mx.example.test", "test")
	err := st.Snapshot(ctx, func(name string, size int64, r io.Reader) error {
		if add != nil {
			add(name)
		}
		return bw.Add("store/"+name, size, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.AddDir(ctx, filepath.Join(dataDir, "dkim"), "dkim"); err != nil {
		t.Fatal(err)
	}
	m, err := bw.Close()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type msgState struct {
	Mailbox     string
	UIDValidity uint32
	UID         uint32
	Flags       string
	Date        time.Time
	Body        string
}

// state reads every message of every user, body included.
func state(t *testing.T, st *store.Store) map[string]msgState {
	t.Helper()
	ctx := context.Background()
	out := map[string]msgState{}
	users, err := st.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		mbs, err := st.Mailboxes(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs {
			_, msgs, err := st.Messages(ctx, u, mb.Name)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				b, err := st.OpenBody(ctx, m)
				if err != nil {
					t.Fatalf("%s %s uid %d: %v", u, mb.Name, m.UID, err)
				}
				body, err := io.ReadAll(b)
				b.Close()
				if err != nil {
					t.Fatal(err)
				}
				out[fmt.Sprintf("%s/%s/%d", u, mb.Name, m.UID)] = msgState{mb.Name, mb.UIDValidity, m.UID,
					strings.Join(m.Flags, " "), m.InternalDate.UTC(), string(body)}
			}
		}
	}
	return out
}

func message(i, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: a@example.test\r\nSubject: message %d\r\n\r\n", i)
	for b.Len() < size {
		fmt.Fprintf(&b, "line %d of message %d\r\n", b.Len(), i)
	}
	return b.String()
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestBackupRestoreKeepsUIDsFlagsDatesAndBodies(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	st := openStore(t, filepath.Join(src, "store"))
	date := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if err := st.EnsureUser(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			size := 200
			if i%7 == 0 {
				size = store.MaxInlineBody + 5000 // a body file
			}
			flags := []string{`\Seen`, "$Label" + fmt.Sprint(i%3)}
			if _, err := st.Deliver(ctx, u, "", strings.NewReader(message(i, size)), flags, date.Add(time.Duration(i)*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Move(ctx, u, store.Inbox, []uint32{3, 7}, "Archive"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "dkim"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "dkim", "example.test.key"), []byte("private"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := state(t, st)
	var buf bytes.Buffer
	m := snapshot(t, st, src, &buf, nil)
	st.Close()

	dst := filepath.Join(t.TempDir(), "data")
	got, err := backup.Restore(ctx, bytes.NewReader(buf.Bytes()), dst, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != len(m.Files) || got.Hostname != "mx.example.test" {
		t.Errorf("restored manifest %d files from %q, wrote %d", len(got.Files), got.Hostname, len(m.Files))
	}
	st2 := openStore(t, filepath.Join(dst, "store"))
	defer st2.Close()
	have := state(t, st2)
	if len(have) != len(want) || len(want) != 40 {
		t.Fatalf("restored %d messages, want %d (40)", len(have), len(want))
	}
	for k, w := range want {
		if have[k] != w {
			t.Errorf("%s: restored %+v, want %+v", k, have[k].Subject(), w.Subject())
		}
	}
	key, err := os.ReadFile(filepath.Join(dst, "dkim", "example.test.key"))
	if err != nil || string(key) != "private" {
		t.Errorf("dkim key: %q, %v", key, err)
	}
	// Nothing restored is readable by others: the backup holds keys.
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		return nil
	})
}

// Subject shortens a state for error messages.
func (m msgState) Subject() string {
	return fmt.Sprintf("%s uidvalidity %d uid %d flags %q date %s body %d bytes", m.Mailbox, m.UIDValidity, m.UID, m.Flags, m.Date, len(m.Body))
}

// A message expunged after the snapshot's transaction began is in the
// backup, body file included; its file is removed once the snapshot ends.
func TestSnapshotKeepsBodyExpungedDuringIt(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	dir := filepath.Join(src, "store")
	st := openStore(t, dir)
	defer st.Close()
	const u = "alice@example.test"
	if err := st.EnsureUser(ctx, u, 0); err != nil {
		t.Fatal(err)
	}
	big := message(1, store.MaxInlineBody+10000)
	uid, err := st.Deliver(ctx, u, "", strings.NewReader(big), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bodyFiles := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(dir, "msg"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		return n
	}
	var buf bytes.Buffer
	expunged := false
	snapshot(t, st, src, &buf, func(name string) {
		if name != "index.db" || expunged {
			return
		}
		// The index is copied; the body is not yet.
		expunged = true
		if _, err := st.SetFlags(ctx, u, store.Inbox, []uint32{uid}, store.FlagsAdd, []string{`\Deleted`}); err != nil {
			t.Fatal(err)
		}
		if got, err := st.Expunge(ctx, u, store.Inbox, nil); err != nil || len(got) != 1 {
			t.Fatalf("expunge: %v %v", got, err)
		}
		if n := bodyFiles(); n != 1 {
			t.Errorf("during the snapshot %d body files, want the expunged one kept", n)
		}
	})
	if n := bodyFiles(); n != 0 {
		t.Errorf("after the snapshot %d body files, want the expunged one removed", n)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if _, err := backup.Restore(ctx, &buf, dst, false); err != nil {
		t.Fatal(err)
	}
	st2 := openStore(t, filepath.Join(dst, "store"))
	defer st2.Close()
	have := state(t, st2)
	if m := have[fmt.Sprintf("%s/INBOX/%d", u, uid)]; m.Body != big {
		t.Errorf("restored body of the message expunged during the snapshot: %d bytes, want %d", len(m.Body), len(big))
	}
}

// Mail delivered while a backup runs is in it or not, never half: every
// message of the restored store is whole, and every message delivered
// before the snapshot began is there.
func TestSnapshotDuringDeliveries(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	src := t.TempDir()
	st := openStore(t, filepath.Join(src, "store"))
	defer st.Close()
	const u = "alice@example.test"
	if err := st.EnsureUser(ctx, u, 0); err != nil {
		t.Fatal(err)
	}
	sizes := make([]int, 120)
	for i := range sizes {
		sizes[i] = 100 + rng.IntN(store.MaxInlineBody*2)
	}
	for i := range 40 {
		if _, err := st.Deliver(ctx, u, "", strings.NewReader(message(i, sizes[i])), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	before := state(t, st)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 40 + w; i < len(sizes); i += 4 {
				if _, err := st.Deliver(ctx, u, "", strings.NewReader(message(i, sizes[i])), nil, time.Now()); err != nil {
					t.Errorf("seed %d: deliver: %v", seed, err)
				}
			}
		}()
	}
	var buf bytes.Buffer
	snapshot(t, st, src, &buf, func(name string) {
		if name == "index.db" {
			close(start)
		}
	})
	wg.Wait()
	dst := filepath.Join(t.TempDir(), "data")
	if _, err := backup.Restore(ctx, &buf, dst, false); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	st2 := openStore(t, filepath.Join(dst, "store"))
	defer st2.Close()
	have := state(t, st2)
	for k, m := range before {
		if have[k] != m {
			t.Errorf("seed %d: %s delivered before the backup: restored %s", seed, k, have[k].Subject())
		}
	}
	for k, m := range have {
		var i int
		if _, err := fmt.Sscanf(m.Body, "From: a@example.test\r\nSubject: message %d", &i); err != nil || i >= len(sizes) || m.Body != message(i, sizes[i]) {
			t.Errorf("seed %d: %s restored %d bytes, not a whole message", seed, k, len(m.Body))
		}
	}
	t.Logf("seed %d: %d messages before, %d in the backup, %d after", seed, len(before), len(have), len(state(t, st)))
}

func TestRestoreRefusesDamagedBackupAndKeepsData(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	st := openStore(t, filepath.Join(src, "store"))
	if err := st.EnsureUser(ctx, "alice@example.test", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Deliver(ctx, "alice@example.test", "", strings.NewReader(message(1, 5000)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	snapshot(t, st, src, &buf, nil)
	st.Close()
	good := buf.Bytes()

	// One byte of the index changed and the archive written again, with
	// the manifest as it was: gzip's CRC does not see it, the manifest must.
	flipped := rewrite(t, good, func(name string, b []byte) {
		if name == "store/index.db" {
			b[len(b)/2] ^= 1
		}
	})

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"cut short", good[:len(good)*2/3], "cut short"},
		{"not a backup", []byte("hello"), "not a mailctl backup"},
		{"checksum", flipped, "checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dst, "dkim"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst, "dkim", "k"), []byte("current"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := backup.Restore(ctx, bytes.NewReader(tc.data), dst, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("restore: %v, want one line with %q", err, tc.want)
			}
			if b, _ := os.ReadFile(filepath.Join(dst, "dkim", "k")); string(b) != "current" {
				t.Errorf("the data directory changed after a failed restore: %q", b)
			}
			ents, _ := os.ReadDir(dst)
			if len(ents) != 1 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

// rewrite unpacks a backup, lets change alter each file's content, and packs
// it again as it was otherwise.
func rewrite(t *testing.T, data []byte, change func(name string, b []byte)) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		change(hdr.Name, b)
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	gw.Close()
	return out.Bytes()
}

func TestRestoreRefusesDataDirWithMail(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	st := openStore(t, filepath.Join(src, "store"))
	if err := st.EnsureUser(ctx, "alice@example.test", 0); err != nil {
		t.Fatal(err)
	}
	var empty bytes.Buffer
	snapshot(t, st, src, &empty, nil)
	if _, err := st.Deliver(ctx, "alice@example.test", "", strings.NewReader(message(1, 300)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	// While the store is open (a server running), nothing is restored.
	if _, err := backup.Restore(ctx, bytes.NewReader(empty.Bytes()), src, true); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("restore while the store is open: %v", err)
	}
	st.Close()
	_, err := backup.Restore(ctx, bytes.NewReader(empty.Bytes()), src, false)
	if err == nil || !strings.Contains(err.Error(), "1 messages of 1 users") || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("restore over mail without -force: %v", err)
	}
	if _, err := backup.Restore(ctx, bytes.NewReader(empty.Bytes()), src, true); err != nil {
		t.Fatalf("restore -force: %v", err)
	}
	why, err := backup.Occupied(ctx, src)
	if err != nil || why != "" {
		t.Errorf("after restoring an empty backup with -force: %q, %v", why, err)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}
