package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/queue"
)

// TestQueueChild is the child process of TestSIGKILLDurability: it
// enqueues numbered messages while the queue delivers, printing "ACK n"
// once Enqueue returned, until it is killed.
func TestQueueChild(t *testing.T) {
	dir := os.Getenv("QUEUE_CHILD_DIR")
	if dir == "" {
		t.Skip("only run as a child of TestSIGKILLDurability")
	}
	port, _ := strconv.Atoi(os.Getenv("QUEUE_CHILD_PORT"))
	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Options{
		Dir: dir, Hostname: "mx.a.test", Port: port, SourceIPv4: []byte{127, 0, 0, 1},
		Resolver:     &queue.DNS{Servers: []string{os.Getenv("QUEUE_CHILD_DNS")}},
		PollInterval: 50 * time.Millisecond, Logger: testLogger(t), DisableMTASTS: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go q.Run(ctx)
	for i := 0; ; i++ {
		body := fmt.Sprintf("From: alice@a.test\r\nTo: bob@b.test\r\nSubject: %s/n=%d\r\n\r\nmessage %d\r\n", os.Getenv("QUEUE_CHILD_ROUND"), i, i)
		if err := q.Enqueue(ctx, "alice@a.test", []string{"bob@b.test"}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ACK %d\n", i)
	}
}

// TestSIGKILLDurability kills a process that enqueues and delivers at
// full speed, reopens its queue, and checks that every acknowledged
// message reaches the destination, and that only the messages in flight
// at the kill may arrive twice.
func TestSIGKILLDurability(t *testing.T) {
	w, _, b := pair(t, nil, nil)
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestQueueChild$", "-test.v")
		cmd.Env = append(os.Environ(), "QUEUE_CHILD_DIR="+dir, fmt.Sprintf("QUEUE_CHILD_ROUND=%d", round), "QUEUE_CHILD_DNS="+w.knot.Addr, fmt.Sprintf("QUEUE_CHILD_PORT=%d", b.port))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		acked := 0
		target := 20 + 15*round
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ACK ") {
				acked++
				if acked == target {
					break
				}
			}
		}
		cmd.Process.Kill()
		for sc.Scan() { // acknowledgements already written count too
			if strings.HasPrefix(sc.Text(), "ACK ") {
				acked++
			}
		}
		cmd.Wait()
		if acked < target {
			t.Fatalf("round %d: child acknowledged %d messages, want %d", round, acked, target)
		}
		// Reopen the queue and deliver what is left.
		q, err := queue.Open(context.Background(), queue.Options{
			Dir: dir, Hostname: "mx.a.test", Port: b.port, SourceIPv4: []byte{127, 0, 0, 1},
			Resolver: w.resolver(), PollInterval: 50 * time.Millisecond, Logger: testLogger(t), DisableMTASTS: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { q.Run(ctx); close(done) }()
		deadline := time.Now().Add(20 * time.Second)
		for q.Len() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		left := q.Len()
		cancel()
		<-done
		q.Close()
		if left > 0 {
			t.Fatalf("round %d: %d records still queued", round, left)
		}
		// Every acknowledged message arrived; none twice.
		seen := map[string]int{}
		for _, m := range b.messages(t, "bob@b.test", "INBOX") {
			s := header(m, "Subject")
			if len(s) == 1 {
				seen[s[0]]++
			}
		}
		dups := 0
		for i := 0; i < acked; i++ {
			switch n := seen[fmt.Sprintf("%d/n=%d", round, i)]; {
			case n == 0:
				t.Errorf("round %d: acknowledged message %d lost", round, i)
			case n > 1:
				dups++
			}
		}
		// A message whose final reply was on the way when the process died
		// is sent again (RFC 5321 section 6.1 prefers that to a loss): at
		// most the deliveries in progress, MaxPerDestination (4).
		if dups > 4 {
			t.Errorf("round %d: %d messages delivered twice, want at most the 4 in flight", round, dups)
		}
		files, _ := os.ReadDir(dir + "/msg")
		if len(files) != 0 {
			t.Errorf("round %d: %d files left in the queue directory", round, len(files))
		}
		t.Logf("round %d: %d acknowledged, all delivered, %d twice (in flight at the kill)", round, acked, dups)
	}
}
