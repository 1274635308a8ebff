package backup_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/backup"
	"github.com/mailctl/mailctl/server/store"
)

// randomMessage is a message of about size bytes that gzip cannot shrink
// much, as real mail (attachments, encodings) mostly is.
func randomMessage(rng *rand.Rand, i, size int) string {
	raw := make([]byte, size*3/4)
	for j := range raw {
		raw[j] = byte(rng.Uint32())
	}
	return fmt.Sprintf("From: a@example.test\r\nSubject: message %d\r\n\r\n%s\r\n", i, base64.StdEncoding.EncodeToString(raw))
}

// TestIncrementalBackup: after 100 new messages, flag changes and
// expunges, a backup taken against the previous one holds about the new
// messages' size, not the store's; applying the chain gives back the
// store exactly (UIDs, flags, dates, bodies), and a chain with a missing
// or wrong link is refused.
func TestIncrementalBackup(t *testing.T) {
	ctx := context.Background()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	src := t.TempDir()
	st := openStore(t, filepath.Join(src, "store"))
	defer st.Close()
	date := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	u := "alice@example.test"
	if err := st.EnsureUser(ctx, u, 0); err != nil {
		t.Fatal(err)
	}
	deliver := func(from, n int) int64 {
		var bytes int64
		for i := from; i < from+n; i++ {
			size := 1000 + rng.IntN(3000)
			if i%150 == 0 {
				size = store.MaxInlineBody + 5000 // a body file
			}
			msg := randomMessage(rng, i, size)
			bytes += int64(len(msg))
			if _, err := st.Deliver(ctx, u, "", strings.NewReader(msg), []string{"$K" + fmt.Sprint(i%4)}, date.Add(time.Duration(i)*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		return bytes
	}
	storeBytes := deliver(0, 1500)

	var full bytes.Buffer
	m1 := snapshot(t, st, src, &full, nil)

	// 100 new messages, 50 flag changes, 5 expunges (one a body file).
	newBytes := deliver(1500, 100)
	uids := make([]uint32, 0, 50)
	for i := range 50 {
		uids = append(uids, uint32(1+i*29))
	}
	if _, err := st.SetFlags(ctx, u, store.Inbox, uids, store.FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	gone := []uint32{2, 151, 900, 1200, 1499}
	if _, err := st.SetFlags(ctx, u, store.Inbox, gone, store.FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(ctx, u, store.Inbox, gone); err != nil {
		t.Fatal(err)
	}
	want := state(t, st)

	var incr bytes.Buffer
	bw := backup.NewWriter(&incr, "mx.example.test", "test")
	bw.SetBase("full.tar.gz", m1.Full())
	if err := st.Snapshot(ctx, func(name string, size int64, r io.Reader) error { return bw.Add("store/"+name, size, r) }); err != nil {
		t.Fatal(err)
	}
	m2, err := bw.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store %d KiB of messages; full backup %d KiB; 100 new messages %d KiB; incremental backup %d KiB",
		storeBytes>>10, full.Len()>>10, newBytes>>10, incr.Len()>>10)
	if !m2.Incremental() || m2.Base != "full.tar.gz" {
		t.Errorf("manifest base %q", m2.Base)
	}
	if int64(incr.Len()) > 3*newBytes || incr.Len() > full.Len()/4 {
		t.Errorf("incremental backup of %d bytes for %d bytes of new mail (full: %d)", incr.Len(), newBytes, full.Len())
	}

	// Checks: alone (what it holds), against its base, and refused by
	// a plain restore.
	if _, err := backup.Verify(ctx, bytes.NewReader(incr.Bytes())); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if _, err := backup.VerifyAgainst(ctx, bytes.NewReader(incr.Bytes()), m1.Full()); err != nil {
		t.Errorf("VerifyAgainst: %v", err)
	}
	if _, err := backup.Restore(ctx, bytes.NewReader(incr.Bytes()), filepath.Join(t.TempDir(), "d"), false); err == nil || !strings.Contains(err.Error(), "incremental") {
		t.Errorf("Restore of an incremental backup: %v", err)
	}

	// The chain, applied, then restored.
	stage := t.TempDir()
	if _, err := backup.Apply(ctx, bytes.NewReader(incr.Bytes()), stage, nil); err == nil {
		t.Error("an incremental backup applied without its base")
	}
	f1, err := backup.Apply(ctx, bytes.NewReader(full.Bytes()), stage, nil)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := backup.Apply(ctx, bytes.NewReader(incr.Bytes()), stage, f1)
	if err != nil {
		t.Fatal(err)
	}
	var merged bytes.Buffer
	if err := backup.WriteDir(ctx, &merged, stage, f2); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "data")
	if _, err := backup.Restore(ctx, bytes.NewReader(merged.Bytes()), dst, false); err != nil {
		t.Fatal(err)
	}
	st2 := openStore(t, filepath.Join(dst, "store"))
	have := state(t, st2)
	st2.Close()
	if len(have) != len(want) || len(want) != 1595 {
		t.Fatalf("restored %d messages, want %d (1595)", len(have), len(want))
	}
	for k, w := range want {
		if have[k] != w {
			t.Errorf("%s: restored %s, want %s", k, have[k].Subject(), w.Subject())
		}
	}

	// A link of another chain: its base is not what was applied.
	var other bytes.Buffer
	bw = backup.NewWriter(&other, "mx.example.test", "test")
	bw.SetBase("full.tar.gz", f2) // taken against the merged state, not f1
	if err := st.Snapshot(ctx, func(name string, size int64, r io.Reader) error { return bw.Add("store/"+name, size, r) }); err != nil {
		t.Fatal(err)
	}
	if _, err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	stage2 := t.TempDir()
	g1, err := backup.Apply(ctx, bytes.NewReader(full.Bytes()), stage2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Apply(ctx, bytes.NewReader(other.Bytes()), stage2, g1); err == nil {
		t.Error("a backup applied onto a base it was not taken against")
	}
}
