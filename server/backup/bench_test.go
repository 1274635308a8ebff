package backup_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/backup"
	"github.com/mailctl/mailctl/server/store"
)

// BenchmarkBackupRestore backs up and restores a store of 64 MiB
// (MAILCTL_BENCH_STORE_MIB to change it: 1024 for the figures in
// bench/RESULTS.md) and, in the same run, archives and extracts the same
// data directory with tar czf and tar xzf. Throughputs are MiB of the
// data directory per second:
//
//	MAILCTL_BENCH_STORE_MIB=1024 go test -run - -bench BackupRestore -benchtime 1x ./server/backup
//
// The store holds what mail looks like: half of the messages text (gzip
// shrinks it), half with a base64 attachment of random bytes (it does
// not); one in five above the inline limit, in a body file.
func BenchmarkBackupRestore(b *testing.B) {
	mib := 64
	if v := os.Getenv("MAILCTL_BENCH_STORE_MIB"); v != "" {
		var err error
		if mib, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	src := b.TempDir()
	st, err := store.Open(ctx, filepath.Join(src, "store"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	users := []string{"alice@example.test", "bob@example.test", "carol@example.test"}
	for _, u := range users {
		if err := st.EnsureUser(ctx, u, 0); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	var total int64
	for i := 0; total < int64(mib)<<20; i++ {
		size := 2000 + rng.IntN(60000)
		if i%10 == 0 || i%10 == 5 {
			size = store.MaxInlineBody + rng.IntN(800<<10)
		}
		var body string
		if i%2 == 0 {
			var sb strings.Builder
			fmt.Fprintf(&sb, "From: a@example.test\r\nSubject: text %d\r\n\r\n", i)
			for sb.Len() < size {
				fmt.Fprintf(&sb, "Line %d of message %d, some words that repeat as text does.\r\n", sb.Len(), i)
			}
			body = sb.String()
		} else {
			raw := make([]byte, size*3/4)
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			body = fmt.Sprintf("From: a@example.test\r\nSubject: attachment %d\r\n\r\n%s\r\n", i, base64.StdEncoding.EncodeToString(raw))
		}
		total += int64(len(body))
		if _, err := st.Deliver(ctx, users[i%len(users)], "", strings.NewReader(body), []string{`\Seen`}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	dataBytes := dirSize(b, src)
	b.Logf("store: %d MiB of messages, data directory %d MiB, filled in %s", total>>20, dataBytes>>20, time.Since(start).Round(time.Second))
	mibps := func(d time.Duration) float64 { return float64(dataBytes) / (1 << 20) / d.Seconds() }

	for b.Loop() {
		out := b.TempDir()
		// mailctl's backup, as the daemon writes it.
		t0 := time.Now()
		f, err := os.Create(filepath.Join(out, "backup.tar.gz"))
		if err != nil {
			b.Fatal(err)
		}
		bw := backup.NewWriter(f, "mx.example.test", "bench")
		if err := st.Snapshot(ctx, func(name string, size int64, r io.Reader) error { return bw.Add("store/"+name, size, r) }); err != nil {
			b.Fatal(err)
		}
		if _, err := bw.Close(); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		fi, _ := f.Stat()
		f.Close()
		backupTime := time.Since(t0)

		t0 = time.Now()
		f, err = os.Open(filepath.Join(out, "backup.tar.gz"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := backup.Restore(ctx, f, filepath.Join(out, "restored"), false); err != nil {
			b.Fatal(err)
		}
		f.Close()
		restoreTime := time.Since(t0)

		t0 = time.Now()
		tgz := filepath.Join(out, "tar.tgz")
		if o, err := exec.Command("tar", "czf", tgz, "-C", src, ".").CombinedOutput(); err != nil {
			b.Fatalf("tar czf: %v: %s", err, o)
		}
		if o, err := exec.Command("sync", tgz).CombinedOutput(); err != nil {
			b.Fatalf("sync: %v: %s", err, o)
		}
		tarTime := time.Since(t0)
		tfi, _ := os.Stat(tgz)

		t0 = time.Now()
		x := filepath.Join(out, "untar")
		os.Mkdir(x, 0o700)
		if o, err := exec.Command("tar", "xzf", tgz, "-C", x).CombinedOutput(); err != nil {
			b.Fatalf("tar xzf: %v: %s", err, o)
		}
		if o, err := exec.Command("sync", "-f", x).CombinedOutput(); err != nil {
			b.Fatalf("sync: %v: %s", err, o)
		}
		untarTime := time.Since(t0)

		b.ReportMetric(mibps(backupTime), "backup-MiB/s")
		b.ReportMetric(mibps(restoreTime), "restore-MiB/s")
		b.ReportMetric(mibps(tarTime), "tar-czf-MiB/s")
		b.ReportMetric(mibps(untarTime), "tar-xzf-MiB/s")
		b.ReportMetric(float64(fi.Size())/(1<<20), "backup-MiB")
		b.ReportMetric(float64(tfi.Size())/(1<<20), "tgz-MiB")
		b.Logf("backup %s (%d MiB), restore %s; tar czf %s (%d MiB), tar xzf %s",
			backupTime.Round(time.Millisecond), fi.Size()>>20, restoreTime.Round(time.Millisecond),
			tarTime.Round(time.Millisecond), tfi.Size()>>20, untarTime.Round(time.Millisecond))
	}
}

func dirSize(tb testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
