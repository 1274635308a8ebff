package storecopy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
	"github.com/mailctl/mailctl/server/storecopy"
)

// TestCopyKilledChild is the copy that TestCopyKilled runs in a child
// process and kills: it copies the store in $STORECOPY_SRC into
// $STORECOPY_DST, printing its progress.
func TestCopyKilledChild(t *testing.T) {
	src, dst := os.Getenv("STORECOPY_SRC"), os.Getenv("STORECOPY_DST")
	if src == "" || dst == "" {
		t.Skip("run by TestCopyKilled")
	}
	ctx := context.Background()
	a, err := store.Open(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.Open(ctx, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storecopy.Copy(ctx, a, b, storecopy.Options{Progress: os.Stdout, ProgressEvery: 100}); err != nil {
		t.Fatal(err)
	}
}

// TestCopyKilled: a copy killed with SIGKILL in the middle of a mailbox
// and run again ends as a copy that was not: the same snapshot, usage,
// and no body file beyond those of the messages.
func TestCopyKilled(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 3))
	ctx := ctxT(t)
	srcDir, dstDir := t.TempDir(), t.TempDir()
	a, err := store.Open(ctx, srcDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, ctx, a, rng)
	// A large mailbox, to be killed in: bodies in files and in the index;
	// imported (in large commits) rather than delivered one by one.
	const big = 3000
	i := 0
	if _, err := a.ImportMailbox(ctx, users[0], store.Mailbox{Name: "Big", UIDValidity: 1234, UIDNext: big + 1, ModSeq: big + 1, Messages: big},
		func() (store.Message, io.Reader, error) {
			if i == big {
				return store.Message{}, nil, io.EOF
			}
			i++
			size := 200 + rng.IntN(2000)
			if i%50 == 0 {
				size = store.MaxInlineBody + 1000
			}
			body := fmt.Sprintf("Subject: big %d\r\n\r\n%s\r\n", i, strings.Repeat("y", size))
			return store.Message{UID: uint32(i), ModSeq: uint64(i + 1), Flags: []string{"$n"}, InternalDate: time.Unix(1700000000+int64(i), 0)}, strings.NewReader(body), nil
		}); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, ctx, a, true)
	a.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCopyKilledChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STORECOPY_SRC="+srcDir, "STORECOPY_DST="+dstDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Killed within Big, after its first commit (2000 messages).
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		line := sc.Text()
		t.Log("child:", line)
		if strings.Contains(line, " Big: 2100/") {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatal("the child ended before it was killed")
	}

	a, err = store.Open(ctx, srcDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.Open(ctx, dstDir, nil) // removes the body files of no message
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if mb, err := b.Mailbox(ctx, users[0], "Big"); err == nil {
		t.Fatalf("the mailbox killed in is visible: %+v", mb)
	}
	var progress strings.Builder
	stats, err := storecopy.Copy(ctx, a, b, storecopy.Options{Progress: &progress})
	if err != nil {
		t.Fatalf("copy after the kill: %v\n%s", err, progress.String())
	}
	t.Logf("copy after the kill: %+v", stats)
	if stats.Skipped == 0 {
		t.Errorf("nothing skipped after the kill:\n%s", progress.String())
	}
	if got := snapshot(t, ctx, b, true); got != want {
		t.Fatalf("after the kill and the second copy:\n%s\nwant:\n%s", got, want)
	}
	for _, u := range users {
		au, an, _ := a.Usage(ctx, u)
		bu, bn, _ := b.Usage(ctx, u)
		if au != bu || an != bn {
			t.Errorf("%s: usage %d bytes %d messages, want %d, %d", u, bu, bn, au, an)
		}
	}
}
