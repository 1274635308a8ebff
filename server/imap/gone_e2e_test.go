package imap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/store"
)

type anyPassword struct{}

func (anyPassword) Authenticate(ctx context.Context, username, password string, remote net.Addr) (string, error) {
	return username, nil
}

// syncBuffer is a bytes.Buffer for a logger used by several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSearchCancelledWhenClientGoes: a SEARCH that cannot proceed (every
// scan slot taken) is cancelled once its client hangs up, instead of
// waiting for as long as the server runs.
func TestSearchCancelledWhenClientGoes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("goneProbe is Linux only")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const user = "alice@example.test"
	if err := st.EnsureUser(ctx, user, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Deliver(ctx, user, "", strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv := New(st, anyPassword{}, Options{TLSConfig: goneTLSConfig(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Shutdown(context.Background())
		<-done
	}()
	for range cap(srv.scans) {
		srv.scans <- struct{}{}
	}
	defer func() {
		for range cap(srv.scans) {
			<-srv.scans
		}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	br.ReadString('\n') // greeting
	fmt.Fprintf(c, "a LOGIN %s pw\r\nb SELECT INBOX\r\n", user)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "b ") {
			break
		}
	}
	fmt.Fprintf(c, "c SEARCH BODY hello\r\n")
	time.Sleep(2 * goneEvery) // the SEARCH is waiting for a slot
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "went away during a command") {
		if time.Now().After(deadline) {
			t.Fatalf("SEARCH not cancelled 5 s after its client left; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
