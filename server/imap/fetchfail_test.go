package imap_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/server/imap"
	"github.com/mailctl/mailctl/server/store"
)

// failingBodies is a store whose bodies fail to read after the first
// `after` bytes, as a body whose storage went away mid-read would.
type failingBodies struct {
	store.Backend
	after int64
}

func (f failingBodies) OpenBody(ctx context.Context, m store.Message) (store.Body, error) {
	b, err := f.Backend.OpenBody(ctx, m)
	if err != nil {
		return nil, err
	}
	return &failAfter{Body: b, after: f.after}, nil
}

type failAfter struct {
	store.Body
	after int64
}

func (f *failAfter) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.after {
		return 0, errors.New("body chunk gone")
	}
	if off+int64(len(p)) > f.after {
		p = p[:f.after-off]
	}
	return f.Body.ReadAt(p, off)
}

// TestFetchBodyReadFailsMidLiteral: when a body cannot be read to the end
// after its literal's size went out, the server hangs up rather than
// leaving the client waiting for bytes that never come.
func TestFetchBodyReadFailsMidLiteral(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureUser(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	body := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 20000)
	if _, err := st.Deliver(ctx, alice, "INBOX", strings.NewReader(body), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	cert, _ := selfSigned(t)
	srv := imap.New(failingBodies{Backend: st, after: 64 << 10}, &passwords{users: map[string]string{alice: alicePW}}, imap.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Shutdown(ctx)
		<-done
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Without the fix the client waits for the literal's rest: the
	// deadline turns that wait into a failure.
	c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "a LOGIN %s %s\r\nb SELECT INBOX\r\nc UID FETCH 1 BODY[]\r\n", alice, alicePW)
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the client still waits for the literal after %d bytes: the server did not hang up: %q", len(got), truncate(string(got), 400))
	}
	if !strings.Contains(string(got), fmt.Sprintf("BODY[] {%d}", len(body))) {
		t.Fatalf("no FETCH literal announced in %q", truncate(string(got), 300))
	}
	if len(got) >= len(body) {
		t.Fatalf("read %d bytes, more than the body (%d): the read failure did not cut the answer", len(got), len(body))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
